"""The Person Server mounted in Starlette answers byte for byte like the core behind
``tests.person.ps_harness.PsApp``; mounted under a prefix; and served by a real uvicorn on
127.0.0.1 with the Redis store, where a long poll is woken by the approval and the lifespan
closes the store."""

from __future__ import annotations

import base64
import contextvars
import json
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio
from aauth_server_starlette.person import PersonServerApp, person_paths
from starlette.applications import Starlette
from starlette.testclient import TestClient

import aauth_server.pagekit.csrf
import aauth_server.resource.sessions
import aauth_server.resource.state
import aauth_server.tokens.aauth
from aauth_server.clock import FixedClock
from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.person import DefaultPolicy, PersonServer, PersonServerConfig
from aauth_server.person.pages import ConsentPages, DemoLogin
from aauth_server.resource.config import ConfigurationError
from aauth_server.storage import StorageUnavailable
from aauth_server.storage.memory import AsyncMemoryStore, MemoryState, MemoryStore
from aauth_server.storage.redis import AsyncRedisStore, RedisStore
from aauth_server.tokens.jwt import decode_unverified
from tests.adapters import harness_person_starlette as harness
from tests.person.ps_harness import ALICE, T0, PsApp, PsWorld, body_of
from tests.redis_server import ensure_redis, free_port
from tests.storage.conftest import delete_prefix
from tests.support import PS_ISSUER
from tests.threaded_uvicorn import ThreadedUvicorn

CODE = re.compile(r'code="([^"]+)"')
AGENT = "aauth:assistant@agent.example"
INTERACTION = {
    "type": "interaction",
    "url": "https://resource.example/interact",
    "code": "A1B2-C3D4",
    "capabilities": ["interaction"],
}
#: Every module whose ``secrets`` draws show up on the wire (jti, pending ids, codes).
RANDOM_MODULES: tuple[ModuleType, ...] = (
    aauth_server.tokens.aauth,
    aauth_server.resource.state,
    aauth_server.resource.sessions,
    aauth_server.pagekit.csrf,
)


class SeededSecrets:
    """The three ``secrets`` functions the core draws from, replayable from a seed, so two
    runs of a flow mint the same tokens, ids and codes and answer the same bytes."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def token_bytes(self, nbytes: int = 32) -> bytes:
        return self._random.randbytes(nbytes)

    def token_urlsafe(self, nbytes: int = 32) -> str:
        return base64.urlsafe_b64encode(self.token_bytes(nbytes)).rstrip(b"=").decode()

    def choice(self, seq: str) -> str:
        return self._random.choice(seq)


# -- one flow, run against a target ------------------------------------------------------------


@dataclass
class Run:
    """One flow against one PS: every response it received, in order."""

    pw: PsWorld
    ps: PersonServer
    deliver: Callable[[HttpRequest], HttpResponse]
    answers: list[HttpResponse] = field(default_factory=list)

    def send(self, request: HttpRequest) -> HttpResponse:
        response = self.deliver(request)
        self.answers.append(response)
        return response

    def bind(self) -> None:
        claims = decode_unverified(self.pw.world.agent_token).payload
        assert self.ps.run(
            self.ps.bindings.bind_steps(str(claims["iss"]), str(claims["sub"]), ALICE, 3600)
        )

    def start(self, request: HttpRequest | None = None) -> tuple[str, str]:
        """A token request that needs the person: (Location, interaction code)."""
        response = self.send(request or self.pw.person_request())
        assert response.status == 202, response.body
        match = CODE.search(response.header("aauth-requirement") or "")
        assert match
        return response.header("location") or "", match.group(1)

    def approve(self, code: str) -> None:
        self.ps.consent.approve(self.ps.consent.open(code, ALICE).pending_id, ALICE)


def metadata(run: Run) -> None:
    for path in ("/.well-known/aauth-person.json", "/jwks.json"):
        run.send(HttpRequest("GET", PS_ISSUER + path, []))
    assert body_of(run.answers[0])["person_token_endpoint"] == PS_ISSUER + "/person"


def bound_agent_auto_approved(run: Run) -> None:
    run.bind()
    assert "person_token" in body_of(run.send(run.pw.person_request()))


def interaction_then_poll(run: Run) -> None:
    location, code = run.start()
    run.approve(code)
    run.pw.tick()
    assert "person_token" in body_of(run.send(run.pw.poll(location)))
    run.pw.tick()
    run.send(run.pw.poll(location))


def auth_token_with_resource_token(run: Run) -> None:
    run.bind()
    presented = run.pw.person_token()
    resource_token = run.pw.resource_token(presented, "data.read data.write")
    location, code = run.start(run.pw.auth_request(resource_token, presented))
    run.approve(code)
    run.pw.tick()
    assert "auth_token" in body_of(run.send(run.pw.poll(location)))


def clarification(run: Run) -> None:
    location, code = run.start()
    view = run.ps.consent.open(code, ALICE)
    run.ps.consent.ask(view.pending_id, ALICE, "Which calendar?", options=["work", "home"])
    run.pw.tick()
    assert body_of(run.send(run.pw.poll(location)))["clarification"] == "Which calendar?"
    answer = {"action": "clarification_response", "clarification_response": "work"}
    run.send(run.pw.poll(location, body=answer))
    assert run.ps.consent.view(view.pending_id, ALICE).clarifications == (
        ("Which calendar?", "work"),
    )


def cancel_then_gone(run: Run) -> None:
    location, _ = run.start()
    run.send(run.pw.poll(location, method="DELETE"))
    run.pw.tick()
    run.send(run.pw.poll(location))
    run.send(run.pw.poll(location, method="DELETE"))


def slow_down(run: Run) -> None:
    location, _ = run.start()
    run.send(run.pw.poll(location))
    run.pw.tick()
    run.send(run.pw.poll(location))
    run.send(run.pw.poll(location, wait=10))


def interaction_unavailable(run: Run) -> None:
    run.ps.presence.touch(ALICE)
    run.send(run.pw.post("/interaction", INTERACTION))


@dataclass(frozen=True)
class Flow:
    name: str
    build: Callable[[Run], None]
    statuses: tuple[int, ...]
    config: dict[str, Any] = field(default_factory=dict)


FLOWS = [
    Flow("metadata_and_jwks", metadata, (200, 200)),
    Flow(
        "bound_agent_auto_approved",
        bound_agent_auto_approved,
        (200,),
        {"policy": DefaultPolicy(auto_approve_agents=(AGENT,))},
    ),
    Flow("unbound_agent_interaction_then_poll", interaction_then_poll, (202, 200, 410)),
    Flow("auth_token_with_resource_token", auth_token_with_resource_token, (202, 200)),
    Flow("clarification_post", clarification, (202, 202, 202)),
    Flow("delete_cancels_then_gone", cancel_then_gone, (202, 204, 410, 410)),
    # max_wait 0: the long poll answers at once in the core's sync driver too.
    Flow("slow_down", slow_down, (202, 429, 202, 202), {"max_wait": 0}),
    Flow("interaction_endpoint_424", interaction_unavailable, (424,)),
]


def fresh_config(pw: PsWorld, overrides: dict[str, Any]) -> PersonServerConfig:
    state = MemoryState()
    stores = {
        "store": MemoryStore(state, clock=pw.clock),
        "async_store": AsyncMemoryStore(state, clock=pw.clock),
    }
    return replace(pw.config, **{**stores, **overrides})


def run_flow(
    pw: PsWorld,
    flow: Flow,
    monkeypatch: pytest.MonkeyPatch,
    target: Callable[[PersonServerConfig], tuple[PersonServer, Callable[[HttpRequest], Any]]],
) -> list[HttpResponse]:
    pw.clock.t = T0
    seeded = SeededSecrets(1)
    for module in RANDOM_MODULES:
        monkeypatch.setattr(module, "secrets", seeded)
    ps, deliver = target(fresh_config(pw, flow.config))
    run = Run(pw, ps, deliver)
    flow.build(run)
    return run.answers


def core(config: PersonServerConfig) -> tuple[PersonServer, Callable[[HttpRequest], Any]]:
    app = PsApp(config)
    return app.ps, app.send


def mounted(config: PersonServerConfig) -> tuple[PersonServer, Callable[[HttpRequest], Any]]:
    return harness.person_server_for(config), lambda request: harness.send(config, request)


@pytest.mark.parametrize("flow", FLOWS, ids=lambda f: f.name)
def test_same_bytes_as_the_core(flow: Flow, monkeypatch: pytest.MonkeyPatch) -> None:
    pw = PsWorld()
    expected = run_flow(pw, flow, monkeypatch, core)
    answered = run_flow(pw, flow, monkeypatch, mounted)
    assert tuple(r.status for r in answered) == flow.statuses
    assert len(expected) == len(answered)
    for step, (want, got) in enumerate(zip(expected, answered, strict=True)):
        assert got.status == want.status, step
        assert got.body == want.body, step
        # Starlette adds only Content-Length (none on a 204); every core header arrives as sent.
        length = None if want.status == 204 else str(len(want.body))
        assert got.header("content-length") == length, step
        sent = [(k.lower(), v) for k, v in got.headers if k.lower() != "content-length"]
        assert sent == [(k.lower(), v) for k, v in want.headers], step


def test_every_flow_draws_from_the_seeded_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    # The byte comparison above is meaningful only if a different seed changes the bytes.
    pw = PsWorld()
    first = run_flow(pw, FLOWS[2], monkeypatch, mounted)
    for module in RANDOM_MODULES:
        monkeypatch.setattr(module, "secrets", SeededSecrets(2))
    pw.clock.t = T0
    config = fresh_config(pw, {})
    run = Run(pw, harness.person_server_for(config), lambda r: harness.send(config, r))
    interaction_then_poll(run)
    assert first[0].header("location") != run.answers[0].header("location")
    assert first[1].body != run.answers[1].body


# -- mounted under a prefix ----------------------------------------------------------------------


def prefixed(pw: PsWorld, **overrides: Any) -> PersonServerConfig:
    return fresh_config(pw, {**person_paths("/ps"), **overrides})


def test_mounted_under_a_prefix_with_the_well_known_route_at_the_root() -> None:
    pw = PsWorld()
    ps_app, app = harness.build_app(prefixed(pw), mount_path="/ps")
    assert ("GET", "/ps/relay/") in ps_app.ps.routes()
    with TestClient(app, base_url=PS_ISSUER) as client:
        doc = client.get("/.well-known/aauth-person.json").json()
        assert doc["person_token_endpoint"] == PS_ISSUER + "/ps/person"
        assert doc["jwks_uri"] == PS_ISSUER + "/ps/jwks.json"
        assert client.get("/ps/jwks.json").json()["keys"][0]["kid"] == "ps-1"
        assert client.get("/jwks.json").status_code == 404
        assert client.get("/ps/.well-known/aauth-person.json").status_code == 404
        body = {"resource": "https://resource.example", "capabilities": ["interaction"]}
        request = pw.post("/ps/person", body)
        answer = client.post(request.url, headers=request.headers, content=request.body)
        assert answer.status_code == 202, answer.text
        assert answer.headers["location"].startswith(PS_ISSUER + "/ps/pending/")
        assert f'url="{PS_ISSUER}/ps/consent/request/' in answer.headers["aauth-requirement"]
        request = pw.post("/ps/interaction", INTERACTION)
        answer = client.post(request.url, headers=request.headers, content=request.body)
        assert answer.status_code == 424
        # A route Starlette knows, in a method it does not: its own 405, not the PS.
        assert client.put("/ps/person").status_code == 405


def test_consent_pages_and_login_mount_with_the_ps() -> None:
    pw = PsWorld()
    secret = b"page-secret-for-tests-0123456789"
    login = DemoLogin(
        {"alice": "wonderland"},
        secret,
        login_path="/ps/login",
        default_next="/ps/consent",
        static="/ps/consent/static",
        clock=pw.clock,
    )

    def pages(ps: PersonServer) -> list[Any]:
        consent = ConsentPages(
            ps, authenticate=login.authenticate, secret=secret, login_path="/ps/login"
        )
        return [consent, login]

    ps_app = PersonServerApp(prefixed(pw), pages=pages, mount_path="/ps")
    app = Starlette(routes=ps_app.mounted(), lifespan=ps_app.lifespan)
    with TestClient(app, base_url=PS_ISSUER, follow_redirects=False) as client:
        form = client.get("/ps/login")
        assert form.status_code == 200
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        assert "frame-ancestors 'none'" in form.headers["content-security-policy"]
        assert client.get("/ps/consent/static/consent.css").status_code == 200
        redirected = client.get("/ps/consent")
        assert redirected.status_code in (302, 303)
        assert redirected.headers["location"].startswith("/ps/login?")
        logged_in = client.post(
            "/ps/login",
            data={
                "username": "alice",
                "password": "wonderland",
                "next": "/ps/consent",
                "csrf": csrf.group(1),
            },
            headers={"Origin": PS_ISSUER},
        )
        assert logged_in.status_code in (302, 303)
        assert client.get("/ps/consent").status_code == 200


def test_paths_outside_the_mount_are_refused() -> None:
    pw = PsWorld()
    with pytest.raises(ConfigurationError, match="outside the mount path"):
        PersonServerApp(fresh_config(pw, {}), mount_path="/ps")
    with pytest.raises(ConfigurationError, match="mount_path"):
        PersonServerApp(prefixed(pw), mount_path="/ps/")
    other = PersonServer(prefixed(pw))
    with pytest.raises(ConfigurationError, match="another PersonServer"):
        PersonServerApp(
            prefixed(pw),
            pages=ConsentPages(other, authenticate=lambda r: None, secret=b"s" * 32),
            mount_path="/ps",
        )


def test_the_lifespan_refuses_to_start_without_its_store() -> None:
    pw = PsWorld()
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    config = fresh_config(
        pw,
        {
            "store": RedisStore.from_url(url, socket_connect_timeout=1),
            "async_store": AsyncRedisStore.from_url(url, socket_connect_timeout=1),
        },
    )
    _, app = harness.build_app(config)
    with pytest.raises(StorageUnavailable), TestClient(app):
        pass


# -- a real uvicorn with Redis ------------------------------------------------------------------

IN_WAIT: contextvars.ContextVar[bool] = contextvars.ContextVar("in_wait", default=False)


class ObservedRedisStore(AsyncRedisStore):
    """The real async Redis store, telling the test when a long poll has parked (its first
    read inside ``wait_for_change`` is done) and when it was closed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.parked = threading.Event()
        self.closed = threading.Event()

    async def wait_for_change(self, kind: str, id: str, version: int, timeout: float) -> Any:
        token = IN_WAIT.set(True)
        try:
            return await super().wait_for_change(kind, id, version, timeout)
        finally:
            IN_WAIT.reset(token)

    async def get(self, kind: str, id: str) -> Any:
        record = await super().get(kind, id)
        if IN_WAIT.get():
            self.parked.set()
        return record

    async def aclose(self) -> None:
        await super().aclose()
        self.closed.set()


class LiveServer:
    """uvicorn in a thread on 127.0.0.1 serving the PS under /ps, stores on a real Redis."""

    def __init__(self, url: str, prefix: str, client_name: str) -> None:
        self.uvicorn = ThreadedUvicorn(self._app)
        self.origin = self.uvicorn.origin
        self.pw = PsWorld(clock=FixedClock(time.time()))
        self.async_store = ObservedRedisStore(
            redis.asyncio.Redis.from_url(url, client_name=client_name),
            prefix=prefix,
            owns_client=True,
        )
        self.config = replace(
            self.pw.config,
            issuer=self.origin,
            dev_loopback=True,
            store=RedisStore.from_url(url, prefix=prefix, client_name=client_name),
            async_store=self.async_store,
            **person_paths("/ps"),
        )
        self.ps_app = PersonServerApp(self.config, mount_path="/ps")
        self.app = Starlette(routes=self.ps_app.mounted(), lifespan=self.ps_app.lifespan)
        self.http = httpx.Client(timeout=30)

    async def _app(self, scope: Any, receive: Any, send: Any) -> None:
        # The app needs the origin uvicorn's socket gives: built after, called through this.
        await self.app(scope, receive, send)

    def __enter__(self) -> LiveServer:
        self.uvicorn.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.http.close()
        self.uvicorn.stop(timeout=15)

    def signed(self, method: str, path: str, body: Any = None, **kw: Any) -> HttpRequest:
        raw = json.dumps(body).encode() if body is not None else b""
        return self.pw.world.signed(method, path, body=raw, origin=self.origin, **kw)

    def send(self, request: HttpRequest) -> httpx.Response:
        return self.http.request(
            request.method, request.url, headers=request.headers, content=request.body
        )


@pytest.fixture
def redis_prefix() -> Iterator[tuple[str, str]]:
    url = ensure_redis()
    prefix = f"aauth-test-{uuid.uuid4().hex}"
    yield url, prefix
    delete_prefix(url, prefix)


def named_connections(url: str, name: str) -> int:
    with redis.Redis.from_url(url) as admin:
        return sum(1 for c in admin.client_list() if c.get("name") == name)


def test_live_long_poll_is_woken_by_the_approval_and_the_lifespan_closes_the_store(
    redis_prefix: tuple[str, str],
) -> None:
    url, prefix = redis_prefix
    name = f"aauth-ps-{uuid.uuid4().hex[:12]}"
    live = LiveServer(url, prefix, name)
    with live:
        doc = live.http.get(live.origin + "/.well-known/aauth-person.json").json()
        assert doc["person_token_endpoint"] == live.origin + "/ps/person"
        started = live.send(
            live.signed(
                "POST",
                "/ps/person",
                {"resource": "https://resource.example", "capabilities": ["interaction"]},
            )
        )
        assert started.status_code == 202, started.text
        location = started.headers["location"]
        assert location.startswith(live.origin + "/ps/pending/")
        code = CODE.search(started.headers["aauth-requirement"])
        assert code
        ps = live.ps_app.ps
        pending_id = ps.consent.open(code.group(1), ALICE).pending_id

        poll = live.signed("GET", location[len(live.origin) :], headers=[("Prefer", "wait=10")])
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(live.send, poll)
            assert live.async_store.parked.wait(10), "the long poll never parked"
            assert not answer.done()
            # The shared store connection and the change subscription, both ours.
            assert named_connections(url, name) >= 2
            approved_at = time.monotonic()
            ps.consent.approve(pending_id, ALICE)
            response = answer.result(timeout=15)
            woken_after = time.monotonic() - approved_at
        assert response.status_code == 200, response.text
        assert "person_token" in response.json()
        assert woken_after < 2, f"the poll answered {woken_after:.2f} s after the approval"
    assert not live.uvicorn.thread.is_alive()
    assert live.async_store.closed.is_set()
    assert named_connections(url, name) == 0
    assert live.async_store.waiting == 0
