"""Misconfiguration fails at startup with a message naming the rule (issue 9 item 2), in
the core and in all three adapters; a store that goes away later is logged once per outage."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from aauth_server_django import aauth_required, startup
from aauth_server_django.checks import check_aauth_settings
from aauth_server_django.conf import InvalidSettings
from aauth_server_django.decorators import PROTECTIONS
from aauth_server_flask import AAuth as FlaskAAuth
from aauth_server_starlette import AAuth as StarletteAAuth
from django.http import HttpRequest as DjangoRequest
from django.http import JsonResponse
from django.test import override_settings
from flask import Flask

from aauth_server.errors import ConfigurationError
from aauth_server.person import PersonServerConfig
from aauth_server.resource import ResourceConfig, ResourceGuard
from aauth_server.resource.guard import Protection
from aauth_server.storage.redis import AsyncRedisStore, RedisStore
from tests.adapters.harness_django import configure_django
from tests.redis_server import RedisProcess, free_port
from tests.support import RESOURCE, SCOPES, World

configure_django()

KEY = World().resource_key
FULL: dict[str, Any] = {"issuer": RESOURCE, "signing_key": KEY, "scope_descriptions": SCOPES}
NO_KEY = "needs the resource's signing_key"
UNDECLARED = (
    "scope 'data.admin' is not declared in scope_descriptions (declared: data.read, data.write)"
)


def _dead_redis() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there


@pytest.fixture
def django_views() -> Iterator[None]:
    """Views decorated by a test are forgotten afterwards (the registry is process-wide)."""
    before = len(PROTECTIONS)
    yield
    del PROTECTIONS[before:]


# -- auth-token mode without signing_key --------------------------------------------------------


def test_core_auth_token_access_mode_without_signing_key() -> None:
    with pytest.raises(ConfigurationError, match="access_mode='auth-token' " + NO_KEY):
        ResourceConfig(issuer=RESOURCE, access_mode="auth-token")
    with pytest.raises(ConfigurationError, match="authorization endpoint .* " + NO_KEY):
        ResourceConfig(issuer=RESOURCE, authorization_path="/aauth/authorize")


def test_starlette_protect_without_signing_key() -> None:
    aauth = StarletteAAuth(issuer=RESOURCE)

    async def report(request: Any) -> Any: ...

    with pytest.raises(ConfigurationError) as caught:
        aauth.protect("auth-token", scope="data.read")(report)
    message = str(caught.value)
    assert message.startswith("protect('auth-token', scope='data.read') on ")
    assert message.endswith(
        "test_startup_errors.test_starlette_protect_without_signing_key.<locals>.report "
        "(auth-token mode) " + NO_KEY + " (a PrivateKey with a kid): it signs the resource "
        "tokens of the auth-token challenge"
    )
    aauth.protect("person-token")(report)  # person tokens need no key of ours


def test_flask_protect_without_signing_key_after_and_before_init_app() -> None:
    app = Flask("after")
    app.config["AAUTH_ISSUER"] = RESOURCE
    aauth = FlaskAAuth(app)
    with pytest.raises(ConfigurationError, match=NO_KEY):

        @aauth.protect("auth-token", scope="data.read")
        def report() -> str:
            return ""

    # The app-factory pattern: views decorated first, checked when init_app configures.
    factory = FlaskAAuth()

    @factory.protect("auth-token", scope="data.read")
    def data() -> str:
        return ""

    app = Flask("factory")
    app.config["AAUTH_ISSUER"] = RESOURCE
    with pytest.raises(ConfigurationError) as caught:
        factory.init_app(app)
    assert str(caught.value).startswith("AAuth configuration of Flask app 'factory': protect(")
    assert NO_KEY in str(caught.value) and ".data (auth-token mode)" in str(caught.value)


def test_django_without_signing_key(django_views: None) -> None:
    @aauth_required("auth-token", scope="data.read")
    def report(request: DjangoRequest) -> JsonResponse:
        return JsonResponse({})

    with override_settings(AAUTH={"ISSUER": RESOURCE, "SCOPE_DESCRIPTIONS": SCOPES}):
        messages = [m for m in check_aauth_settings() if ".report " in m.msg]
        assert [m.id for m in messages] == ["aauth.E005"]
        assert messages[0].msg.startswith(
            "settings.AAUTH: aauth_required('auth-token', scope='data.read') on "
        )
        assert NO_KEY in messages[0].msg
        with pytest.raises(InvalidSettings, match=NO_KEY):
            startup()


# -- a scope not in scope_descriptions ----------------------------------------------------------


def test_starlette_undeclared_scope_at_decoration() -> None:
    aauth = StarletteAAuth(**FULL)

    def admin(request: Any) -> Any: ...

    with pytest.raises(ConfigurationError) as caught:
        aauth.protect("auth-token", scope="data.read data.admin")(admin)
    assert UNDECLARED in str(caught.value)
    assert str(caught.value).startswith("protect('auth-token', scope='data.admin data.read') on")


def test_flask_undeclared_scope_at_decoration_and_at_init_app() -> None:
    app = Flask("declared")
    aauth = FlaskAAuth(app, **FULL)
    with pytest.raises(ConfigurationError, match=re.escape(UNDECLARED)):

        @aauth.protect("auth-token", scope="data.admin")
        def admin() -> str:
            return ""

    factory = FlaskAAuth()

    @factory.protect("auth-token", scope="data.admin")
    def admin2() -> str:
        return ""

    app = Flask("factory2")
    app.config.update({"AAUTH_" + k.upper(): v for k, v in FULL.items()})
    with pytest.raises(ConfigurationError, match=re.escape(UNDECLARED)):
        factory.init_app(app)


def test_django_undeclared_scope(django_views: None) -> None:
    @aauth_required("auth-token", scope="data.admin")
    def admin(request: DjangoRequest) -> JsonResponse:
        return JsonResponse({})

    settings = {k.upper(): v for k, v in FULL.items()}
    with override_settings(AAUTH=settings):
        (message,) = check_aauth_settings()
        assert message.id == "aauth.E005" and UNDECLARED in message.msg
        assert ".admin:" in message.msg
        with pytest.raises(InvalidSettings, match=re.escape(UNDECLARED)):
            startup()


def test_django_startup_passes_a_good_configuration() -> None:
    with override_settings(AAUTH={k.upper(): v for k, v in FULL.items()}):
        startup()
        assert check_aauth_settings() == []


# -- a store that does not answer at startup ----------------------------------------------------

UNREACHABLE = r"the AAuth store redis://127\.0\.0\.1:\d+/0 did not answer at startup"


def test_starlette_store_unreachable_at_startup() -> None:
    with pytest.raises(ConfigurationError, match=UNREACHABLE):
        StarletteAAuth(issuer=RESOURCE, store=_dead_redis())
    # Explicitly deferred: the first requests answer 503 instead (and log the outage).
    StarletteAAuth(issuer=RESOURCE, store=_dead_redis(), startup_store_check=False)


def test_flask_store_unreachable_at_init_app() -> None:
    app = Flask("store")
    app.config.update(AAUTH_ISSUER=RESOURCE, AAUTH_STORE=_dead_redis())
    with pytest.raises(ConfigurationError, match=UNREACHABLE):
        FlaskAAuth(app)


def test_django_store_unreachable() -> None:
    settings = {**{k.upper(): v for k, v in FULL.items()}, "STORE": _dead_redis()}
    with override_settings(AAUTH=settings):
        (message,) = check_aauth_settings()
        assert message.id == "aauth.E004"
        assert "settings" not in message.msg.split(":")[0]
        with pytest.raises(InvalidSettings, match=UNREACHABLE):
            startup()


def test_the_password_of_a_store_url_stays_out_of_the_message() -> None:
    uri = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    with pytest.raises(ConfigurationError) as caught:
        StarletteAAuth(issuer=RESOURCE, store=uri)
    assert "s3cret" not in str(caught.value) and ":***@" in str(caught.value)


# -- a mistyped store URI -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("reddis://localhost:6379/0", "the scheme must be one of memory://, redis://"),
        ("localhost:6379", "is not a storage URI"),
        ("redis:/localhost", "is not a storage URI"),
        ("redis://localhost:notaport/0", "cannot be opened: Port could not be cast"),
    ],
)
def test_a_mistyped_store_uri_is_a_configuration_error(uri: str, says: str) -> None:
    for build in (
        lambda: ResourceGuard(ResourceConfig(issuer=RESOURCE, store=uri)),
        lambda: StarletteAAuth(issuer=RESOURCE, store=uri),
    ):
        with pytest.raises(ConfigurationError, match=says) as caught:
            build()
        assert type(caught.value) is ConfigurationError  # not a bare ValueError


def test_a_mistyped_store_uri_at_the_person_server() -> None:
    with pytest.raises(ConfigurationError, match="is not a storage URI"):
        PersonServerConfig(
            issuer="https://ps.example",
            signing_key=KEY,
            subject_secret=b"x" * 32,
            store="reddis://localhost",
        )


# -- an issuer that breaks a rule ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("issuer", "rule"),
    [
        ("http://api.example", "the scheme is 'http': server identifiers are https only"),
        ("https://api.example:8443", "it has a port (:8443)"),
        ("https://api.example/v1", "it has a path (/v1)"),
        ("https://API.example", "the host 'API.example' is not lowercase"),
        ("https://api.example/", "it ends with a trailing slash"),
        ("https://api.example?x=1", "it has a query or fragment"),
        ("api.example", "it has no scheme"),
        ("https://user@api.example", "it has userinfo"),
    ],
)
def test_an_issuer_names_the_rule_it_breaks(issuer: str, rule: str) -> None:
    for build in (
        lambda: ResourceConfig(issuer=issuer),
        lambda: StarletteAAuth(issuer=issuer),
        lambda: FlaskAAuth(_flask_with(issuer)),
    ):
        with pytest.raises(ConfigurationError) as caught:
            build()
        message = str(caught.value)
        assert f"issuer {issuer!r} is not a server identifier: {rule}" in message
        # The development setting is no way out for a real host: it is not mentioned.
        assert "dev_loopback" not in message
    with override_settings(AAUTH={"ISSUER": issuer}):
        (check,) = check_aauth_settings()
        assert check.id == "aauth.E002" and rule in check.msg


@pytest.mark.parametrize("issuer", ["http://127.0.0.1:8000", "http://localhost:9000"])
def test_a_loopback_issuer_points_to_dev_loopback(issuer: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ResourceConfig(issuer=issuer)
    assert "is a loopback host" in str(caught.value)
    assert "dev_loopback=True, never in production" in str(caught.value)
    ResourceConfig(issuer=issuer, dev_loopback=True)
    with pytest.raises(ConfigurationError, match=r"exactly http://127\.0\.0\.1:PORT"):
        ResourceConfig(issuer="http://127.0.0.1", dev_loopback=True)


def test_a_trusted_ps_names_the_rule_too() -> None:
    with pytest.raises(
        ConfigurationError, match=r"trusted_ps entry 'https://ps\.example/' .* trailing"
    ):
        ResourceConfig(issuer=RESOURCE, trusted_ps=("https://ps.example/",))


def _flask_with(issuer: str) -> Flask:
    app = Flask("issuer")
    app.config["AAUTH_ISSUER"] = issuer
    return app


# -- a store that becomes unreachable later -----------------------------------------------------


def test_an_outage_is_logged_once_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    world = World()
    with RedisProcess(appendonly=False) as server:
        prefix = "startup-outage"
        options = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
        store = RedisStore.from_url(server.url, prefix=prefix, **options)
        async_store = AsyncRedisStore.from_url(server.url, prefix=prefix, **options)
        guard = ResourceGuard(world.resource_config(store=store, async_store=async_store))
        request = world.signed("GET", "/profile", token=world.person_token())
        protection = Protection("person-token")
        try:
            assert guard.check(request, protection) is not None  # revocation lookup: Redis
            with caplog.at_level(logging.WARNING, logger="aauth_server"):
                for _round in range(2):
                    server.stop()
                    for _ in range(4):
                        with pytest.raises(Exception) as caught:
                            guard.check(request, protection)
                        assert getattr(caught.value, "status", None) == 503
                    server.start()
                    for _ in range(3):
                        assert guard.check(request, protection) is not None
        finally:
            store.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "aauth_server"]
    down = "AAuth: the resource cannot reach its store"
    back = "AAuth: the resource reaches its store again; the outage is over"
    assert [line.split(" (")[0] if line.startswith(down) else line for line in lines] == [
        down,
        back,
        down,
        back,
    ]
    assert "logged once per outage" in lines[0]


def test_the_problem_is_none_exactly_for_identifiers() -> None:
    from aauth_server.identifiers import is_server_identifier, server_identifier_problem
    from tests.core.test_identifiers import GO_SERVER, RULES

    values = [c["input"] for c in GO_SERVER]
    values += RULES["server_identifiers"]["valid"] + RULES["server_identifiers"]["invalid"]
    values += ["http://127.0.0.1:8000", "http://localhost:0", "https://[::1]", "", "https://a."]
    for value in values:
        for dev in (False, True):
            problem = server_identifier_problem(value, dev_loopback=dev)
            assert (problem is None) is is_server_identifier(value, dev_loopback=dev), value


def test_django_store_url_that_cannot_be_opened() -> None:
    settings = {**{k.upper(): v for k, v in FULL.items()}, "STORE": "redis://localhost:x/0"}
    with override_settings(AAUTH=settings):
        (message,) = check_aauth_settings()
        assert message.id == "aauth.E002" and "cannot be opened" in message.msg
        with pytest.raises(InvalidSettings, match="cannot be opened"):
            startup()
