"""Every access mode through the Flask adapter: the shared table, deferred delivery,
sessions, step-up, revocation and replay, on sync and async views."""

from __future__ import annotations

import json
from io import BytesIO
from typing import Any
from urllib.parse import urlsplit

import pytest
from aauth_server_flask import AAuth, to_environ
from flask import Flask, Response, g, request, url_for

from aauth_server.fields import parse_aauth_requirement
from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.resource import ResourceConfig
from aauth_server.signatures.message import AAUTH_COMPONENTS
from aauth_server.tokens.jwt import decode_unverified
from tests.adapters.harness_flask import calls, guard_for, send
from tests.support import (
    PERSON,
    PS_ISSUER,
    RESOURCE,
    Scenario,
    World,
    assert_scenario,
    mode_scenarios,
)

FLAVOURS = pytest.mark.parametrize("async_views", [False, True], ids=["sync", "async"])


@FLAVOURS
@pytest.mark.parametrize("scenario", mode_scenarios(), ids=lambda s: s.name)
def test_mode_scenario(scenario: Scenario, async_views: bool) -> None:
    world = World()
    config = world.resource_config(**scenario.config)
    for before in scenario.before(world) if scenario.before else ():
        answer = send(config, before, async_views=async_views)
        assert answer.status < 400, answer.body
    response = send(config, scenario.build(world), async_views=async_views)
    assert_scenario(scenario, response, world)


def _path(location: str | None) -> str:
    assert location is not None
    return urlsplit(location).path


def _requirement(response: HttpResponse) -> dict[str, object]:
    value = response.header("aauth-requirement")
    assert value is not None
    parsed = parse_aauth_requirement(value)
    return {"requirement": parsed.requirement, **parsed.params}


# -- deferred auth-token delivery ---------------------------------------------------------


@FLAVOURS
def test_deferred_flow(async_views: bool) -> None:
    world = World()
    config = world.resource_config()
    person = world.person_token()

    def go(method: str, path: str, token: str | None = None) -> HttpResponse:
        return send(config, world.signed(method, path, token=token), async_views=async_views)

    held = go("GET", "/deferred", person)
    assert held.status == 202, held.body
    assert held.header("cache-control") == "no-store"
    assert _requirement(held)["requirement"] == "auth-token"
    location = _path(held.header("location"))
    assert location.startswith("/aauth/pending/")

    waiting = go("GET", location, person)
    assert waiting.status == 202
    assert _requirement(waiting)["requirement"] == "auth-token"
    assert calls(config, async_views=async_views)["deferred"] == 0

    auth = world.auth_token("data.read")
    done = go("GET", location, auth)
    assert done.status == 200, done.body
    assert json.loads(done.body) == {"scope": "data.read", "deferred": True}
    assert calls(config, async_views=async_views)["deferred"] == 1

    again = go("GET", location, auth)
    assert (again.status, again.body) == (200, done.body)
    assert calls(config, async_views=async_views)["deferred"] == 1

    other = go("GET", location, world.auth_token("data.read"))
    assert other.status == 410
    assert json.loads(other.body)["error"] == "gone"

    second = go("GET", "/deferred", person)
    assert second.status == 202
    second_location = _path(second.header("location"))
    assert go("DELETE", second_location).status == 204
    assert go("GET", second_location, auth).status == 404
    assert calls(config, async_views=async_views)["deferred"] == 1


def test_deferred_poll_by_another_agent_is_forbidden() -> None:
    world = World()
    config = world.resource_config()
    held = send(config, world.signed("GET", "/deferred", token=world.person_token()))
    location = _path(held.header("location"))
    # Another agent of the same provider: a valid signature, but not the holder's key.
    intruder_key = type(world.agent_key).generate("Ed25519")
    intruder_token = world.provider.issue(intruder_key.public, "intruder")
    for method in ("GET", "DELETE"):
        response = send(
            config, world.signed(method, location, token=intruder_token, key=intruder_key)
        )
        assert response.status == 403, method
    # Still held for its own agent.
    assert send(config, world.signed("GET", location, token=world.person_token())).status == 202


def _held_app(config: ResourceConfig, seen: list[dict[str, Any]]) -> Flask:
    app = Flask("held")
    aauth = AAuth(app, config=config)
    hooks: list[str] = []
    app.extensions["hooks"] = hooks

    @app.before_request
    def note() -> None:
        hooks.append(request.path)

    @app.post("/hold/<name>")
    @aauth.protect("auth-token", scope="data.read", deferred=True)
    def hold(name: str) -> Response:
        seen.append(
            {
                "name": name,
                "x": request.args.get("x"),
                "json": request.get_json(),
                "sub": g.aauth.sub,
                "url": request.url,
            }
        )
        return Response("created", status=201, headers={"X-Held": "yes"})

    @app.get("/boom")
    @aauth.protect("auth-token", scope="data.read", deferred=True)
    def boom() -> Response:
        raise RuntimeError("the view failed")

    return app


def _through(app: Flask, req: HttpRequest) -> Any:
    parts = urlsplit(req.url)
    return app.test_client().open(
        parts.path + (f"?{parts.query}" if parts.query else ""),
        method=req.method,
        base_url=f"{parts.scheme}://{parts.netloc}",
        headers=req.headers,
        data=req.body,
    )


def test_held_request_runs_with_its_method_path_query_body_and_hooks() -> None:
    world = World()
    seen: list[dict[str, Any]] = []
    app = _held_app(world.resource_config(), seen)
    held = _through(
        app,
        world.signed("POST", "/hold/a%20b?x=1", body=b'{"n": 7}', token=world.person_token()),
    )
    assert held.status_code == 202
    location = _path(held.headers["Location"])
    done = _through(app, world.signed("GET", location, token=world.auth_token("data.read")))
    assert (done.status_code, done.get_data(), done.headers["X-Held"]) == (201, b"created", "yes")
    assert seen == [
        {
            "name": "a b",
            "x": "1",
            "json": {"n": 7},
            "sub": PERSON,
            "url": RESOURCE + "/hold/a%20b?x=1",
        }
    ]
    # The held request went through the app's own routing, hooks included.
    assert app.extensions["hooks"] == ["/hold/a b", location, "/hold/a b"]


def test_held_view_that_raises_finishes_with_a_server_error() -> None:
    world = World()
    app = _held_app(world.resource_config(), [])
    held = _through(app, world.signed("GET", "/boom", token=world.person_token()))
    location = _path(held.headers["Location"])
    auth = world.auth_token("data.read")
    failed = _through(app, world.signed("GET", location, token=auth))
    assert failed.status_code == 500
    assert failed.content_type == "application/problem+json"
    assert failed.get_json() == {"error": "server_error"}
    # Finished, not left running: the repeat poll gets the stored answer.
    repeat = _through(app, world.signed("GET", location, token=auth))
    assert (repeat.status_code, repeat.get_json()) == (500, {"error": "server_error"})


def test_a_header_cannot_pose_as_a_held_invocation() -> None:
    world = World()
    app = _held_app(world.resource_config(), [])
    forged = [("Aauth-Server-Flask.Held-Identity", "x"), ("Held-Identity", "x")]
    response = _through(app, HttpRequest("POST", RESOURCE + "/hold/x", forged, b"{}"))
    assert response.status_code == 401
    assert response.headers["AAuth-Requirement"] == "requirement=person-token"


# -- session-token ------------------------------------------------------------------------


def test_session_flow() -> None:
    world = World()
    config = world.resource_config()
    capable = [("AAuth-Capabilities", "interaction")]
    begun = send(config, world.signed("GET", "/session", headers=capable))
    assert begun.status == 202, begun.body
    requirement = _requirement(begun)
    assert requirement["requirement"] == "interaction"
    assert requirement["url"] == RESOURCE + "/aauth/interact"
    code = str(requirement["code"])
    location = _path(begun.header("location"))

    assert send(config, world.signed("GET", location)).status == 202
    assert guard_for(config).sessions.approve(code, "acct-1") is True
    assert guard_for(config).sessions.approve(code, "acct-1") is False  # single use

    granted = send(config, world.signed("GET", location))
    assert granted.status == 200, granted.body
    assert granted.header("cache-control") == "no-store"
    token = granted.header("aauth-access")
    assert token

    authz = [("Authorization", f"AAuth {token}")]
    covered = [*AAUTH_COMPONENTS, "authorization"]
    response = send(config, world.signed("GET", "/session", headers=authz, components=covered))
    assert response.status == 200, response.body
    assert json.loads(response.body) == {"agent": world.agent_id, "account": "acct-1"}

    uncovered = send(config, world.signed("GET", "/session", headers=authz))
    assert uncovered.status == 401
    assert (uncovered.header("signature-error") or "").startswith("error=invalid_input")
    # Delivered once: the pending URL is gone.
    assert send(config, world.signed("GET", location)).status in (404, 410)


def test_session_denied() -> None:
    world = World()
    config = world.resource_config()
    begun = send(
        config, world.signed("GET", "/session", headers=[("AAuth-Capabilities", "interaction")])
    )
    assert guard_for(config).sessions.deny(str(_requirement(begun)["code"])) is True
    denied = send(config, world.signed("GET", _path(begun.header("location"))))
    assert denied.status == 403
    assert json.loads(denied.body)["error"] == "denied"


# -- auth-token: step-up, revocation, four-party, replay ----------------------------------


def test_step_up_issues_a_resource_token_for_the_needed_scope() -> None:
    world = World()
    config = world.resource_config()
    auth = world.auth_token("data.read")
    assert send(config, world.signed("GET", "/data", token=auth)).status == 200
    stepped = send(config, world.signed("POST", "/data", token=auth, body=b"{}"))
    assert stepped.status == 401
    requirement = _requirement(stepped)
    assert requirement["requirement"] == "auth-token"
    claims = decode_unverified(str(requirement["resource-token"])).payload
    assert (claims["aud"], claims["scope"], claims["sub"]) == (PS_ISSUER, "data.write", PERSON)
    assert claims["agent_jkt"] == world.agent_key.public.thumbprint
    assert calls(config)["data_write"] == 0
    wider = world.auth_token("data.read data.write")
    written = send(config, world.signed("POST", "/data", token=wider, body=b"{}"))
    assert written.status == 200
    assert calls(config)["data_write"] == 1


def test_revoked_auth_token() -> None:
    world = World()
    config = world.resource_config()
    auth = world.auth_token("data.read")
    assert send(config, world.signed("GET", "/data", token=auth)).status == 200
    claims = decode_unverified(auth).payload
    body = json.dumps({"jti": claims["jti"], "exp": claims["exp"]}).encode()
    revoked = send(config, world.server_signed("POST", "/aauth/revoke", body))
    assert revoked.status == 200
    response = send(config, world.signed("GET", "/data", token=auth))
    assert response.status == 401
    assert response.header("signature-error") == "error=revoked_jwt"
    assert response.header("aauth-requirement") == "requirement=person-token"
    assert calls(config)["data_read"] == 1


@FLAVOURS
def test_four_party_auth_token(async_views: bool) -> None:
    world = World()
    config = world.resource_config(access_server="https://as.example")
    challenged = send(
        config, world.signed("GET", "/data", token=world.person_token()), async_views=async_views
    )
    claims = decode_unverified(str(_requirement(challenged)["resource-token"])).payload
    assert claims["aud"] == "https://as.example"
    token = world.auth_token("data.read data.write", four_party=True)
    response = send(
        config, world.signed("POST", "/data", token=token, body=b"{}"), async_views=async_views
    )
    assert response.status == 200
    assert json.loads(response.body) == {"scope": "data.read data.write", "written": True}


@FLAVOURS
def test_replayed_request_is_rejected(async_views: bool) -> None:
    world = World()
    config = world.resource_config(replay_cache=True)
    signed = world.signed("GET", "/data", token=world.auth_token("data.read"))
    assert send(config, signed, async_views=async_views).status == 200
    replayed = send(config, signed, async_views=async_views)
    assert replayed.status == 401
    assert replayed.header("signature-error") == "error=invalid_signature"
    assert calls(config, async_views=async_views)["data_read"] == 1


# -- the guard's own routes ---------------------------------------------------------------


def test_guard_routes_are_served_under_stable_names() -> None:
    world = World()
    config = world.resource_config()
    app = Flask("routes")
    AAuth(app, config=config)
    rules = {rule.endpoint: rule.rule for rule in app.url_map.iter_rules()}
    assert rules["aauth_metadata"] == "/.well-known/aauth-resource.json"
    assert rules["aauth_jwks"] == "/aauth/jwks.json"
    assert rules["aauth_authorize"] == "/aauth/authorize"
    assert rules["aauth_revoke"] == "/aauth/revoke"
    assert rules["aauth_pending"] == "/aauth/pending/<path:_tail>"
    with app.test_request_context(base_url=RESOURCE):
        assert url_for("aauth_metadata") == "/.well-known/aauth-resource.json"
    client = app.test_client()
    jwks = client.get("/aauth/jwks.json", base_url=RESOURCE).get_json()
    assert jwks == {"keys": [world.resource_key.public_jwk()]}
    doc = client.get("/.well-known/aauth-resource.json", base_url=RESOURCE).get_json()
    assert doc["revocation_endpoint"] == RESOURCE + "/aauth/revoke"
    missing = client.get("/aauth/pending/" + "a" * 32, base_url=RESOURCE)
    assert (missing.status_code, missing.get_json()["error"]) == (404, "not_found")
    assert client.get("/aauth/revoke", base_url=RESOURCE).status_code == 405


def test_optional_endpoints_are_not_routed_when_off() -> None:
    world = World()
    app = Flask("minimal")
    AAuth(app, config=world.resource_config(authorization_path=None, revocation_path=None))
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert {"aauth_authorize", "aauth_revoke"}.isdisjoint(endpoints)
    assert {"aauth_metadata", "aauth_jwks", "aauth_pending"} <= endpoints


# -- the environ a held request is dispatched with ----------------------------------------


def test_to_environ_rebuilds_the_held_request_on_the_polled_server() -> None:
    base: dict[str, Any] = {
        "SERVER_NAME": "10.0.0.5",
        "SERVER_PORT": "8000",
        "SCRIPT_NAME": "/api",
        "wsgi.url_scheme": "http",
        "wsgi.input": BytesIO(b"poll"),
        "HTTP_AUTHORIZATION": "the poll's",
        "werkzeug.request": object(),
    }
    held = HttpRequest(
        "POST",
        "https://api.example/api/caf%C3%A9/x%2Fy?q=1",
        [("Host", "api.example"), ("Content-Type", "text/plain"), ("X-A", "1"), ("X-A", "2")],
        b"held",
    )
    environ = to_environ(held, base)
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["SCRIPT_NAME"] == "/api"
    assert environ["PATH_INFO"] == "/caf\u00c3\u00a9/x/y"
    assert environ["RAW_URI"] == environ["REQUEST_URI"] == "/api/caf%C3%A9/x%2Fy?q=1"
    assert environ["QUERY_STRING"] == "q=1"
    assert environ["HTTP_HOST"] == "api.example"
    assert environ["CONTENT_TYPE"] == "text/plain"
    assert environ["CONTENT_LENGTH"] == "4"
    assert environ["HTTP_X_A"] == "1, 2"
    assert environ["wsgi.input"].read() == b"held"
    assert environ["SERVER_NAME"] == "10.0.0.5"
    assert "HTTP_AUTHORIZATION" not in environ
    assert "werkzeug.request" not in environ
