"""The Flask adapter: wire scenarios, sync and async views, settings, and a real server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from aauth_server_flask import AAuth, ConfigurationError, raw_target, to_flask_response
from flask import Flask, Response, g, request

from aauth_server.errors import AAuthError, Forbidden
from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.resource import ResourceGuard
from example_apps._procs import AppSpec, running_apps
from tests.adapters.harness_flask import send
from tests.support import RESOURCE, Scenario, World, assert_scenario, scenarios

REPO = Path(__file__).resolve().parents[3]


def _send_via(app: Flask, req: HttpRequest) -> Any:
    base, _, target = req.url.partition("://")
    netloc, _, path = target.partition("/")
    return app.test_client().open(
        "/" + path,
        method=req.method,
        base_url=f"{base}://{netloc}",
        headers=req.headers,
        data=req.body,
    )


@pytest.mark.parametrize("scenario", scenarios(), ids=lambda s: s.name)
def test_scenario(scenario: Scenario) -> None:
    world = World()
    response = send(world.resource_config(), scenario.build(world))
    assert_scenario(scenario, response, world)


@pytest.mark.parametrize(
    "scenario", [s for s in scenarios() if s.error is not None], ids=lambda s: s.name
)
def test_error_response_is_the_core_response_exactly(scenario: Scenario) -> None:
    world = World()
    req = scenario.build(world)
    with pytest.raises(AAuthError) as raised:
        ResourceGuard(world.resource_config()).check(req)
    core = raised.value.to_response()
    response = send(world.resource_config(), req)
    assert (response.status, response.body) == (core.status, core.body)
    # Werkzeug adds Content-Length; every core header line is there, in order.
    got = [(k.lower(), v) for k, v in response.headers if k.lower() != "content-length"]
    assert got == [(k.lower(), v) for k, v in core.headers]


def _identity_app(world: World, **settings: Any) -> Flask:
    app = Flask("identity")
    app.config.update(AAUTH_ISSUER=RESOURCE, AAUTH_DISCOVERY=world.discovery(), **settings)
    aauth = AAuth(app)

    def describe() -> dict[str, Any]:
        ident = g.aauth
        return {
            "agent": ident.agent,
            "issuer": ident.issuer,
            "jkt": ident.jkt,
            "token": ident.token,
            "json": request.get_json(silent=True),
        }

    @app.post("/sync")
    @aauth.protect()
    def sync_view() -> dict[str, Any]:
        return describe()

    @app.post("/async")
    @aauth.protect()
    async def async_view() -> dict[str, Any]:
        return describe()

    @app.get("/files/<path:name>")
    @aauth.protect()
    def files(name: str) -> dict[str, Any]:
        return {"name": name}

    @app.get("/forbidden")
    @aauth.protect()
    def forbidden() -> Response:
        raise Forbidden("agent not allowed here")

    return app


@pytest.mark.parametrize("path", ["/sync", "/async"])
def test_sync_and_async_views_get_identity_and_body(path: str) -> None:
    world = World()
    app = _identity_app(world)
    response = _send_via(app, world.signed("POST", path, body=b'{"n": 7}'))
    assert response.status_code == 200, response.get_data()
    data = response.get_json()
    assert data["agent"] == world.agent_id
    assert data["issuer"] == "https://agent.example"
    assert data["jkt"] == world.agent_key.public.thumbprint
    assert data["token"] == world.agent_token
    assert data["json"] == {"n": 7}


@pytest.mark.parametrize("path", ["/sync", "/async"])
def test_sync_and_async_views_challenge_unsigned(path: str) -> None:
    app = _identity_app(World())
    response = app.test_client().post(path, base_url=RESOURCE)
    assert response.status_code == 401
    assert response.headers["AAuth-Requirement"] == "requirement=agent-token"


@pytest.mark.parametrize("path", ["/sync", "/async"])
def test_tampered_body_fails_content_digest(path: str) -> None:
    world = World()
    req = world.signed("POST", path, body=b'{"n": 7}')
    response = _send_via(
        _identity_app(world), HttpRequest(req.method, req.url, req.headers, b'{"n": 8}')
    )
    assert response.status_code == 401
    assert "Signature-Error" in response.headers


def test_percent_encoded_path_is_verified_as_sent() -> None:
    world = World()
    response = _send_via(_identity_app(world), world.signed(path="/files/a%20b%2Fc"))
    assert response.status_code == 200, response.get_data()
    assert response.get_json() == {"name": "a b/c"}


def test_views_raising_aauth_errors_get_the_core_wire_form() -> None:
    world = World()
    response = _send_via(_identity_app(world), world.signed(path="/forbidden"))
    assert response.status_code == 403
    assert response.content_type == "application/problem+json"
    assert response.get_json()["error"] == Forbidden.error
    assert "Signature-Error" not in response.headers


def test_public_origin_wins_over_host() -> None:
    world = World()
    app = _identity_app(world, AAUTH_PUBLIC_ORIGIN=RESOURCE)
    signed = world.signed("POST", "/sync", body=b"{}")
    internal = HttpRequest(signed.method, "http://10.0.0.5:8000/sync", signed.headers, signed.body)
    assert _send_via(app, internal).status_code == 200
    # Without public_origin the internal Host is what the signature is checked against.
    assert _send_via(_identity_app(world), internal).status_code == 401


def test_well_known_metadata() -> None:
    world = World()
    response = send(
        world.resource_config(),
        HttpRequest("GET", RESOURCE + "/.well-known/aauth-resource.json", []),
    )
    assert response.status == 200
    assert response.header("content-type") == "application/json"
    assert json.loads(response.body)["issuer"] == RESOURCE


# -- configuration ----------------------------------------------------------------------------


def test_settings_come_from_prefixed_app_config() -> None:
    app = Flask("cfg")
    app.config.update(
        AAUTH_ISSUER="http://127.0.0.1:9000", AAUTH_DEV_LOOPBACK=True, AAUTH_SIGNATURE_WINDOW=30
    )
    aauth = AAuth(app)
    config = aauth.guard_for(app).config
    assert (config.issuer, config.dev_loopback, config.signature_window) == (
        "http://127.0.0.1:9000",
        True,
        30,
    )


def test_constructor_arguments_win_over_app_config() -> None:
    app = Flask("cfg")
    app.config.update(AAUTH_ISSUER="https://from-config.example", AAUTH_SIGNATURE_WINDOW=30)
    aauth = AAuth(app, issuer="https://from-code.example")
    config = aauth.guard_for(app).config
    assert config.issuer == "https://from-code.example"
    assert config.signature_window == 30


def test_full_config_object_wins_over_everything() -> None:
    world = World()
    app = Flask("cfg")
    app.config.update(AAUTH_ISSUER="https://from-config.example")
    aauth = AAuth(app, config=world.resource_config(), issuer="https://ignored.example")
    assert aauth.guard_for(app).config.issuer == RESOURCE


def test_one_extension_serves_several_apps() -> None:
    aauth = AAuth()
    apps = []
    for host in ("one.example", "two.example"):
        app = Flask(host)
        app.config["AAUTH_ISSUER"] = f"https://{host}"
        aauth.init_app(app)
        apps.append(app)
    for app, host in zip(apps, ("one.example", "two.example"), strict=True):
        doc = app.test_client().get("/.well-known/aauth-resource.json").get_json()
        assert doc["issuer"] == f"https://{host}"
        with app.app_context():
            assert aauth.guard_for().config.issuer == f"https://{host}"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "AAUTH_ISSUER"),
        ({"AAUTH_ISSUER": "http://127.0.0.1:9000"}, "dev_loopback"),
        ({"AAUTH_ISSUER": "https://r.example", "AAUTH_SIGNATUR_WINDOW": 5}, "SIGNATUR_WINDOW"),
        ({"AAUTH_ISSUER": "https://r.example", "AAUTH_SIGNATURE_WINDOW": 0}, "signature_window"),
    ],
)
def test_bad_configuration_fails_loudly(settings: dict[str, Any], message: str) -> None:
    app = Flask("bad")
    app.config.update(settings)
    with pytest.raises(ConfigurationError, match=message):
        AAuth(app)


def test_unsupported_mode_fails_at_decoration() -> None:
    with pytest.raises(ValueError, match="per-call"):
        AAuth().protect("per-call")


def test_guard_for_an_app_without_init_app_says_so() -> None:
    with pytest.raises(RuntimeError, match="init_app"):
        AAuth().guard_for(Flask("bare"))


# -- conversions ------------------------------------------------------------------------------


def test_raw_target_prefers_the_server_raw_uri() -> None:
    env: dict[str, object] = {
        "RAW_URI": "/a%2Fb?x=%20",
        "PATH_INFO": "/a/b",
        "QUERY_STRING": "x=%20",
    }
    assert raw_target(env) == "/a%2Fb?x=%20"
    env = {"REQUEST_URI": "/p%7E", "PATH_INFO": "/p~"}
    assert raw_target(env) == "/p%7E"


def test_raw_target_rebuilds_from_path_info_when_needed() -> None:
    # PATH_INFO is a WSGI "bytes as latin-1" string: here UTF-8 "é".
    env: dict[str, object] = {
        "SCRIPT_NAME": "/api",
        "PATH_INFO": "/caf\u00c3\u00a9 x",
        "QUERY_STRING": "q=1",
        "RAW_URI": "https://absolute.example/form",
    }
    assert raw_target(env) == "/api/caf%C3%A9%20x?q=1"
    assert raw_target({"PATH_INFO": ""}) == "/"


def test_flask_response_carries_every_header_line() -> None:
    core = HttpResponse(
        401, [("Content-Type", "application/problem+json"), ("X-A", "1"), ("X-A", "2")], b"{}"
    )
    response = to_flask_response(core)
    assert response.status_code == 401
    assert response.headers.getlist("X-A") == ["1", "2"]
    assert response.content_type == "application/problem+json"
    assert response.get_data() == b"{}"


# -- a real server ----------------------------------------------------------------------------


def test_example_app_on_a_real_server() -> None:
    spec = AppSpec("flask", "example_apps.flask_resource", ("--dev", "--trust-any-ps"))
    with running_apps([spec]) as (app,), httpx.Client() as client:
        base = app.url
        unsigned = client.get(base + "/whoami")
        assert unsigned.status_code == 401
        assert unsigned.headers["aauth-requirement"] == "requirement=agent-token"
        assert unsigned.json()["error"] == "agent_token_required"
        doc = client.get(base + "/.well-known/aauth-resource.json").json()
        assert doc["issuer"] == base
