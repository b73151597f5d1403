"""Every access mode through the Django adapter: the shared table, deferred delivery run
through Django's own routing, session tokens, step-up, revocation and replay."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from aauth_server_django.convert import afrom_django, from_django, to_django
from aauth_server_django.redispatch import IDENTITY_ATTR, redispatched_identity
from asgiref.sync import async_to_sync
from django.http import HttpRequest as DjangoRequest
from django.http import HttpResponse as DjangoResponse
from django.http import StreamingHttpResponse
from django.test import override_settings
from django.urls import reverse

from aauth_server.fields import parse_aauth_requirement
from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.keys.jwk import PrivateKey
from aauth_server.resource import PersonIdentity, Protection, ResourceConfig
from aauth_server.signatures.message import AAUTH_COMPONENTS
from aauth_server.tokens.jwt import decode_unverified
from example_apps._procs import AppSpec, running_apps
from tests.adapters.harness_django import configure_django, guard_for, send
from tests.support import RESOURCE, Scenario, World, assert_scenario, mode_scenarios

configure_django()

from tests.adapters.django.urls import CALLS  # noqa: E402  (needs configured settings)

TRANSPORTS = pytest.mark.parametrize("asgi", [False, True], ids=["wsgi", "asgi"])


def _sender(config: ResourceConfig, asgi: bool) -> Callable[[HttpRequest], HttpResponse]:
    def sender(request: HttpRequest) -> HttpResponse:
        return send(config, request, asgi=asgi)

    return sender


def _json(response: HttpResponse) -> Any:
    return json.loads(response.body)


def _requirement(response: HttpResponse) -> tuple[str, dict[str, object]]:
    parsed = parse_aauth_requirement(response.header("aauth-requirement") or "")
    return parsed.requirement, parsed.params


def _revocation(world: World, token: str) -> HttpRequest:
    claims = decode_unverified(token).payload
    body = json.dumps({"jti": claims["jti"], "exp": claims["exp"]}).encode()
    return world.server_signed("POST", "/aauth/revoke", body)


# -- the shared table ------------------------------------------------------------------------


@TRANSPORTS
@pytest.mark.parametrize("scenario", mode_scenarios(), ids=lambda s: s.name)
def test_mode_scenario(scenario: Scenario, asgi: bool) -> None:
    world = World()
    config = world.resource_config(**scenario.config)
    for before in scenario.before(world) if scenario.before else []:
        assert send(config, before, asgi=asgi).status < 400
    assert_scenario(scenario, send(config, scenario.build(world), asgi=asgi), world)


# -- deferred auth-token delivery --------------------------------------------------------------


@TRANSPORTS
@pytest.mark.parametrize(
    ("path", "extra"), [("/deferred", {}), ("/deferred-async", {"view": "async"})]
)
def test_deferred_flow(path: str, extra: dict[str, str], asgi: bool) -> None:
    world = World()
    post = _sender(world.resource_config(), asgi)
    person = world.person_token()
    CALLS.clear()

    held = post(world.signed("GET", path, token=person))
    assert held.status == 202
    assert _requirement(held)[0] == "auth-token"
    location = held.header("location") or ""
    assert location.startswith(RESOURCE + "/aauth/pending/")
    pending = urlsplit(location).path

    again = post(world.signed("GET", pending, token=person))
    assert again.status == 202
    assert _requirement(again)[0] == "auth-token"
    assert CALLS[path.strip("/")] == 0

    auth = world.auth_token("data.read")
    delivered = post(world.signed("GET", pending, token=auth))
    assert delivered.status == 200, delivered.body
    assert _json(delivered) == {"scope": "data.read", "deferred": True, **extra}
    assert CALLS[path.strip("/")] == 1

    repeat = post(world.signed("GET", pending, token=auth))
    assert (repeat.status, repeat.body) == (200, delivered.body)
    assert CALLS[path.strip("/")] == 1

    other = post(world.signed("GET", pending, token=world.auth_token("data.read")))
    assert other.status == 410
    assert _json(other)["error"] == "gone"

    second = post(world.signed("GET", path, token=person))
    second_pending = urlsplit(second.header("location") or "").path
    cancelled = post(world.signed("DELETE", second_pending))
    assert (cancelled.status, cancelled.body) == (204, b"")
    assert post(world.signed("GET", second_pending, token=auth)).status == 404
    assert CALLS[path.strip("/")] == 1


@TRANSPORTS
def test_held_request_body_reaches_the_view(asgi: bool) -> None:
    world = World()
    post = _sender(world.resource_config(), asgi)
    held = post(world.signed("POST", "/deferred-post", body=b'{"n":1}', token=world.person_token()))
    assert held.status == 202
    pending = urlsplit(held.header("location") or "").path
    delivered = post(world.signed("GET", pending, token=world.auth_token("data.write")))
    assert delivered.status == 200, delivered.body
    assert _json(delivered) == {"scope": "data.write", "body": '{"n":1}'}


@TRANSPORTS
def test_a_raising_held_view_finishes_with_a_server_error(asgi: bool) -> None:
    world = World()
    post = _sender(world.resource_config(), asgi)
    CALLS.clear()
    held = post(world.signed("GET", "/deferred-broken", token=world.person_token()))
    pending = urlsplit(held.header("location") or "").path
    auth = world.auth_token("data.read")
    failed = post(world.signed("GET", pending, token=auth))
    assert failed.status == 500
    assert failed.header("content-type") == "application/problem+json"
    assert _json(failed)["error"] == "server_error"
    repeat = post(world.signed("GET", pending, token=auth))
    assert (repeat.status, repeat.body) == (500, failed.body)
    assert CALLS["deferred-broken"] == 1


SEEN: list[str] = []


def recording_middleware(get_response: Callable[[DjangoRequest], DjangoResponse]) -> Any:
    def middleware(request: DjangoRequest) -> DjangoResponse:
        SEEN.append(request.path)
        return get_response(request)

    return middleware


def test_held_request_runs_through_the_project_middleware() -> None:
    world = World()
    post = _sender(world.resource_config(), False)
    held = post(world.signed("GET", "/deferred", token=world.person_token()))
    pending = urlsplit(held.header("location") or "").path
    SEEN.clear()
    middleware = [
        "django.middleware.csrf.CsrfViewMiddleware",
        f"{__name__}.recording_middleware",
    ]
    with override_settings(MIDDLEWARE=middleware):
        assert post(world.signed("GET", pending, token=world.auth_token("data.read"))).status == 200
    assert SEEN == [pending, "/deferred"]


def test_only_a_fitting_redispatch_identity_is_taken() -> None:
    world = World()
    guard = guard_for(world.resource_config())
    signed = world.signed("GET", "/data", token=world.auth_token("data.read"))
    person = guard.check(signed, Protection("auth-token", scope="data.read"))
    assert isinstance(person, PersonIdentity)
    request = DjangoRequest()
    assert redispatched_identity(request, Protection("auth-token", scope="data.read")) is None
    setattr(request, IDENTITY_ATTR, person)
    assert redispatched_identity(request, Protection("auth-token", scope="data.read")) is person
    assert redispatched_identity(request, Protection("auth-token", scope="data.write")) is None
    assert redispatched_identity(request, Protection("person-token")) is None


# -- session-token -------------------------------------------------------------------------------


@TRANSPORTS
def test_session_flow(asgi: bool) -> None:
    world = World()
    config = world.resource_config()
    post = _sender(config, asgi)
    capable = [("AAuth-Capabilities", "interaction")]

    begun = post(world.signed("GET", "/session", headers=capable))
    assert begun.status == 202
    requirement, params = _requirement(begun)
    assert requirement == "interaction"
    code = str(params["code"])
    pending = urlsplit(begun.header("location") or "").path

    assert post(world.signed("GET", pending)).status == 202
    assert guard_for(config).sessions.approve(code, "acct-1") is True
    authorized = post(world.signed("GET", pending))
    assert authorized.status == 200
    token = authorized.header("aauth-access")
    assert token

    session_header = [("Authorization", f"AAuth {token}")]
    covered = [*AAUTH_COMPONENTS, "authorization"]
    ok = post(world.signed("GET", "/session", headers=session_header, components=covered))
    assert ok.status == 200, ok.body
    assert _json(ok) == {"agent": world.agent_id, "account": "acct-1"}

    bearer = post(world.signed("GET", "/session", headers=session_header))
    assert bearer.status == 401
    assert _json(bearer)["error"] == "invalid_input"


# -- auth-token: sync and async views, step-up, revocation, replay ---------------------------


@TRANSPORTS
@pytest.mark.parametrize(("path", "extra"), [("/data", {}), ("/data-async", {"view": "async"})])
def test_auth_token_views_and_step_up(path: str, extra: dict[str, str], asgi: bool) -> None:
    world = World()
    post = _sender(world.resource_config(), asgi)
    read = world.auth_token("data.read")
    got = post(world.signed("GET", path, token=read))
    assert (got.status, _json(got)) == (200, {"scope": "data.read", **extra})

    step_up = post(world.signed("POST", path, token=read, body=b"{}"))
    assert step_up.status == 401
    assert _json(step_up)["error"] == "auth_token_required"
    requirement, params = _requirement(step_up)
    assert requirement == "auth-token"
    claims = decode_unverified(str(params["resource-token"])).payload
    assert claims["scope"] == "data.write"

    both = world.auth_token("data.read data.write")
    written = post(world.signed("POST", path, token=both, body=b"{}"))
    assert written.status == 200
    assert _json(written) == {"scope": "data.read data.write", "written": True, **extra}


@TRANSPORTS
def test_revoked_auth_token(asgi: bool) -> None:
    world = World()
    post = _sender(world.resource_config(), asgi)
    auth = world.auth_token("data.read")
    assert post(world.signed("GET", "/data", token=auth)).status == 200
    assert post(_revocation(world, auth)).status == 200
    refused = post(world.signed("GET", "/data", token=auth))
    assert refused.status == 401
    assert refused.header("signature-error") == "error=revoked_jwt"
    assert refused.header("aauth-requirement") == "requirement=person-token"
    assert _json(refused)["error"] == "revoked_jwt"


@TRANSPORTS
def test_replay_cache_refuses_the_same_signed_request(asgi: bool) -> None:
    world = World()
    post = _sender(world.resource_config(replay_cache=True), asgi)
    request = world.signed("GET", "/data", token=world.auth_token("data.read"))
    assert post(request).status == 200
    replayed = post(request)
    assert replayed.status == 401
    assert replayed.header("signature-error") == "error=invalid_signature"


def test_without_replay_cache_the_same_request_passes_twice() -> None:
    world = World()
    post = _sender(world.resource_config(), False)
    request = world.signed("GET", "/data", token=world.auth_token("data.read"))
    assert [post(request).status, post(request).status] == [200, 200]


# -- the guard's own routes ------------------------------------------------------------------------


@TRANSPORTS
def test_guard_routes(asgi: bool) -> None:
    world = World()
    post = _sender(world.resource_config(), asgi)
    jwks = post(HttpRequest("GET", RESOURCE + "/aauth/jwks.json"))
    assert _json(jwks) == {"keys": [world.resource_key.public_jwk()]}
    metadata = _json(post(HttpRequest("GET", RESOURCE + "/.well-known/aauth-resource.json")))
    assert metadata["authorization_endpoint"] == RESOURCE + "/aauth/authorize"
    assert metadata["revocation_endpoint"] == RESOURCE + "/aauth/revoke"
    head = post(HttpRequest("HEAD", RESOURCE + "/.well-known/aauth-resource.json"))
    assert head.status == 200
    wrong_method = post(HttpRequest("GET", RESOURCE + "/aauth/authorize"))
    assert wrong_method.status == 405
    assert wrong_method.header("allow") == "POST"
    unknown = post(world.signed("GET", "/aauth/pending/" + "x" * 32))
    assert (unknown.status, _json(unknown)["error"]) == (404, "not_found")
    assert post(HttpRequest("GET", RESOURCE + "/aauth/pending/")).status == 404
    assert post(HttpRequest("GET", RESOURCE + "/aauth/elsewhere")).status == 404


def test_routes_follow_the_configuration() -> None:
    world = World()
    config = world.resource_config(authorization_path=None, revocation_path="/custom/revoke")
    claims = decode_unverified(world.person_token()).payload
    body = json.dumps({"jti": claims["jti"], "exp": claims["exp"]}).encode()
    assert send(config, world.server_signed("POST", "/custom/revoke", body)).status == 200
    assert send(config, HttpRequest("POST", RESOURCE + "/aauth/authorize", [], b"{}")).status == 404
    assert send(config, HttpRequest("POST", RESOURCE + "/aauth/revoke", [], b"{}")).status == 404


def test_metadata_url_name_is_kept() -> None:
    assert reverse("aauth:metadata") == "/.well-known/aauth-resource.json"


# -- the example app -----------------------------------------------------------------------------


def test_example_app_serves_every_mode(tmp_path: Path) -> None:
    key = PrivateKey.generate("Ed25519", kid="rs-file")
    key_file = tmp_path / "resource.jwk.json"
    key_file.write_text(json.dumps(key.private_jwk()))
    module = "example_apps.django_resource"
    with_key = AppSpec(
        "with-key",
        module,
        (
            "--dev",
            "--signing-key",
            str(key_file),
            "--ps",
            "https://ps.example",
            "--ps",
            "https://ps2.example",
            "--as",
            "https://as.example",
            "--replay-cache",
        ),
    )
    generated = AppSpec("generated", module, ("--dev", "--trust-any-ps"))
    with running_apps([with_key, generated]) as (app, other):
        base = app.url
        assert httpx.get(base + "/aauth/jwks.json").json() == {"keys": [key.public_jwk()]}
        metadata = httpx.get(base + "/.well-known/aauth-resource.json").json()
        assert set(metadata["scope_descriptions"]) == {"data.read", "data.write"}
        assert metadata["authorization_endpoint"] == base + "/aauth/authorize"
        assert metadata["revocation_endpoint"] == base + "/aauth/revoke"
        for method, path in [
            ("GET", "/profile"),
            ("GET", "/data"),
            ("POST", "/data"),
            ("GET", "/deferred"),
        ]:
            response = httpx.request(method, base + path)
            assert response.status_code == 401, (method, path)
            assert response.headers["aauth-requirement"] == "requirement=person-token"
        assert httpx.get(base + "/whoami").headers["aauth-requirement"] == (
            "requirement=agent-token"
        )
        assert "generated an Ed25519 key" not in app.log()
        assert "generated an Ed25519 key" in other.log()
        assert httpx.get(other.url + "/aauth/jwks.json").json()["keys"][0] != key.public_jwk()


def test_view_responses_convert_without_losing_cookies_or_streamed_bodies() -> None:
    page = DjangoResponse(b"ok", status=201, content_type="text/plain")
    page.set_cookie("a", "1", httponly=True)
    page.set_cookie("b", "2")
    neutral = from_django(page)
    assert (neutral.status, neutral.body) == (201, b"ok")
    cookies = [v for k, v in neutral.headers if k == "Set-Cookie"]
    assert cookies == ["a=1; HttpOnly; Path=/", "b=2; Path=/"]
    back = to_django(neutral)
    assert sorted(back.cookies) == ["a", "b"] and back.cookies["a"]["httponly"] is True
    assert from_django(StreamingHttpResponse(iter([b"a", b"b"]))).body == b"ab"

    async def parts() -> AsyncIterator[bytes]:
        yield b"c"
        yield b"d"

    assert from_django(StreamingHttpResponse(parts())).body == b"cd"
    streamed = async_to_sync(afrom_django)(StreamingHttpResponse(parts()))
    assert streamed.body == b"cd"
