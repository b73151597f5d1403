"""A PS that federates to a *scripted* Access Server: a real uvicorn server on 127.0.0.1 whose
answers each test writes (good tokens, tokens failing one delivery check, garbage, slowness,
errors, deferrals).  It records every request it gets, so a test can check what the PS sent.

The PS is the person harness's (``https://ps.example`` on a FixedClock); its key discovery
reads the agent provider and resource documents from memory and anything else (the scripted
AS) over real HTTP through the egress policy with ``dev_loopback``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.keys.discovery import KeyDiscovery
from aauth_server.keys.egress import EgressPolicy
from aauth_server.keys.fetcher import (
    AsyncHttpxFetcher,
    AsyncStaticFetcher,
    FetchResponse,
    HttpxFetcher,
    StaticFetcher,
)
from aauth_server.keys.jwk import PrivateKey
from aauth_server.person.policy import Approve, AskPerson, Decision, TokenRequest
from aauth_server.tokens.aauth import DWK_ACCESS, mint_auth_token
from aauth_server.tokens.jwt import decode_unverified
from tests.person.ps_harness import ALICE, PsWorld, body_of
from tests.threaded_uvicorn import ThreadedUvicorn


class RoutedFetcher(StaticFetcher):
    """Documents from memory when known, else a real fetch through the egress policy."""

    def __init__(self, documents: dict[str, Any]) -> None:
        super().__init__(documents)
        self.http = HttpxFetcher(EgressPolicy(dev_loopback=True))

    def get(self, url: str) -> FetchResponse:
        if url in self.documents:
            return self._lookup(url)
        self.calls.append(url)
        return self.http.get(url)


class AsyncRoutedFetcher(AsyncStaticFetcher):
    def __init__(self, documents: dict[str, Any]) -> None:
        super().__init__(documents)

    async def get(self, url: str) -> FetchResponse:
        if url in self.documents:
            return self._lookup(url)
        self.calls.append(url)
        fetcher = AsyncHttpxFetcher(EgressPolicy(dev_loopback=True))
        try:
            return await fetcher.get(url)
        finally:
            await fetcher.aclose()


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    delay: float = 0.0
    raw: bytes | None = None

    def encoded(self) -> tuple[list[tuple[bytes, bytes]], bytes]:
        if self.raw is not None:
            payload = self.raw
        elif self.body is None:
            payload = b""
        else:
            payload = json.dumps(self.body).encode()
        headers = [(k.lower().encode(), v.encode()) for k, v in self.headers]
        if self.body is not None and not any(k == b"content-type" for k, _ in headers):
            kind = "application/problem+json" if self.status >= 400 else "application/json"
            headers.append((b"content-type", kind.encode()))
        return headers, payload


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


Script = Callable[["Seen"], Reply]


class ScriptedAS:
    """An Access Server whose ``/token`` and ``/pending/p1`` answers come from ``script``:
    ``script[(method, path)]`` is a list of callables, used in order (the last repeats)."""

    PENDING = "/pending/p1-0123456789abcdef"

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.key = PrivateKey.generate("Ed25519", kid="as-1")
        self.script: dict[tuple[str, str], list[Script]] = {}
        self.seen: list[Seen] = []
        self.server = ThreadedUvicorn(self.app, lifespan="off")
        self.origin = self.server.origin
        self.metadata: dict[str, Any] = {
            "issuer": self.origin,
            "jwks_uri": self.origin + "/jwks.json",
            "auth_token_endpoint": self.origin + "/token",
            "revocation_endpoint": self.origin + "/revoke",
        }

    @property
    def location(self) -> str:
        return self.origin + self.PENDING

    def on(self, method: str, path: str, *replies: Script | Reply) -> None:
        self.script[(method, path)] = [r if callable(r) else (lambda _s, r=r: r) for r in replies]

    def requests(self, method: str | None = None, path: str | None = None) -> list[Seen]:
        return [
            s
            for s in self.seen
            if (method is None or s.method == method) and (path is None or s.path == path)
        ]

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        method, path = scope["method"], scope["path"]
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        reply = self._reply(Seen(method, path, headers, body))
        if reply.delay:
            await asyncio.sleep(reply.delay)
        out, payload = reply.encoded()
        await send({"type": "http.response.start", "status": reply.status, "headers": out})
        await send({"type": "http.response.body", "body": payload})

    def _reply(self, seen: Seen) -> Reply:
        if seen.method == "GET" and seen.path == "/.well-known/aauth-access.json":
            return Reply(200, self.metadata)
        if seen.method == "GET" and seen.path == "/jwks.json":
            return Reply(200, {"keys": [self.key.public_jwk()]})
        self.seen.append(seen)
        replies = self.script.get((seen.method, seen.path))
        if not replies:
            return Reply(404, {"error": "not_found"})
        script = replies.pop(0) if len(replies) > 1 else replies[0]
        return script(seen)

    # -- answers a test scripts -----------------------------------------------------------------

    def token(self, seen: Seen | None = None, **overrides: Any) -> str:
        """A token that passes every PS delivery check for the request the PS sent first
        (``overrides`` break one: ``iss``, ``aud``, ``sub``, ``cnf_jwk``, ``scope``,
        ``lifetime``, ``key``, ``ps``)."""
        first = seen or self.requests("POST", "/token")[0]
        rt = decode_unverified(first.body["resource_token"]).payload
        agent = decode_unverified(first.body["agent_token"]).payload
        presented = decode_unverified(first.body["presented_token"]).payload
        now = self.clock.now()
        settings: dict[str, Any] = {
            "iss": self.origin,
            "dwk": DWK_ACCESS,
            "aud": rt["iss"],
            "ps": rt["ps"],
            "sub": rt["sub"],
            "cnf_jwk": agent["cnf"]["jwk"],
            "now": now,
            "lifetime": min(3600, int(presented["exp"]) - int(now)),
            "scope": rt.get("scope"),
            "dev_loopback": True,
        }
        key = overrides.pop("key", self.key)
        settings.update(overrides)
        return mint_auth_token(key, **settings)

    def issued(self, **overrides: Any) -> Script:
        return lambda seen: Reply(200, {"auth_token": self.token(**overrides), "expires_in": 600})

    def deferred(
        self,
        requirement: str | None = None,
        *,
        retry_after: int = 0,
        params: str = "",
        **body: Any,
    ) -> Reply:
        headers = [
            ("Location", self.PENDING),
            ("Retry-After", str(retry_after)),
            ("Cache-Control", "no-store"),
        ]
        if requirement is not None:
            headers.append(("AAuth-Requirement", f"requirement={requirement}{params}"))
        return Reply(202, {"status": "pending", **body}, headers)

    def __enter__(self) -> ScriptedAS:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()


class Policy:
    """Approve at once, or ask the person (``ask=True``)."""

    def __init__(self, ask: bool = False) -> None:
        self.ask = ask

    def decide(self, request: TokenRequest) -> Decision:
        return AskPerson() if self.ask else Approve()


class FedWorld(PsWorld):
    """The person harness's PS trusting ``access`` (a :class:`ScriptedAS` or an issuer)."""

    def __init__(self, access: ScriptedAS, driver: str = "sync", **overrides: Any) -> None:
        self.access = access
        self.driver = driver
        self.claims_asked: list[Any] = []
        settings: dict[str, Any] = {
            "dev_loopback": True,
            "trusted_access_servers": [access.origin],
            "policy": Policy(),
            "access_timeout": 2.0,
            "access_claims": self._claims,
        }
        settings.update(overrides)
        clock = access.clock
        self.fetcher = RoutedFetcher({})
        self.afetcher = AsyncRoutedFetcher({})
        settings.setdefault(
            "discovery",
            KeyDiscovery(self.fetcher, self.afetcher, clock=clock, dev_loopback=True),
        )
        super().__init__(clock, **settings)
        # The agent provider's and resource's documents, known once the world exists.
        docs = self.world.documents()
        self.fetcher.documents.update(docs)
        self.afetcher.documents.update(docs)
        self.bind()

    def _claims(self, request: Any) -> dict[str, Any]:
        self.claims_asked.append(request)
        known = {ALICE: {"email": "alice@example.com", "name": "Alice"}}
        return known.get(request.person, {})

    def send(self, request: HttpRequest) -> HttpResponse:
        if self.driver == "async":
            return asyncio.run(self.app.asend(request))
        return self.app.send(request)

    def tokens(self, scope: str = "data.read", lifetime: int = 3600) -> tuple[str, str]:
        """A person token of this PS and the resource token for the AS it was presented with."""
        pt = self.person_token(lifetime=lifetime)
        rt = self.resource_token(pt, scope, aud=self.access.origin)
        return rt, pt

    def ask_token(self, **params: Any) -> HttpResponse:
        rt, pt = self.tokens(**params)
        return self.send(self.auth_request(rt, pt))

    def poll_after(self, location: str, seconds: float | None = None, **kw: Any) -> HttpResponse:
        self.tick(seconds)
        return self.send(self.poll(location, **kw))


def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def drivers() -> Iterator[str]:
    yield from ("sync", "async")


__all__ = ["ALICE", "FedWorld", "Policy", "Reply", "ScriptedAS", "Seen", "body_of", "wait_until"]
