"""A framework-free Person Server harness: the PS core plus a fallback 404, answering like the
adapters do, and a :class:`PsWorld` that builds signed agent requests for it.

The PS runs as the test world's ``https://ps.example`` with ``World.ps_key``, so the tokens it
mints verify wherever the world's PS is trusted; the resource's metadata and JWKS
(``World.resource_key``) are served through the StaticFetcher, so resource tokens minted here
verify at the PS.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from aauth_server.clock import FixedClock
from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.keys.jwk import PrivateKey
from aauth_server.person import PersonServer, PersonServerConfig
from aauth_server.signatures.message import AAUTH_COMPONENTS, sign_request
from aauth_server.signatures.signature_key import SignatureKey, serialize_signature_key
from aauth_server.storage.memory import AsyncMemoryStore, MemoryState, MemoryStore
from aauth_server.tokens.aauth import (
    DWK_AGENT,
    DWK_RESOURCE,
    mint_person_token,
    mint_resource_token,
)
from aauth_server.tokens.jwt import decode_unverified
from tests.support import AP_ISSUER, PS_ISSUER, RESOURCE, SCOPES, World

SUBJECT_SECRET = b"test-subject-secret-0123456789abcdef"
ALICE = "alice"
T0 = 1_900_000_000
RESOURCE_NAME = "Example Resource"
RESOURCE_DESCRIPTION = "Stores your *data*."


class PsApp:
    """The PS core behind a tiny router: anything the PS does not serve is a 404."""

    def __init__(self, config: PersonServerConfig) -> None:
        self.ps = PersonServer(config)

    def send(self, request: HttpRequest) -> HttpResponse:
        return self.ps.handle(request) or HttpResponse(404, [], b"")

    async def asend(self, request: HttpRequest) -> HttpResponse:
        return (await self.ps.ahandle(request)) or HttpResponse(404, [], b"")


def resource_documents(world: World) -> dict[str, Any]:
    return {
        RESOURCE + "/.well-known/aauth-resource.json": {
            "issuer": RESOURCE,
            "jwks_uri": RESOURCE + "/aauth/jwks.json",
            "name": RESOURCE_NAME,
            "description": RESOURCE_DESCRIPTION,
            "scope_descriptions": SCOPES,
        },
        RESOURCE + "/aauth/jwks.json": {"keys": [world.resource_key.public_jwk()]},
    }


class PsWorld:
    """The test world's agent talking to a PS core on a FixedClock and a shared memory store."""

    def __init__(self, clock: FixedClock | None = None, **overrides: Any) -> None:
        self.clock = clock or FixedClock(T0)
        self.world = World(clock=self.clock)
        self.world.extra_documents.update(resource_documents(self.world))
        self.state = MemoryState()
        settings: dict[str, Any] = {
            "issuer": PS_ISSUER,
            "signing_key": self.world.ps_key,
            "subject_secret": SUBJECT_SECRET,
            "discovery": self.world.discovery(),
            "clock": self.clock,
            "store": MemoryStore(self.state, clock=self.clock),
            "async_store": AsyncMemoryStore(self.state, clock=self.clock),
            # The records in memory, also beside a Redis store: the tests are one process.
            "records": "sqlite://",
            "scopes_supported": ("openid", "profile"),
            "claims_supported": ("sub", "name"),
            "name": "Test PS",
        }
        settings.update(overrides)
        self.config = PersonServerConfig(**settings)
        self.app = PsApp(self.config)

    @property
    def ps(self) -> PersonServer:
        return self.app.ps

    # -- requests -----------------------------------------------------------------------------

    def post(
        self,
        path: str,
        body: Any,
        *,
        token: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
        **kw: Any,
    ) -> HttpRequest:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.world.signed(
            "POST", path, body=raw, token=token, headers=headers, origin=PS_ISSUER, **kw
        )

    def person_request(
        self,
        resource: str = RESOURCE,
        capabilities: Sequence[str] | None = ("interaction", "clarification"),
        **params: Any,
    ) -> HttpRequest:
        body: dict[str, Any] = {"resource": resource, **params}
        if capabilities is not None:
            body["capabilities"] = list(capabilities)
        return self.post(self.config.person_token_path, body)

    def auth_request(
        self,
        resource_token: str,
        presented_token: str,
        capabilities: Sequence[str] | None = ("interaction", "clarification"),
        **params: Any,
    ) -> HttpRequest:
        body: dict[str, Any] = {
            "resource_token": resource_token,
            "presented_token": presented_token,
            **params,
        }
        if capabilities is not None:
            body["capabilities"] = list(capabilities)
        return self.post(self.config.auth_token_path, body)

    def poll(
        self,
        location: str,
        *,
        method: str = "GET",
        wait: int | None = None,
        body: Any = None,
        token: str | None = None,
        **kw: Any,
    ) -> HttpRequest:
        path = urlsplit(location).path
        if body is not None:
            return self.post(path, body, token=token, **kw)
        headers = [("Prefer", f"wait={wait}")] if wait is not None else []
        return self.world.signed(method, path, headers=headers, token=token, origin=PS_ISSUER, **kw)

    # -- tokens and state ---------------------------------------------------------------------

    def sub_for(self, person: str = ALICE, resource: str = RESOURCE) -> str:
        return self.ps.directed_sub(person, resource)

    def bind(self, person: str = ALICE) -> None:
        """Bind the world's agent to ``person``, as an earlier approval would have."""
        agent_token = decode_unverified(self.world.agent_token).payload
        bound = self.ps.run(
            self.ps.bindings.bind_steps(
                str(agent_token["iss"]), str(agent_token["sub"]), person, 3600
            )
        )
        assert bound

    def person_token(self, person: str = ALICE, **kw: Any) -> str:
        """A person token this PS would issue to the agent for the resource."""
        return mint_person_token(
            self.world.ps_key,
            iss=PS_ISSUER,
            aud=kw.pop("aud", RESOURCE),
            sub=kw.pop("sub", None) or self.sub_for(person),
            cnf_jwk=self.world.agent_key.public,
            now=kw.pop("now", self.clock.now()),
            lifetime=kw.pop("lifetime", 3600),
            **kw,
        )

    def resource_token(
        self,
        presented: str,
        scope: str | None = "data.read",
        *,
        drop: Sequence[str] = (),
        **overrides: Any,
    ) -> str:
        """What the resource answers after verifying ``presented`` (three-party: aud = PS);
        ``drop`` leaves copied claims out (a tampering resource or agent)."""
        claims = decode_unverified(presented).payload
        copied = [k for k in ("mission_s256", "tenant") if k in claims and k not in drop]
        extra = {k: claims[k] for k in copied}
        extra.update(overrides.pop("extra", {}))
        settings: dict[str, Any] = {
            "iss": RESOURCE,
            "aud": PS_ISSUER,
            "ps": PS_ISSUER,
            "sub": claims["sub"],
            "presented_jti": claims["jti"],
            "agent_jkt": self.world.agent_key.public.thumbprint,
            "now": self.clock.now(),
            "scope": scope,
            "extra": extra,
        }
        settings.update(overrides)
        key = settings.pop("key", self.world.resource_key)
        return mint_resource_token(key, **settings)

    def revoke_agent_token(self, token: str | None = None) -> HttpRequest:
        """The AP's signed revocation of an agent token (digest 5.7)."""
        claims = decode_unverified(token or self.world.agent_token).payload
        body = json.dumps({"jti": claims["jti"], "exp": claims["exp"]}).encode()
        return self.server_signed(
            body, issuer=AP_ISSUER, dwk=DWK_AGENT, key=self.world.provider.key
        )

    def server_signed(
        self,
        body: bytes,
        *,
        issuer: str,
        dwk: str,
        key: PrivateKey,
        components: Sequence[str] = (*AAUTH_COMPONENTS, "content-type", "content-digest"),
    ) -> HttpRequest:
        """A request a server signs in its own right (``jwks_uri`` scheme) to the PS."""
        sk = serialize_signature_key(
            [SignatureKey("sig", "jwks_uri", {"id": issuer, "dwk": dwk, "kid": str(key.kid)})]
        )
        request = HttpRequest(
            "POST",
            PS_ISSUER + self.config.revocation_path,
            [("Content-Type", "application/json"), ("Signature-Key", sk)],
            body,
        )
        signed = sign_request(
            request, key, components=list(components), created=int(self.clock.now())
        )
        return replace(request, headers=request.headers + signed)

    def resource_revocation(self, resource_token: str) -> HttpRequest:
        """The resource's revocation of one of its resource tokens, signed to the PS."""
        claims = decode_unverified(resource_token).payload
        body = json.dumps({"jti": claims["jti"], "exp": claims["exp"]}).encode()
        return self.server_signed(
            body, issuer=RESOURCE, dwk=DWK_RESOURCE, key=self.world.resource_key
        )

    def new_agent_token(self) -> str:
        """A fresh agent token for the same agent and key (another token instance)."""
        return self.world.provider.issue(self.world.agent_key.public, "assistant")

    def tick(self, seconds: float | None = None) -> None:
        self.clock.advance(self.config.poll_interval if seconds is None else seconds)


def body_of(response: HttpResponse) -> Any:
    return json.loads(response.body) if response.body else None


Sender = Callable[[HttpRequest], HttpResponse]


def sender(app: PsApp, mode: str) -> Sender:
    """``app.send`` or the async driver behind a sync call (one event loop per request)."""
    if mode == "sync":
        return app.send
    return lambda request: asyncio.run(app.asend(request))


__all__ = [
    "ALICE",
    "RESOURCE_DESCRIPTION",
    "RESOURCE_NAME",
    "SUBJECT_SECRET",
    "T0",
    "PsApp",
    "PsWorld",
    "Sender",
    "body_of",
    "resource_documents",
    "sender",
]
