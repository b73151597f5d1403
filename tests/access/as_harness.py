"""A framework-free Access Server harness: the AS core at ``https://as.example`` (the test
world's AS key), a Person Server that signs as ``https://ps.example`` with
:class:`~aauth_server.outbound.ServerSigner`, and builders for the token triple a PS sends.

Key discovery reads the world's documents (AP, PS, resource) from a StaticFetcher; the
over-the-wire tests (test_wire.py) serve the PS's keys on loopback instead.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from aauth_server.access import AccessServer, AccessServerConfig
from aauth_server.clock import FixedClock
from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.keys.jwk import PrivateKey
from aauth_server.outbound import ServerSigner
from aauth_server.storage.memory import AsyncMemoryStore, MemoryState, MemoryStore
from aauth_server.tokens.aauth import DWK_PERSON, mint_resource_token
from aauth_server.tokens.jwt import decode_unverified
from tests.person.ps_harness import resource_documents
from tests.support import AS_ISSUER, PERSON, PS_ISSUER, RESOURCE, World

T0 = 1_900_000_000


class AsWorld:
    """The world's PS talking to an AS core on a FixedClock and a shared memory store."""

    def __init__(self, clock: FixedClock | None = None, **overrides: Any) -> None:
        self.clock = clock or FixedClock(T0)
        self.world = World(clock=self.clock)
        self.world.extra_documents.update(resource_documents(self.world))
        self.state = MemoryState()
        settings: dict[str, Any] = {
            "issuer": AS_ISSUER,
            "signing_key": self.world.as_key,
            "trusted_ps": (PS_ISSUER,),
            "discovery": self.world.discovery(),
            "clock": self.clock,
            "store": MemoryStore(self.state, clock=self.clock),
            "async_store": AsyncMemoryStore(self.state, clock=self.clock),
            "records": "sqlite://",
            "page_secret": b"p" * 32,
        }
        settings.update(overrides)
        self.config = AccessServerConfig(**settings)
        self.server = AccessServer(self.config)
        self.signer = ServerSigner(self.world.ps_key, PS_ISSUER, DWK_PERSON, clock=self.clock)

    # -- sending ------------------------------------------------------------------------------

    def send(self, request: HttpRequest) -> HttpResponse:
        return self.server.handle(request) or HttpResponse(404, [], b"")

    async def asend(self, request: HttpRequest) -> HttpResponse:
        return (await self.server.ahandle(request)) or HttpResponse(404, [], b"")

    def long_poll_answered(self, path: str, answer: Any, wait: int = 5) -> HttpResponse:
        """An async ``Prefer: wait`` poll of ``path``, parked while ``answer`` is POSTed to
        it; what the woken poll returns."""

        async def run() -> HttpResponse:
            waiting = asyncio.ensure_future(
                self.asend(self.signed("GET", path, headers=[("Prefer", f"wait={wait}")]))
            )
            await asyncio.sleep(0.05)
            await self.asend(self.signed("POST", path, answer))
            return await asyncio.wait_for(waiting, wait)

        return asyncio.run(run())

    def signed(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        signer: ServerSigner | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> HttpRequest:
        """A request the PS (or ``signer``) signs as a server."""
        url = AS_ISSUER + urlsplit(path).path
        raw = b""
        lines = list(headers)
        if body is not None:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            lines.append(("Content-Type", "application/json"))
        signed = (signer or self.signer).headers(method, url, lines, raw)
        return HttpRequest(method, url, list(signed), raw)

    def token_request(self, body: Any, **kw: Any) -> HttpRequest:
        return self.signed("POST", "/token", body, **kw)

    # -- tokens -------------------------------------------------------------------------------

    def person_token(self, **kw: Any) -> str:
        return self.world.person_token(**kw)

    def resource_token(self, presented: str, scope: str | None = "data.read", **kw: Any) -> str:
        claims = decode_unverified(presented).payload
        settings: dict[str, Any] = {
            "iss": RESOURCE,
            "aud": AS_ISSUER,
            "ps": PS_ISSUER,
            "sub": claims["sub"],
            "presented_jti": claims["jti"],
            "agent_jkt": self.world.agent_key.public.thumbprint,
            "now": self.clock.now(),
            "scope": scope,
        }
        extra = {k: claims[k] for k in ("mission_s256", "tenant") if k in claims}
        extra.update(kw.pop("extra", {}))
        settings.update(kw)
        key: PrivateKey = settings.pop("key", self.world.resource_key)
        return mint_resource_token(key, extra=extra or None, **settings)

    def triple(self, scope: str | None = "data.read", **kw: Any) -> dict[str, str]:
        """The body a PS sends: a fresh person token, its resource token, the agent token."""
        presented = self.person_token(sub=kw.pop("sub", PERSON))
        return {
            "resource_token": self.resource_token(presented, scope, **kw),
            "agent_token": self.world.agent_token,
            "presented_token": presented,
        }


def body_of(response: HttpResponse) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(response.body)
    return parsed


def header(response: HttpResponse, name: str) -> str | None:
    for key, value in response.headers:
        if key.lower() == name.lower():
            return value
    return None


def pending_path(response: HttpResponse) -> str:
    location = header(response, "location")
    assert location is not None and location.startswith(AS_ISSUER + "/pending/"), location
    return urlsplit(location).path
