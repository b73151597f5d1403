"""Halting a mission at the resources (issue 10 item 7), and the outbound revocation client.

The PS and the example Starlette resource run on real uvicorn servers on 127.0.0.1: the
resource verifies the PS's signed revocation with the PS's published key, and afterwards
refuses the revoked tokens with ``401 revoked_jwt``.  The client's reading of every answer
a revocation endpoint may give is checked against a scripted HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from aauth_server.asgi import async_asgi_app
from aauth_server.fields import parse_aauth_requirement, parse_signature_error
from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.keys.egress import EgressPolicy
from aauth_server.keys.fetcher import FetchResponse
from aauth_server.keys.jwk import PrivateKey
from aauth_server.outbound import OutboundClient, ServerSigner
from aauth_server.person import PersonServer, PersonServerConfig
from aauth_server.records import IssuedToken
from aauth_server.revocation_client import (
    PENDING,
    REFUSED,
    RETRY,
    REVOKED,
    UNAVAILABLE,
    UNSUPPORTED,
    RevocationClient,
    classify,
)
from aauth_server.tokens.aauth import DWK_PERSON, mint_auth_token, mint_person_token
from aauth_server.tokens.jwt import decode_unverified
from tests.person.ps_harness import SUBJECT_SECRET
from tests.support import World
from tests.threaded_uvicorn import ThreadedUvicorn

ALICE = "alice"
DEADLINE = 20.0


class Lazy:
    """An ASGI app whose handler is set once the server (and so its port) exists."""

    def __init__(self) -> None:
        self.handler: Callable[[HttpRequest], Any] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def handle(request: HttpRequest) -> HttpResponse:
            assert self.handler is not None
            answer = await self.handler(request)
            return answer or HttpResponse(404, [], b"")

        await async_asgi_app(handle)(scope, receive, send)


def _wait(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def servers() -> Iterator[dict[str, Any]]:
    from aauth_server_starlette import AAuth

    from example_apps.starlette_resource import SCOPES, create_app

    world = World()
    ps_app, rs_app, bare_app = Lazy(), Lazy(), Lazy()
    ps_server, rs_server, bare_server = (
        ThreadedUvicorn(ps_app),
        ThreadedUvicorn(rs_app),
        ThreadedUvicorn(bare_app),
    )
    ps = PersonServer(
        PersonServerConfig(
            issuer=ps_server.origin,
            signing_key=world.ps_key,
            subject_secret=SUBJECT_SECRET,
            dev_loopback=True,
            records="sqlite://",
        )
    )
    ps_app.handler = ps.ahandle
    aauth = AAuth(
        issuer=rs_server.origin,
        dev_loopback=True,
        signing_key=PrivateKey.generate("Ed25519", kid="rs-1"),
        scope_descriptions=SCOPES,
        revocation_path="/aauth/revoke",
        trusted_ps=(ps_server.origin,),
    )
    starlette = create_app(aauth)

    async def resource(request: HttpRequest) -> HttpResponse | None:
        return None

    rs_app.handler = resource
    rs_server.server.config.app = starlette  # the real Starlette resource app

    async def bare(request: HttpRequest) -> HttpResponse | None:
        # A resource that publishes metadata without a revocation endpoint.
        if request.path == "/.well-known/aauth-resource.json":
            return HttpResponse.json(200, {"issuer": bare_server.origin})
        return None

    bare_app.handler = bare
    for server in (ps_server, rs_server, bare_server):
        server.start()
    try:
        yield {
            "world": world,
            "ps": ps,
            "ps_origin": ps_server.origin,
            "rs": rs_server.origin,
            "bare": bare_server.origin,
        }
    finally:
        ps.close()
        for server in (ps_server, rs_server, bare_server):
            server.stop()


def _tokens(env: dict[str, Any], s256: str) -> dict[str, str]:
    world: World = env["world"]
    ps: PersonServer = env["ps"]
    now = time.time()
    tokens: dict[str, str] = {}
    sub = ps.directed_sub(ALICE, env["rs"])
    made = {
        "person": mint_person_token(
            world.ps_key,
            iss=env["ps_origin"],
            aud=env["rs"],
            sub=sub,
            cnf_jwk=world.agent_key.public,
            now=now,
            lifetime=600,
            mission_s256=s256,
            dev_loopback=True,
        ),
        "auth": mint_auth_token(
            world.ps_key,
            iss=env["ps_origin"],
            dwk=DWK_PERSON,
            aud=env["rs"],
            ps=env["ps_origin"],
            sub=sub,
            cnf_jwk=world.agent_key.public,
            now=now,
            lifetime=600,
            scope="data.read",
            extra={"mission_s256": s256},
            dev_loopback=True,
        ),
        "bare": mint_person_token(
            world.ps_key,
            iss=env["ps_origin"],
            aud=env["bare"],
            sub="x",
            cnf_jwk=world.agent_key.public,
            now=now,
            lifetime=600,
            mission_s256=s256,
            dev_loopback=True,
        ),
    }
    for name, token in made.items():
        claims = decode_unverified(token).payload
        ps.records.run(
            ps.rec.record_issued(
                IssuedToken(
                    jti=str(claims["jti"]),
                    type="auth" if name == "auth" else "person",
                    aud=str(claims["aud"]),
                    iat=float(claims["iat"]),  # type: ignore[arg-type]
                    exp=float(claims["exp"]),  # type: ignore[arg-type]
                    person=ALICE,
                    mission=s256,
                )
            )
        )
        tokens[name] = token
    return tokens


def _call(env: dict[str, Any], path: str, token: str) -> httpx.Response:
    request = env["world"].signed("GET", path, token=token, origin=env["rs"])
    return httpx.request("GET", request.url, headers=request.headers, timeout=10)


def test_suspend_revokes_the_missions_tokens_at_the_resources(servers: dict[str, Any]) -> None:
    env = servers
    ps: PersonServer = env["ps"]
    mission = ps.missions.approve(
        agent_issuer="https://agent.example",
        agent="aauth:assistant@agent.example",
        person=ALICE,
        description="Plan a trip",
        resources=[env["rs"], env["bare"]],
    )
    tokens = _tokens(env, mission.s256)
    assert _call(env, "/profile", tokens["person"]).status_code == 200
    assert _call(env, "/data", tokens["auth"]).status_code == 200

    ps.run(ps.missions.suspend_steps(mission.s256, ALICE))

    def settled() -> bool:
        items = ps.records.run(ps.rec.outbox_items(mission=mission.s256))
        return len(items) == 3 and all(i.status != "pending" for i in items)

    _wait(settled, "the revocations to settle")
    outcomes = {
        (i.recipient, i.token_type): i.status
        for i in ps.records.run(ps.rec.outbox_items(mission=mission.s256))
    }
    assert outcomes == {
        (env["rs"], "person"): "revoked",
        (env["rs"], "auth"): "revoked",
        (env["bare"], "person"): "unsupported",
    }
    for path, name in (("/profile", "person"), ("/data", "auth")):
        refused = _call(env, path, tokens[name])
        assert refused.status_code == 401, (name, refused.text)
        error = parse_signature_error(refused.headers["signature-error"]).code
        assert error == "revoked_jwt", name
    requirement = parse_aauth_requirement(
        _call(env, "/data", tokens["auth"]).headers["aauth-requirement"]
    )
    assert requirement.requirement == "person-token"
    revocations = [e for e in ps.missions.history(mission.s256) if e["event"] == "revocation"]
    assert sorted((e["resource"], e["decision"]) for e in revocations) == sorted(
        [(env["rs"], "revoked"), (env["rs"], "revoked"), (env["bare"], "unsupported")]
    )
    # The PS refuses them too, and a repeated suspend queues nothing new.
    for token in tokens.values():
        jti = str(decode_unverified(token).payload["jti"])
        assert ps.records.run(ps.rec.is_revoked(env["ps_origin"], jti))
    ps.run(ps.missions.resume_steps(mission.s256, ALICE))
    assert ps.missions.get(mission.s256).active  # type: ignore[union-attr]
    fresh = _tokens(env, mission.s256)
    assert _call(env, "/profile", fresh["person"]).status_code == 200


# -- the client against a scripted revocation endpoint ------------------------------------------


class Script:
    def __init__(self, answers: list[tuple[int, dict[str, str], bytes]]) -> None:
        self.answers = answers
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []
        self.lock = threading.Lock()


def _scripted(script: Script) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with script.lock:
                script.seen.append((self.command, self.path, dict(self.headers), body))
                status, headers, payload = script.answers.pop(0)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _client(sleeps: list[float]) -> RevocationClient:
    key = PrivateKey.generate("Ed25519", kid="ps-1")
    signer = ServerSigner(key, "http://127.0.0.1:9", DWK_PERSON)
    outbound = OutboundClient(signer, EgressPolicy(dev_loopback=True))
    return RevocationClient(outbound, sleep=sleeps.append, now=time.time)


def test_a_202_is_polled_with_a_signed_get_until_it_is_done() -> None:
    script = Script(
        [
            (202, {"Location": "/revoke/pending/abc", "Retry-After": "2"}, b'{"status":"pending"}'),
            (202, {"Location": "/revoke/pending/abc", "Retry-After": "1"}, b'{"status":"pending"}'),
            (200, {"Content-Type": "application/json"}, b'{"downstream":[{"recipient":"r"}]}'),
        ]
    )
    server = _scripted(script)
    sleeps: list[float] = []
    try:
        endpoint = f"http://127.0.0.1:{server.server_port}/revoke"
        result = _client(sleeps).revoke(endpoint, "jti-1", time.time() + 600)
    finally:
        server.shutdown()
        server.server_close()
    assert (result.status, result.downstream) == (REVOKED, ({"recipient": "r"},))
    assert sleeps == [2.0, 1.0]
    methods = [(method, path) for method, path, _, _ in script.seen]
    assert methods == [
        ("POST", "/revoke"),
        ("GET", "/revoke/pending/abc"),
        ("GET", "/revoke/pending/abc"),
    ]
    post_headers, post_body = script.seen[0][2], script.seen[0][3]
    assert json.loads(post_body) == {"jti": "jti-1", "exp": int(json.loads(post_body)["exp"])}
    assert (
        'sig=jwks_uri;id="http://127.0.0.1:9";dwk="aauth-person.json";kid="ps-1"'
        in post_headers["Signature-Key"].replace(" ", "")
    )
    assert '"content-digest"' in post_headers["Signature-Input"]
    assert "Signature" in script.seen[1][2]  # the poll is signed under the same identity


def test_rate_limits_are_honoured_and_failures_give_up() -> None:
    script = Script(
        [
            (429, {"Retry-After": "7"}, b'{"error":"rate_limited"}'),
            (200, {}, b""),
        ]
    )
    server = _scripted(script)
    sleeps: list[float] = []
    try:
        endpoint = f"http://127.0.0.1:{server.server_port}/revoke"
        assert _client(sleeps).revoke(endpoint, "j", time.time() + 600).status == REVOKED
        assert sleeps == [7.0]
        script.answers[:] = [(500, {}, b"")] * 3
        sleeps.clear()
        gave_up = _client(sleeps).revoke(endpoint, "j", time.time() + 600, attempts=3)
        assert gave_up.status == UNAVAILABLE and sleeps == [1.0, 2.0]
        script.answers[:] = [(403, {}, b'{"error":"unsupported_iss"}')]
        refused = _client(sleeps).revoke(endpoint, "j", time.time() + 600)
        assert (refused.status, refused.detail) == (UNSUPPORTED, "unsupported_iss")
    finally:
        server.shutdown()
        server.server_close()
    # Nobody listening: a failure to retry, never a crash.
    nobody = _client([]).attempt("http://127.0.0.1:9/revoke", "j", time.time() + 600)
    assert nobody.outcome == RETRY


@pytest.mark.parametrize(
    ("status", "headers", "outcome"),
    [
        (200, {}, REVOKED),
        (202, {"location": "/p/1"}, PENDING),
        (202, {}, RETRY),
        (202, {"location": "https://elsewhere.example/p"}, RETRY),
        (429, {"retry-after": "3"}, RETRY),
        (400, {}, REFUSED),
        (403, {}, REFUSED),
        (401, {}, RETRY),
        (500, {}, RETRY),
        (503, {"retry-after": "9"}, RETRY),
    ],
)
def test_every_answer_is_read(status: int, headers: dict[str, str], outcome: str) -> None:
    attempt = classify(
        FetchResponse(status, headers, b""), "https://rs.example/revoke", polling=False
    )
    assert attempt.outcome == outcome
    if status == 202 and outcome == PENDING:
        assert attempt.poll_url == "https://rs.example/p/1" and attempt.retry_after == 5.0
    if "retry-after" in headers:
        assert attempt.retry_after == float(headers["retry-after"])
