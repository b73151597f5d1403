"""The Django adapter: wire scenarios, sync/async/class views, settings, checks, a real server."""

from __future__ import annotations

import json
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from aauth_server_django import aauth_required, configure, get_guard
from aauth_server_django.checks import check_aauth_settings
from aauth_server_django.conf import DevLoopbackInProduction, InvalidSettings
from asgiref.sync import async_to_sync, iscoroutinefunction
from django.conf import settings
from django.core import checks
from django.test import Client, override_settings

from aauth_server.http import HttpRequest
from aauth_server.keys.jwk import jwk_thumbprint
from aauth_server.resource import ResourceGuard
from example_apps._procs import AppSpec, running_apps
from tests.adapters.harness_django import configure_django, send, send_async
from tests.support import RESOURCE, SCOPES, Scenario, World, assert_scenario, scenarios

configure_django()

from tests.adapters.django import urls  # noqa: E402  (needs configured settings)

REPO = Path(__file__).resolve().parents[3]


def error_ids(**aauth: object) -> list[str]:
    with override_settings(AAUTH=aauth):
        return [message.id or "" for message in check_aauth_settings()]


# -- the wire ----------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", scenarios(), ids=lambda s: s.name)
def test_scenario(scenario: Scenario) -> None:
    world = World()
    response = send(world.resource_config(), scenario.build(world))
    assert_scenario(scenario, response, world)


@pytest.mark.parametrize(
    ("path", "view"),
    [
        ("/whoami-async", "async"),
        ("/whoami-class", "class"),
        ("/whoami-async-class", "async-class"),
    ],
)
def test_async_and_class_based_views_are_protected(path: str, view: str) -> None:
    world = World()
    unsigned = send(world.resource_config(), HttpRequest("GET", RESOURCE + path, []))
    assert unsigned.status == 401
    assert unsigned.header("aauth-requirement") == "requirement=agent-token"
    signed = send(world.resource_config(), world.signed(path=path))
    assert signed.status == 200
    assert json.loads(signed.body) == {"agent": world.agent_id, "view": view}


def test_decorator_keeps_the_view_kind() -> None:
    assert iscoroutinefunction(urls.whoami_async)
    assert iscoroutinefunction(urls.optional)
    assert not iscoroutinefunction(urls.whoami)


def test_async_view_reads_a_signed_body() -> None:
    world = World()
    request = world.signed("POST", "/whoami-async", body=b'{"n":1}')
    response = send(world.resource_config(), request)
    assert response.status == 200
    tampered = replace(request, body=b'{"n":2}')
    assert send(world.resource_config(), tampered).status == 401


def test_identity_on_request_and_body_still_readable() -> None:
    world = World()
    body = b"colour=blue&size=2"
    request = world.signed(
        "POST",
        "/identity",
        body=body,
        headers=[("Content-Type", "application/x-www-form-urlencoded")],
    )
    response = send(world.resource_config(), request)
    assert response.status == 200, response.body
    payload = json.loads(response.body)
    assert payload["agent"] == world.agent_id
    assert payload["issuer"] == "https://agent.example"
    assert payload["jkt"] == jwk_thumbprint(world.agent_key.public_jwk())
    assert payload["body"] == body.decode()
    assert payload["post"] == {"colour": "blue", "size": "2"}


def test_unknown_mode_fails_at_decoration() -> None:
    with pytest.raises(ValueError, match="per-call"):
        aauth_required("per-call")
    with pytest.raises(ValueError, match="needs scope"):
        aauth_required("auth-token")


def test_required_views_are_csrf_exempt_optional_ones_are_not() -> None:
    world = World()
    with override_settings(AAUTH={"ISSUER": RESOURCE, "DISCOVERY": world.discovery()}):
        response = Client(enforce_csrf_checks=True).post(
            "/whoami", data=b"", content_type="application/json", HTTP_HOST="resource.example"
        )
    assert response.status_code == 401  # the AAuth challenge, not a CSRF 403
    assert getattr(urls.whoami, "csrf_exempt", False) is True
    assert getattr(urls.optional, "csrf_exempt", False) is False


def test_disallowed_host_is_django_400_not_500() -> None:
    world = World()
    request = replace(world.signed(), url="https://evil.example/whoami")
    assert send(world.resource_config(), request).status == 400


def test_raw_request_uri_keeps_the_signed_encoding() -> None:
    world = World()
    request = world.signed(path="/who%61mi")
    extra: dict[str, Any] = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in request.headers}
    with override_settings(AAUTH={"ISSUER": RESOURCE, "DISCOVERY": world.discovery()}):
        with_raw = Client().get(
            "/who%61mi", secure=True, HTTP_HOST="resource.example", REQUEST_URI="/who%61mi", **extra
        )
        # Without RAW_URI/REQUEST_URI Django rebuilds the path from its decoded form.
        rebuilt = Client().get("/who%61mi", secure=True, HTTP_HOST="resource.example", **extra)
    assert with_raw.status_code == 200
    assert rebuilt.status_code == 401
    assert rebuilt.headers["Signature-Error"] == "error=invalid_signature"


def test_asgi_raw_path_keeps_the_signed_encoding() -> None:
    world = World()
    request = world.signed(path="/whoami%2Dasync")
    with override_settings(AAUTH={"ISSUER": RESOURCE, "DISCOVERY": world.discovery()}):
        response = async_to_sync(send_async)(request, urlsplit(request.url))
    assert response.status == 200, response.body


# -- the well-known document -------------------------------------------------------------------


def test_well_known_metadata() -> None:
    world = World()
    url = RESOURCE + "/.well-known/aauth-resource.json"
    response = send(world.resource_config(), HttpRequest("GET", url, []))
    assert response.status == 200
    assert response.header("content-type") == "application/json"
    assert json.loads(response.body)["issuer"] == RESOURCE
    assert send(world.resource_config(), HttpRequest("POST", url, [])).status == 405


# -- configuration ---------------------------------------------------------------------------


def test_settings_path_builds_and_rebuilds_the_guard() -> None:
    with override_settings(AAUTH={"ISSUER": "https://one.example", "SIGNATURE_WINDOW": 30}):
        first = get_guard()
        assert first is get_guard()
        assert (first.config.issuer, first.config.signature_window) == ("https://one.example", 30)
    with override_settings(AAUTH={"issuer": "https://two.example"}):
        assert get_guard().config.issuer == "https://two.example"


def test_configure_arguments_win_over_settings() -> None:
    with override_settings(AAUTH={"ISSUER": "https://one.example", "SIGNATURE_WINDOW": 30}):
        try:
            configure(issuer="https://code.example")
            guard = get_guard()
            assert (guard.config.issuer, guard.config.signature_window) == (
                "https://code.example",
                30,
            )
        finally:
            configure()
        assert get_guard().config.issuer == "https://one.example"


def test_bad_configuration_fails_loudly_on_first_request() -> None:
    with override_settings(AAUTH={"ISSUER": "http://resource.example"}):
        with pytest.raises(InvalidSettings, match="not a server identifier"):
            Client().get("/whoami", HTTP_HOST="resource.example")
    with override_settings(AAUTH={"ISSUER": "http://127.0.0.1:8000", "DEV_LOOPBACK": True}):
        with pytest.raises(DevLoopbackInProduction, match="DEBUG is False"):
            get_guard()


def test_check_e001_missing_setting_or_issuer() -> None:
    with override_settings():
        del settings.AAUTH
        messages = check_aauth_settings()
    assert [m.id for m in messages] == ["aauth.E001"]
    assert "AAUTH is missing" in messages[0].msg
    assert error_ids(DEV_LOOPBACK=False) == ["aauth.E001"]


def test_check_e002_invalid_configuration() -> None:
    with override_settings(AAUTH={"ISSUER": RESOURCE, "SIGNATURE_WINDOW": 0}):
        (message,) = check_aauth_settings()
    assert message.id == "aauth.E002"
    assert "signature_window must be 1..600" in message.msg
    assert error_ids(ISSUER="https://resource.example/path") == ["aauth.E002"]
    assert error_ids(ISSUER=RESOURCE, UNKNOWN=1) == ["aauth.E002"]
    with override_settings(AAUTH="https://resource.example"):
        assert [m.id for m in check_aauth_settings()] == ["aauth.E002"]


#: What this project's auth-token views need (else aauth.E005 names each view).
AUTH_MODES = {"SIGNING_KEY": World().resource_key, "SCOPE_DESCRIPTIONS": SCOPES}


def test_check_e003_dev_loopback_needs_debug() -> None:
    dev = {"ISSUER": "http://127.0.0.1:8000", "DEV_LOOPBACK": True, **AUTH_MODES}
    with override_settings(AAUTH=dev, DEBUG=False):
        assert [m.id for m in check_aauth_settings()] == ["aauth.E003"]
    with override_settings(AAUTH=dev, DEBUG=True):
        assert check_aauth_settings() == []


def test_checks_are_registered_by_the_app() -> None:
    with override_settings(AAUTH={"ISSUER": RESOURCE, "SIGNATURE_WINDOW": 0}):
        assert [m.id for m in checks.run_checks(tags=["aauth"])] == ["aauth.E002"]
    with override_settings(AAUTH={"ISSUER": RESOURCE, **AUTH_MODES}):
        assert checks.run_checks(tags=["aauth"]) == []
        assert isinstance(get_guard(), ResourceGuard)


# -- a real server -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_example_app_under_uvicorn() -> None:
    spec = AppSpec("django", "example_apps.django_resource", ("--dev",))
    with running_apps([spec]) as (app,):
        base = app.url
        response = httpx.get(base + "/whoami")
        assert response.status_code == 401
        assert response.headers["aauth-requirement"] == "requirement=agent-token"
        assert response.json()["error"] == "agent_token_required"
        metadata = httpx.get(base + "/.well-known/aauth-resource.json")
        assert metadata.json()["issuer"] == base


def test_example_app_requires_an_issuer_without_dev() -> None:
    from example_apps.django_resource import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--port", "9000"])
    assert parse_args(["--port", "9000", "--dev"]).issuer == "http://127.0.0.1:9000"
    assert parse_args(["--issuer", RESOURCE]).issuer == RESOURCE


def test_person_server_only_project_needs_no_resource_settings() -> None:
    with override_settings(AAUTH_PERSON={"ISSUER": "https://ps.example"}):
        del settings.AAUTH
        assert check_aauth_settings() == []
    with override_settings(AAUTH_PERSON=None):
        del settings.AAUTH
        assert [m.id for m in check_aauth_settings()] == ["aauth.E001"]
