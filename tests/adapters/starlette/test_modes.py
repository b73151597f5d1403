"""Every access mode through the Starlette adapter: the shared table, deferred delivery,
sessions, step-up, revocation and the replay cache."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from aauth_server_starlette import AAuth, identity
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from aauth_server.fields import parse_aauth_requirement, parse_signature_error
from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.keys.jwk import PrivateKey
from aauth_server.resource import PersonIdentity, ResourceConfig, SessionIdentity
from aauth_server.signatures.message import AAUTH_COMPONENTS
from aauth_server.storage.uri import open_async_store, open_store
from aauth_server.tokens.jwt import decode_unverified
from example_apps import starlette_resource as example
from tests.adapters.harness_starlette import build_app, guard_for, json_response, send, send_to
from tests.redis_server import ensure_redis
from tests.support import (
    AS_ISSUER,
    PERSON,
    PS_ISSUER,
    RESOURCE,
    Scenario,
    World,
    assert_scenario,
    mode_scenarios,
)


@pytest.mark.parametrize("scenario", mode_scenarios(), ids=lambda s: s.name)
def test_mode_scenario(scenario: Scenario) -> None:
    world = World()
    config = world.resource_config(**scenario.config)
    for before in scenario.before(world) if scenario.before else ():
        assert send(config, before).status < 400
    assert_scenario(scenario, send(config, scenario.build(world)), world)


# -- an app with counted views of both kinds ------------------------------------------------


class CountedApp:
    """Sync and async views per auth-token route, each counting its runs."""

    def __init__(self, config: ResourceConfig) -> None:
        self.aauth = aauth = AAuth(config)
        self.calls: Counter[str] = Counter()
        calls = self.calls

        def payload(request: Request, kind: str) -> dict[str, object]:
            calls[kind] += 1
            who = identity(request, PersonIdentity)
            assert who is not None and who is request.state.aauth
            return {"kind": kind, "scope": who.scope, "sub": who.sub, "q": request.url.query}

        @aauth.protect("auth-token", scope="data.read")
        async def data_async(request: Request) -> Response:
            return json_response(payload(request, "async"))

        @aauth.protect("auth-token", scope="data.read")
        def data_sync(request: Request) -> Response:
            return json_response(payload(request, "sync"))

        @aauth.protect("auth-token", scope="data.read", deferred=True)
        async def deferred_async(request: Request) -> Response:
            body = await request.body()
            return json_response({**payload(request, "deferred-async"), "body": body.decode()})

        @aauth.protect("auth-token", scope="data.read", deferred=True)
        def deferred_sync(request: Request) -> Response:
            return json_response(payload(request, "deferred-sync"))

        @aauth.protect("auth-token", scope="data.read", deferred=True)
        async def deferred_broken(request: Request) -> Response:
            calls["broken"] += 1
            raise RuntimeError("the view failed")

        self.app = Starlette(
            routes=[
                Route("/data-async", data_async),
                Route("/data-sync", data_sync),
                Route("/deferred-async", deferred_async, methods=["GET", "POST"]),
                Route("/deferred-sync", deferred_sync),
                Route("/deferred-broken", deferred_broken),
                *aauth.routes(),
            ]
        )

    def send(self, request: HttpRequest) -> HttpResponse:
        return send_to(self.app, request)


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def counted(world: World) -> CountedApp:
    return CountedApp(world.resource_config())


def _path(location: str | None) -> str:
    assert location is not None and location.startswith(RESOURCE + "/aauth/pending/")
    return urlsplit(location).path


def _hold(world: World, app: CountedApp, path: str, person: str, body: bytes = b"") -> str:
    method = "POST" if body else "GET"
    answer = app.send(world.signed(method, path, token=person, body=body))
    assert answer.status == 202, answer.body
    assert json.loads(answer.body) == {"status": "pending"}
    requirement = parse_aauth_requirement(answer.header("aauth-requirement") or "")
    assert requirement.requirement == "auth-token" and requirement.resource_token
    claims = decode_unverified(requirement.resource_token).payload
    assert (claims["aud"], claims["sub"], claims["scope"]) == (PS_ISSUER, PERSON, "data.read")
    return _path(answer.header("location"))


@pytest.mark.parametrize("path", ["/data-async", "/data-sync"])
def test_sync_and_async_auth_token_views(world: World, counted: CountedApp, path: str) -> None:
    answer = counted.send(world.signed("GET", path + "?x=1", token=world.auth_token("data.read")))
    assert answer.status == 200, answer.body
    kind = path.removeprefix("/data-")
    assert json.loads(answer.body) == {
        "kind": kind,
        "scope": "data.read",
        "sub": PERSON,
        "q": "x=1",
    }
    person = counted.send(world.signed("GET", path, token=world.person_token()))
    assert person.status == 401
    assert (person.header("aauth-requirement") or "").startswith("requirement=auth-token;")
    assert counted.calls == Counter({kind: 1})


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_deferred_flow(world: World, counted: CountedApp, kind: str) -> None:
    person = world.person_token()
    pending = _hold(world, counted, f"/deferred-{kind}?item=a%20b", person)
    assert counted.calls == Counter()

    # Still only a person token: keep waiting, the same resource token again.
    again = counted.send(world.signed("GET", pending, token=person))
    assert again.status == 202
    assert again.header("location") == RESOURCE + pending
    assert again.header("cache-control") == "no-store"

    auth = world.auth_token("data.read")
    done = counted.send(world.signed("GET", pending, token=auth))
    assert done.status == 200, done.body
    expected = {"kind": f"deferred-{kind}", "scope": "data.read", "sub": PERSON, "q": "item=a%20b"}
    payload = json.loads(done.body)
    assert {k: payload[k] for k in expected} == expected
    assert counted.calls == Counter({f"deferred-{kind}": 1})

    repeat = counted.send(world.signed("GET", pending, token=auth))
    assert (repeat.status, repeat.body) == (200, done.body)
    assert counted.calls == Counter({f"deferred-{kind}": 1})

    other = counted.send(world.signed("GET", pending, token=world.auth_token("data.read")))
    assert other.status == 410
    assert json.loads(other.body)["error"] == "gone"

    second = _hold(world, counted, f"/deferred-{kind}", person)
    cancelled = counted.send(world.signed("DELETE", second, token=person))
    assert (cancelled.status, cancelled.body) == (204, b"")
    assert counted.send(world.signed("GET", second, token=auth)).status == 404
    assert counted.calls == Counter({f"deferred-{kind}": 1})


def test_deferred_post_body_reaches_the_view(world: World, counted: CountedApp) -> None:
    pending = _hold(world, counted, "/deferred-async", world.person_token(), b'{"n":1}')
    done = counted.send(world.signed("GET", pending, token=world.auth_token("data.read")))
    assert done.status == 200, done.body
    assert json.loads(done.body)["body"] == '{"n":1}'


def test_deferred_poll_by_another_agent_is_refused(world: World, counted: CountedApp) -> None:
    pending = _hold(world, counted, "/deferred-async", world.person_token())
    other_key = PrivateKey.generate("Ed25519")
    other_token = world.provider.issue(other_key.public, "other")
    answer = counted.send(world.signed("DELETE", pending, token=other_token, key=other_key))
    assert answer.status == 403
    assert counted.send(world.signed("DELETE", pending, token=world.person_token())).status == 204


def test_failing_held_view_finishes_with_a_stored_500(world: World, counted: CountedApp) -> None:
    pending = _hold(world, counted, "/deferred-broken", world.person_token())
    auth = world.auth_token("data.read")
    failed = counted.send(world.signed("GET", pending, token=auth))
    assert failed.status == 500
    assert failed.header("content-type") == "application/problem+json"
    assert json.loads(failed.body)["error"] == "server_error"
    # Finished, not left running: the repeat is the stored answer, the view is not re-run.
    repeat = counted.send(world.signed("GET", pending, token=auth))
    assert (repeat.status, repeat.body) == (500, failed.body)
    assert counted.calls == Counter({"broken": 1})


def test_redispatched_endpoint_must_not_need_more_scope(world: World) -> None:
    # Two apps over one AAuth: the second routes the held path to a data.write view.
    config = world.resource_config()
    holder = CountedApp(config)
    aauth = holder.aauth

    @aauth.protect("auth-token", scope="data.write")
    async def writer(request: Request) -> Response:
        raise AssertionError("must not run")  # pragma: no cover

    runner = Starlette(routes=[Route("/deferred-async", writer), *aauth.routes()])
    pending = _hold(world, holder, "/deferred-async", world.person_token())
    answer = send_to(runner, world.signed("GET", pending, token=world.auth_token("data.read")))
    assert answer.status == 403
    assert json.loads(answer.body)["error"] == "insufficient_scope"


# -- session-token ------------------------------------------------------------------------------


def _begin_session(world: World, config: ResourceConfig) -> tuple[str, str]:
    begun = send(
        config, world.signed("GET", "/session", headers=[("AAuth-Capabilities", "interaction")])
    )
    assert begun.status == 202, begun.body
    requirement = parse_aauth_requirement(begun.header("aauth-requirement") or "")
    assert requirement.requirement == "interaction"
    assert requirement.params["url"] == RESOURCE + "/aauth/interact"
    code = requirement.params["code"]
    assert isinstance(code, str)
    return code, _path(begun.header("location"))


def test_session_flow(world: World) -> None:
    config = world.resource_config()
    code, pending = _begin_session(world, config)
    assert send(config, world.signed("GET", pending)).status == 202

    assert guard_for(config).sessions.approve(code, "acct-1") is True
    assert guard_for(config).sessions.approve(code, "acct-1") is False  # single use
    granted = send(config, world.signed("GET", pending))
    assert granted.status == 200, granted.body
    token = granted.header("aauth-access")
    assert token
    assert send(config, world.signed("GET", pending)).status in (404, 410)

    covered = [*AAUTH_COMPONENTS, "authorization"]
    headers = [("Authorization", f"AAuth {token}")]
    ok = send(config, world.signed("GET", "/session", headers=headers, components=covered))
    assert ok.status == 200, ok.body
    assert json.loads(ok.body) == {"agent": world.agent_id, "account": "acct-1"}

    bearer = send(config, world.signed("GET", "/session", headers=headers))
    assert bearer.status == 401
    error = parse_signature_error(bearer.header("signature-error") or "")
    assert error.code == "invalid_input"
    assert json.loads(bearer.body)["error"] == "invalid_input"


def test_session_denied_with_the_async_api(world: World) -> None:
    config = world.resource_config()
    code, pending = _begin_session(world, config)
    assert asyncio.run(guard_for(config).sessions.adeny(code)) is True
    denied = send(config, world.signed("GET", pending))
    assert denied.status == 403
    assert json.loads(denied.body)["error"] == "denied"


def test_session_identity_on_the_request(world: World) -> None:
    config = world.resource_config()
    code, pending = _begin_session(world, config)
    assert asyncio.run(guard_for(config).sessions.aapprove(code, "acct-2")) is True
    token = send(config, world.signed("GET", pending)).header("aauth-access")
    aauth = AAuth(config)
    seen: list[SessionIdentity] = []

    @aauth.protect("session-token")
    def view(request: Request) -> Response:
        who = identity(request, SessionIdentity)
        assert who is not None and identity(request) is None
        seen.append(who)
        return Response(b"")

    app = Starlette(routes=[Route("/session", view)])
    request = world.signed(
        "GET",
        "/session",
        headers=[("Authorization", f"AAuth {token}")],
        components=[*AAUTH_COMPONENTS, "authorization"],
    )
    assert send_to(app, request).status == 200
    assert [(s.account, s.agent.agent, s.session) for s in seen] == [
        ("acct-2", world.agent_id, token)
    ]


# -- step-up, revocation, replay ---------------------------------------------------------------


def test_step_up(world: World) -> None:
    config = world.resource_config()
    read = world.auth_token("data.read")
    assert send(config, world.signed("GET", "/data", token=read)).status == 200
    challenged = send(config, world.signed("POST", "/data", token=read, body=b"{}"))
    assert challenged.status == 401
    requirement = parse_aauth_requirement(challenged.header("aauth-requirement") or "")
    assert requirement.requirement == "auth-token" and requirement.resource_token
    claims = decode_unverified(requirement.resource_token).payload
    assert claims["scope"] == "data.write"
    assert claims["presented_jti"] == decode_unverified(read).payload["jti"]
    both = world.auth_token("data.read data.write")
    written = send(config, world.signed("POST", "/data", token=both, body=b"{}"))
    assert written.status == 200, written.body
    assert json.loads(written.body) == {"scope": "data.read data.write", "written": True}


def test_revoked_auth_token(world: World) -> None:
    config = world.resource_config()
    auth = world.auth_token("data.read")
    assert send(config, world.signed("GET", "/data", token=auth)).status == 200
    claims = decode_unverified(auth).payload
    body = json.dumps({"jti": claims["jti"], "exp": claims["exp"]}).encode()
    revoked = send(config, world.server_signed("POST", "/aauth/revoke", body))
    assert revoked.status == 200, revoked.body
    answer = send(config, world.signed("GET", "/data", token=auth))
    assert answer.status == 401
    assert parse_signature_error(answer.header("signature-error") or "").code == "revoked_jwt"
    assert answer.header("aauth-requirement") == "requirement=person-token"


def test_replay_cache_in_memory(world: World) -> None:
    config = world.resource_config(replay_cache=True)
    request = world.signed()
    assert send(config, request).status == 200
    replayed = send(config, request)
    assert replayed.status == 401
    assert json.loads(replayed.body)["error"] == "invalid_signature"
    assert send(config, world.signed("GET", "/optional")).status == 200


def test_replay_cache_in_redis(world: World) -> None:
    url, prefix = ensure_redis(), f"test-starlette-{uuid.uuid4().hex}"
    store, async_store = open_store(url, prefix=prefix), open_async_store(url, prefix=prefix)
    config = world.resource_config(replay_cache=True, store=store, async_store=async_store)
    _, app = build_app(config)
    request = world.signed()
    # One client (one event loop) for both: the async Redis client is bound to its loop.
    with TestClient(app) as client:
        try:
            first = client.request(request.method, request.url, headers=request.headers)
            second = client.request(request.method, request.url, headers=request.headers)
        finally:
            client.portal.call(async_store.aclose)  # type: ignore[union-attr]
            store.close()
    assert first.status_code == 200, first.content
    assert second.status_code == 401
    assert second.json()["error"] == "invalid_signature"


# -- the example app ------------------------------------------------------------------------


def test_example_app_options(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "rs.json"
    key_file.write_text(json.dumps(world.resource_key.private_jwk()))
    parser = example.build_parser()
    argv = ["--issuer", RESOURCE, "--ps", PS_ISSUER, "--ps", "https://ps2.example"]
    argv += ["--as", AS_ISSUER, "--replay-cache", "--signing-key", str(key_file)]
    settings = example.settings_from(parser.parse_args(argv), parser)
    aauth = AAuth(**settings, discovery=world.discovery())
    assert aauth.config.trusted_ps == (PS_ISSUER, "https://ps2.example")
    assert aauth.config.signing_key is not None
    assert aauth.config.signing_key.public_jwk() == world.resource_key.public_jwk()
    assert capsys.readouterr().err == ""
    app = example.create_app(aauth)

    metadata = json.loads(
        send_to(app, HttpRequest("GET", RESOURCE + "/.well-known/aauth-resource.json")).body
    )
    assert set(metadata["scope_descriptions"]) == {"data.read", "data.write"}
    assert metadata["authorization_endpoint"] == RESOURCE + "/aauth/authorize"
    assert metadata["revocation_endpoint"] == RESOURCE + "/aauth/revoke"

    profile = send_to(app, world.signed("GET", "/profile", token=world.person_token()))
    assert json.loads(profile.body) == {"ps": PS_ISSUER, "sub": PERSON}
    as_token = world.auth_token("data.read", four_party=True)
    request = world.signed("GET", "/data", token=as_token)
    assert json.loads(send_to(app, request).body) == {"scope": "data.read"}
    assert send_to(app, request).status == 401  # the replay cache is on
    held = send_to(app, world.signed("GET", "/deferred", token=world.person_token()))
    assert held.status == 202


def test_example_app_generates_a_key_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    parser = example.build_parser()
    settings = example.settings_from(parser.parse_args(["--dev", "--port", "8123"]), parser)
    assert settings["signing_key"] is not None
    assert settings["issuer"] == "http://127.0.0.1:8123"
    assert "generated" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        example.settings_from(parser.parse_args(["--dev", "--store-prefix", "x"]), parser)


def test_guard_routes_are_named_and_unknown_pending_ids_are_404(
    world: World, counted: CountedApp
) -> None:
    app = counted.app
    assert app.url_path_for("aauth_resource_metadata") == "/.well-known/aauth-resource.json"
    assert app.url_path_for("aauth_jwks") == "/aauth/jwks.json"
    assert app.url_path_for("aauth_authorize") == "/aauth/authorize"
    assert app.url_path_for("aauth_revoke") == "/aauth/revoke"
    assert app.url_path_for("aauth_pending", pending="x") == "/aauth/pending/x"
    jwks = counted.send(HttpRequest("GET", RESOURCE + "/aauth/jwks.json"))
    assert json.loads(jwks.body) == {"keys": [world.resource_key.public_jwk()]}
    missing = counted.send(world.signed("GET", "/aauth/pending/" + "A" * 32))
    assert missing.status == 404
    assert json.loads(missing.body)["error"] == "not_found"
    # A guard route the guard declines (HEAD on a pending URL) is the app's own 404.
    assert counted.send(HttpRequest("HEAD", RESOURCE + "/aauth/pending/" + "A" * 32)).status == 404
    assert counted.send(HttpRequest("PUT", RESOURCE + "/aauth/pending/x")).status == 405
