"""Issue 8 item 12: trust in Person Servers is explicit, and checked before any key fetch.

Person-token and auth-token endpoints need ``trusted_ps`` or the explicit ``trust_any_ps``
(which logs a warning at startup); a token from any other issuer is refused as
``invalid_jwt`` before its issuer's metadata or keys are fetched.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.test import override_settings

from aauth_server.keys import KeyDiscovery
from aauth_server.keys.fetcher import AsyncStaticFetcher, StaticFetcher
from aauth_server.resource import ConfigurationError, Protection, ResourceConfig, ResourceGuard
from aauth_server.tokens.aauth import DWK_ACCESS, DWK_PERSON, mint_auth_token, mint_person_token
from tests.resource.core_harness import CoreApp
from tests.support import PS_ISSUER, RESOURCE, World

UNTRUSTED = "https://rogue-ps.example"


def _counting(world: World) -> tuple[KeyDiscovery, StaticFetcher]:
    docs = world.documents()
    fetcher = StaticFetcher(docs)
    return KeyDiscovery(fetcher, AsyncStaticFetcher(docs), clock=world.clock), fetcher


def test_person_token_modes_need_trusted_ps_or_the_explicit_opt_in() -> None:
    with pytest.raises(ConfigurationError, match="trusted_ps"):
        ResourceConfig(issuer=RESOURCE, access_mode="person-token")
    with pytest.raises(ConfigurationError, match="trusted_ps"):
        ResourceConfig(issuer=RESOURCE, access_mode="auth-token", signing_key=World().resource_key)
    with pytest.raises(ConfigurationError, match="exclude"):
        ResourceConfig(issuer=RESOURCE, trusted_ps=(PS_ISSUER,), trust_any_ps=True)
    assert ResourceConfig(issuer=RESOURCE, access_mode="person-token", trust_any_ps=True)
    config = ResourceConfig(issuer=RESOURCE)
    config.check_protection(Protection())  # agent-token endpoints need no PS
    with pytest.raises(ConfigurationError, match="trusted_ps"):
        config.check_protection(Protection("person-token"))
    trusted = ResourceConfig(issuer=RESOURCE, trusted_ps=(PS_ISSUER,))
    trusted.check_protection(Protection("person-token"))


def _view(request: Any) -> Any:
    return None


def test_starlette_refuses_a_person_token_endpoint_without_trust_at_import_time() -> None:
    from aauth_server_starlette import AAuth

    aauth = AAuth(issuer=RESOURCE)
    aauth.protect()(_view)  # agent-token: fine
    with pytest.raises(ConfigurationError, match="trusted_ps"):
        aauth.protect("person-token")(_view)
    assert AAuth(issuer=RESOURCE, trust_any_ps=True).protect("person-token")(_view)


def test_flask_refuses_a_person_token_view_without_trust_whichever_comes_first() -> None:
    from aauth_server_flask import AAuth
    from flask import Flask

    declared_first = AAuth()
    declared_first.protect("person-token")(_view)
    app = Flask("a")
    app.config["AAUTH_ISSUER"] = RESOURCE
    with pytest.raises(ConfigurationError, match="trusted_ps"):
        declared_first.init_app(app)

    initialised_first = AAuth()
    other = Flask("b")
    other.config["AAUTH_ISSUER"] = RESOURCE
    initialised_first.init_app(other)
    with pytest.raises(ConfigurationError, match="trusted_ps"):
        initialised_first.protect("person-token")(_view)


def test_django_check_names_the_view_without_trust() -> None:
    from aauth_server_django import aauth_required
    from aauth_server_django.checks import check_aauth_settings
    from aauth_server_django.decorators import PROTECTIONS

    from tests.adapters.harness_django import configure_django

    configure_django()
    before = len(PROTECTIONS)
    try:
        aauth_required("person-token")(_view)  # a view of this mode exists in the project
        with override_settings(AAUTH={"ISSUER": RESOURCE}):
            messages = [m for m in check_aauth_settings() if "trusted_ps" in m.msg]
            assert messages and {m.id for m in messages} == {"aauth.E005"}
            assert any("test_trust._view" in m.msg for m in messages)
        with override_settings(AAUTH={"ISSUER": RESOURCE, "TRUST_ANY_PS": True}):
            assert not [m for m in check_aauth_settings() if "trusted_ps" in m.msg]
    finally:
        del PROTECTIONS[before:]  # the registry is process-wide


def test_trust_any_ps_logs_a_warning_at_startup(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="aauth_server.resource"):
        ResourceGuard(ResourceConfig(issuer=RESOURCE, trust_any_ps=True))
    assert any("ANY Person Server" in r.getMessage() for r in caplog.records)


def _rogue_documents(world: World, key: Any) -> None:
    world.extra_documents.update(
        {
            UNTRUSTED + "/.well-known/aauth-person.json": {
                "issuer": UNTRUSTED,
                "jwks_uri": UNTRUSTED + "/jwks.json",
            },
            UNTRUSTED + "/jwks.json": {"keys": [key.public_jwk()]},
        }
    )


@pytest.mark.parametrize("path", ["/profile", "/data"])
def test_untrusted_person_token_is_refused_before_any_fetch(path: str) -> None:
    world = World()
    _rogue_documents(world, world.ps_key)
    discovery, fetcher = _counting(world)
    app = CoreApp(world.resource_config(discovery=discovery))
    token = world.person_token(ps=UNTRUSTED)
    response = app.send(world.signed("GET", path, token=token))
    assert response.status == 401 and response.header("signature-error") == "error=invalid_jwt"
    assert not [url for url in fetcher.calls if url.startswith(UNTRUSTED)]


def test_untrusted_auth_tokens_are_refused_before_any_fetch() -> None:
    world = World()
    _rogue_documents(world, world.ps_key)
    discovery, fetcher = _counting(world)
    app = CoreApp(world.resource_config(discovery=discovery))
    now = world.now()
    common: dict[str, Any] = {
        "aud": RESOURCE,
        "sub": "p",
        "cnf_jwk": world.agent_key.public,
        "now": now,
    }
    tokens = [
        # a PS-issued auth token from a PS not trusted
        mint_auth_token(
            world.ps_key, iss=UNTRUSTED, dwk=DWK_PERSON, ps=UNTRUSTED, scope="data.read", **common
        ),
        # iss != ps
        mint_auth_token(
            world.ps_key, iss=UNTRUSTED, dwk=DWK_PERSON, ps=PS_ISSUER, scope="data.read", **common
        ),
        # an AS this resource does not have
        mint_auth_token(
            world.as_key, iss=UNTRUSTED, dwk=DWK_ACCESS, ps=PS_ISSUER, scope="data.read", **common
        ),
    ]
    for token in tokens:
        response = app.send(world.signed("GET", "/data", token=token))
        assert response.status == 401 and response.header("signature-error") == "error=invalid_jwt"
    assert not [url for url in fetcher.calls if url.startswith(UNTRUSTED)]


def test_a_resource_without_trust_refuses_every_person_token_without_fetching() -> None:
    """Defence in depth: a guard whose endpoints were never declared (core use) fails closed."""
    world = World()
    discovery, fetcher = _counting(world)
    guard = ResourceGuard(ResourceConfig(issuer=RESOURCE, discovery=discovery, clock=world.clock))
    app = CoreApp(guard.config)
    app.guard = guard
    token = mint_person_token(
        world.ps_key,
        iss=PS_ISSUER,
        aud=RESOURCE,
        sub="p",
        cnf_jwk=world.agent_key.public,
        now=world.now(),
    )
    response = app.send(world.signed("GET", "/profile", token=token))
    assert response.status == 401 and response.header("signature-error") == "error=invalid_jwt"
    assert not [url for url in fetcher.calls if url.startswith(PS_ISSUER)]


def test_trusted_and_any_ps_still_work() -> None:
    world = World()
    assert (
        CoreApp(world.resource_config())
        .send(world.signed("GET", "/profile", token=world.person_token()))
        .status
        == 200
    )
    _rogue_documents(world, world.ps_key)
    app = CoreApp(world.resource_config(trust_any_ps=True))
    response = app.send(world.signed("GET", "/profile", token=world.person_token(ps=UNTRUSTED)))
    assert response.status == 200
