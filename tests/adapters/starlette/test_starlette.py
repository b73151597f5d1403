"""The Starlette adapter: wire scenarios, sync/async/class views, settings, and a real server."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aauth_server_starlette import AAuth, identity, to_http_request, to_response
from starlette.applications import Starlette
from starlette.config import Config
from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Message

from aauth_server.errors import AAuthError, Forbidden
from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.keys.jwk import jwk_thumbprint
from aauth_server.resource import ConfigurationError, ResourceConfig, ResourceGuard
from example_apps._procs import AppSpec, running_apps
from tests.adapters.harness_starlette import send, send_to
from tests.support import AP_ISSUER, RESOURCE, Scenario, World, assert_scenario, scenarios

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("scenario", scenarios(), ids=lambda s: s.name)
def test_scenario(scenario: Scenario) -> None:
    world = World()
    response = send(world.resource_config(), scenario.build(world))
    assert_scenario(scenario, response, world)


@pytest.mark.parametrize(
    "scenario", [s for s in scenarios() if s.error is not None], ids=lambda s: s.name
)
def test_errors_render_exactly_as_the_core(scenario: Scenario) -> None:
    world = World()
    request = scenario.build(world)
    core = ResourceGuard(world.resource_config())
    with pytest.raises(AAuthError) as raised:
        core.check(request)
    expected = raised.value.to_response()
    response = send(world.resource_config(), request)
    assert response.status == expected.status
    assert response.body == expected.body
    got = [(k.lower(), v) for k, v in response.headers if k.lower() != "content-length"]
    assert got == [(k.lower(), v) for k, v in expected.headers]


# -- views of every kind ----------------------------------------------------------------------


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _identity_payload(request: Request, kind: str) -> dict[str, Any]:
    who = identity(request)
    assert who is not None and who is request.state.aauth
    return {
        "kind": kind,
        **who.as_dict(),
        "token": who.token,
        "claims_sub": who.claims["sub"],
        "in_event_loop": _in_event_loop(),
    }


def _views_app(aauth: AAuth) -> Starlette:
    @aauth.protect()
    async def async_view(request: Request) -> JSONResponse:
        body = await request.body()  # read again after the guard read it
        return JSONResponse({**_identity_payload(request, "async"), "body": body.decode()})

    @aauth.protect("agent-token")
    def sync_view(request: Request) -> JSONResponse:
        return JSONResponse(_identity_payload(request, "sync"))

    class ClassView(HTTPEndpoint):
        @aauth.protect()
        async def get(self, request: Request) -> JSONResponse:
            return JSONResponse(_identity_payload(request, "class-async"))

        @aauth.protect()
        def post(self, request: Request) -> JSONResponse:
            return JSONResponse(_identity_payload(request, "class-sync"))

    @aauth.protect()
    async def forbidden(request: Request) -> JSONResponse:
        raise Forbidden("agent not on the list")

    @aauth.protect(optional=True)
    async def item(request: Request) -> JSONResponse:
        return JSONResponse({"name": request.path_params["name"], "query": request.url.query})

    return Starlette(
        routes=[
            Route("/async", async_view, methods=["GET", "POST"]),
            Route("/sync", sync_view, methods=["GET", "POST"]),
            Route("/class", ClassView),
            Route("/forbidden", forbidden),
            Route("/items/{name:path}", item),
            *aauth.routes(),
        ]
    )


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def app(world: World) -> Starlette:
    return _views_app(AAuth(world.resource_config()))


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("GET", "/async", "async"),
        ("GET", "/sync", "sync"),
        ("GET", "/class", "class-async"),
        ("POST", "/class", "class-sync"),
    ],
)
def test_every_view_kind_gets_the_identity(
    world: World, app: Starlette, method: str, path: str, kind: str
) -> None:
    body = b'{"n":1}' if method == "POST" else b""
    response = send_to(app, world.signed(method, path, body=body))
    assert response.status == 200, response.body
    payload = json.loads(response.body)
    assert payload["kind"] == kind
    assert payload["agent"] == payload["claims_sub"] == world.agent_id
    assert payload["issuer"] == AP_ISSUER
    assert payload["jkt"] == jwk_thumbprint(world.agent_key.public_jwk())
    assert payload["token"] == world.agent_token


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/sync"), ("GET", "/class"), ("POST", "/class")]
)
def test_every_view_kind_is_protected(app: Starlette, method: str, path: str) -> None:
    response = send_to(
        app, HttpRequest(method, RESOURCE + path, [], b"x" if method == "POST" else b"")
    )
    assert response.status == 401
    assert response.header("aauth-requirement") == "requirement=agent-token"


@pytest.mark.parametrize(
    ("method", "path", "in_loop"),
    [("GET", "/async", True), ("GET", "/sync", False), ("POST", "/class", False)],
)
def test_sync_views_run_in_the_threadpool(
    world: World, app: Starlette, method: str, path: str, in_loop: bool
) -> None:
    response = send_to(app, world.signed(method, path, body=b"{}" if method == "POST" else b""))
    assert json.loads(response.body)["in_event_loop"] is in_loop


def test_body_is_read_once_and_still_reaches_the_view(world: World, app: Starlette) -> None:
    response = send_to(app, world.signed("POST", "/async", body=b'{"hello":"world"}'))
    assert response.status == 200
    assert json.loads(response.body)["body"] == '{"hello":"world"}'


def test_aauth_error_raised_by_the_view_renders_as_the_core_says(
    world: World, app: Starlette
) -> None:
    response = send_to(app, world.signed("GET", "/forbidden"))
    expected = Forbidden("agent not on the list").to_response()
    assert (response.status, response.body) == (403, expected.body)
    assert response.header("content-type") == "application/problem+json"
    assert response.header("signature-error") is None


def test_percent_encoded_target_reaches_the_verifier_unchanged(
    world: World, app: Starlette
) -> None:
    # A decoded or re-encoded @path would break the signature.
    response = send_to(app, world.signed("GET", "/items/a%2Fb%20c?q=x%20y"))
    assert response.status == 200, response.body
    assert json.loads(response.body) == {"name": "a/b c", "query": "q=x%20y"}


def test_protect_without_a_request_argument_fails_clearly(world: World) -> None:
    aauth = AAuth(world.resource_config())

    @aauth.protect()
    async def not_a_view(value: int) -> int:
        return value

    with pytest.raises(TypeError, match="not called with a Request"):
        asyncio.run(not_a_view(1))


def test_well_known_metadata(world: World, app: Starlette) -> None:
    request = HttpRequest("GET", RESOURCE + "/.well-known/aauth-resource.json", [])
    response = send_to(app, request)
    assert response.status == 200
    assert response.header("content-type") == "application/json"
    assert json.loads(response.body)["issuer"] == RESOURCE
    assert response.body == ResourceGuard(world.resource_config()).metadata_response().body


# -- conversion -------------------------------------------------------------------------------


def _request(scope_extra: dict[str, Any], body: bytes = b"") -> Request:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "scheme": "http",
        "path": "/a b",
        "raw_path": b"/a%20b",
        "query_string": b"x=%41",
        "headers": [
            (b"host", b"internal:8080"),
            (b"x-dup", b"one"),
            (b"x-dup", b"two,  three"),
        ],
        **scope_extra,
    }
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


def test_to_http_request_keeps_raw_lines_target_and_body(world: World) -> None:
    guard = ResourceGuard(world.resource_config())
    request = _request({}, b"payload")
    converted = asyncio.run(to_http_request(request, guard))
    assert converted.method == "POST"
    assert converted.url == "http://internal:8080/a%20b?x=%41"
    assert converted.header_values("x-dup") == ["one", "two,  three"]
    assert converted.body == b"payload"
    assert asyncio.run(request.body()) == b"payload"


def test_public_origin_wins_over_host(world: World) -> None:
    guard = ResourceGuard(world.resource_config(public_origin="https://api.example"))
    converted = asyncio.run(to_http_request(_request({}), guard))
    assert converted.url == "https://api.example/a%20b?x=%41"


def test_to_response_keeps_every_line_and_the_bytes() -> None:
    neutral = HttpResponse(
        418, [("X-Dup", "1"), ("Content-Type", "text/odd"), ("X-Dup", "2")], b"\x00\xffraw"
    )
    rendered = to_response(neutral)
    assert rendered.status_code == 418
    assert rendered.body == b"\x00\xffraw"
    assert rendered.raw_headers == [
        (b"x-dup", b"1"),
        (b"content-type", b"text/odd"),
        (b"x-dup", b"2"),
        (b"content-length", b"5"),
    ]


# -- configuration ----------------------------------------------------------------------------


def test_keyword_settings(world: World) -> None:
    aauth = AAuth(issuer="https://api.example", SIGNATURE_WINDOW=30, discovery=world.discovery())
    assert aauth.config.issuer == "https://api.example"
    assert aauth.config.signature_window == 30
    assert aauth.guard.config is aauth.config


def test_keyword_settings_win_over_a_config_object(world: World) -> None:
    base = world.resource_config(signature_window=90)
    aauth = AAuth(base, signature_window=20, name="Demo")
    assert (aauth.config.signature_window, aauth.config.name) == (20, "Demo")
    assert aauth.config.discovery is base.discovery
    assert aauth.guard.metadata()["signature_window"] == 20


def test_settings_from_starlette_config_and_constructor_arguments_win(world: World) -> None:
    env = {
        "AAUTH_ISSUER": "http://127.0.0.1:8123",
        "AAUTH_DEV_LOOPBACK": "true",
        "AAUTH_SIGNATURE_WINDOW": "45",
        "AAUTH_ACCEPT_ALGS": "Ed25519",
        "AAUTH_NAME": "from env",
        "UNRELATED": "ignored",
    }
    aauth = AAuth.from_config(Config(environ=env), name="from code", discovery=world.discovery())
    config = aauth.config
    assert config.issuer == "http://127.0.0.1:8123"
    assert config.dev_loopback is True
    assert config.signature_window == 45
    assert config.accept_algs == ("Ed25519",)
    assert config.name == "from code"


def test_settings_prefix_is_configurable() -> None:
    aauth = AAuth.from_config(Config(environ={"RS_ISSUER": "https://rs.example"}), prefix="RS_")
    assert aauth.config.issuer == "https://rs.example"


def test_settings_read_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AAUTH_ISSUER", "https://env.example")
    assert AAuth.from_config().config.issuer == "https://env.example"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: AAuth(), "ISSUER setting is required"),
        (lambda: AAuth(issuer="http://127.0.0.1:8000"), "dev_loopback"),
        (lambda: AAuth(issuer="https://api.example", isuser="x"), "unknown AAuth setting 'isuser'"),
        (lambda: AAuth(issuer="https://api.example", signature_window=0), "signature_window"),
        (
            lambda: AAuth.from_config(
                Config(environ={"AAUTH_ISSUER": "https://a.example", "AAUTH_DEV_LOOPBACK": "yes"})
            ),
            "AAUTH_DEV_LOOPBACK.*Not a valid bool",
        ),
        (
            lambda: AAuth.from_config(
                Config(
                    environ={"AAUTH_ISSUER": "https://a.example", "AAUTH_SIGNATURE_WINDOW": "1m"}
                )
            ),
            "AAUTH_SIGNATURE_WINDOW.*Not a valid int",
        ),
        (lambda: AAuth.from_config(Config(environ={})), "ISSUER setting is required"),
    ],
)
def test_bad_configuration_fails_loudly(build: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        build()


def test_unsupported_mode_fails_at_decoration_time(world: World) -> None:
    with pytest.raises(ValueError, match="per-call"):
        AAuth(world.resource_config()).protect("per-call")


def test_config_object_is_used_as_given(world: World) -> None:
    config: ResourceConfig = world.resource_config()
    assert AAuth(config).config is config


# -- a real server ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def server() -> Iterator[str]:
    spec = AppSpec("starlette", "example_apps.starlette_resource", ("--dev", "--trust-any-ps"))
    with running_apps([spec]) as (app,):
        yield app.url


def test_real_server_challenges_an_unsigned_request(server: str) -> None:
    with httpx.Client(trust_env=False, timeout=10) as client:
        response = client.get(server + "/whoami")
        assert response.status_code == 401
        assert response.headers["aauth-requirement"] == "requirement=agent-token"
        assert response.json()["error"] == "agent_token_required"
        metadata = client.get(server + "/.well-known/aauth-resource.json")
        assert metadata.status_code == 200
        assert metadata.json()["issuer"] == server
