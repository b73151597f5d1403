"""A loopback world for over-the-wire Access Server tests: a PS (and another PS), a resource
and an agent provider, each an issuer whose metadata and JWKS are served by a uvicorn thread
on 127.0.0.1; the PS signs as itself with :class:`~aauth_server.outbound.ServerSigner`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from aauth_server.agent import AgentProvider
from aauth_server.asgi import asgi_app
from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.keys.egress import EgressPolicy
from aauth_server.keys.jwk import PrivateKey
from aauth_server.outbound import FetchResponse, OutboundClient, ServerSigner
from aauth_server.tokens.aauth import (
    DWK_PERSON,
    mint_agent_token,
    mint_person_token,
    mint_resource_token,
)
from aauth_server.tokens.jwt import decode_unverified
from tests.threaded_uvicorn import ThreadedUvicorn


class Documents:
    """One issuer's metadata document and JWKS, served on loopback."""

    def __init__(self) -> None:
        self.docs: dict[str, Any] = {}
        self.server = ThreadedUvicorn(asgi_app(self.handle), lifespan="off")
        self.issuer = self.server.origin

    def publish(self, dwk: str, key: PrivateKey) -> None:
        self.docs["/.well-known/" + dwk] = {
            "issuer": self.issuer,
            "jwks_uri": self.issuer + "/jwks.json",
        }
        self.docs["/jwks.json"] = {"keys": [key.public_jwk()]}

    def handle(self, request: HttpRequest) -> HttpResponse:
        doc = self.docs.get(request.path)
        if doc is None:
            return HttpResponse.json(404, {"error": "not_found"})
        return HttpResponse.json(200, doc)


@dataclass
class Wire:
    as_url: str
    ps: Documents
    other_ps: Documents
    resource: Documents
    provider: AgentProvider
    ps_key: PrivateKey
    other_key: PrivateKey
    resource_key: PrivateKey
    agent_key: PrivateKey

    def client(
        self, key: PrivateKey | None = None, issuer: str | None = None, dwk: str = DWK_PERSON
    ) -> OutboundClient:
        signer = ServerSigner(key or self.ps_key, issuer or self.ps.issuer, dwk)
        return OutboundClient(signer, EgressPolicy(dev_loopback=True))

    def send(
        self, method: str, path: str, body: Any = None, *, client: OutboundClient | None = None
    ) -> FetchResponse:
        own = client or self.client()
        try:
            return own.request(method, self.as_url + path, json=body)
        finally:
            if client is None:
                own.close()

    def person_token(
        self, *, now: float | None = None, aud: str | None = None, key: PrivateKey | None = None
    ) -> str:
        return mint_person_token(
            key or self.ps_key,
            iss=self.ps.issuer,
            aud=aud or self.resource.issuer,
            sub="pairwise-7",
            cnf_jwk=self.agent_key.public,
            now=time.time() if now is None else now,
            lifetime=3600,
            dev_loopback=True,
        )

    def resource_token(self, presented: str, **kw: Any) -> str:
        claims = decode_unverified(presented).payload
        settings: dict[str, Any] = {
            "iss": self.resource.issuer,
            "aud": self.as_url,
            "ps": self.ps.issuer,
            "sub": claims["sub"],
            "presented_jti": claims["jti"],
            "agent_jkt": self.agent_key.public.thumbprint,
            "now": time.time(),
            "scope": "data.read",
            "dev_loopback": True,
        }
        settings.update(kw)
        return mint_resource_token(self.resource_key, **settings)

    def agent_token(self, now: float | None = None) -> str:
        return mint_agent_token(
            self.provider.key,
            iss=self.provider.issuer,
            sub=self.provider.agent_id("assistant"),
            cnf_jwk=self.agent_key.public,
            now=time.time() if now is None else now,
            lifetime=3600,
            dev_loopback=True,
        )

    def triple(self, **change: Any) -> dict[str, Any]:
        presented = self.person_token()
        body = {
            "resource_token": self.resource_token(presented),
            "agent_token": self.agent_token(),
            "presented_token": presented,
        }
        body.update(change)
        return body


@contextmanager
def loopback_parties() -> Iterator[Wire]:
    """The parties' documents served on loopback; ``as_url`` is filled in by the caller."""
    ps, other_ps, resource, ap = Documents(), Documents(), Documents(), Documents()
    ps_key, other_key = PrivateKey.generate(kid="ps-1"), PrivateKey.generate(kid="ps-1")
    resource_key = PrivateKey.generate(kid="rs-1")
    ps.publish("aauth-person.json", ps_key)
    other_ps.publish("aauth-person.json", other_key)
    resource.publish("aauth-resource.json", resource_key)
    provider = AgentProvider(ap.issuer, PrivateKey.generate(kid="ap-1"), dev_loopback=True)
    for url, doc in provider.documents().items():
        ap.docs[url[len(ap.issuer) :]] = doc
    servers = (ps, other_ps, resource, ap)
    for docs in servers:
        docs.server.start()
    try:
        yield Wire(
            "",
            ps,
            other_ps,
            resource,
            provider,
            ps_key,
            other_key,
            resource_key,
            PrivateKey.generate(),
        )
    finally:
        for docs in servers:
            docs.server.stop()


class LateApp:
    """An ASGI app bound after its server's socket (and so its origin) exists."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


@contextmanager
def access_server_on_loopback(parties: Wire, **settings: Any) -> Iterator[Wire]:
    """An Access Server of this process (Starlette on uvicorn) trusting ``parties.ps``:
    ``settings`` are more ``AccessServerConfig`` fields (a policy of the test's own)."""
    from aauth_server_starlette.access import AccessServerApp
    from starlette.applications import Starlette

    from aauth_server.access import AccessServerConfig

    late = LateApp()
    server = ThreadedUvicorn(late, lifespan="off")
    config = AccessServerConfig(
        issuer=server.origin,
        signing_key=PrivateKey.generate(kid="as-1"),
        dev_loopback=True,
        trusted_ps=(parties.ps.issuer,),
        records="sqlite://",
        **settings,
    )
    mounted = AccessServerApp(config)
    late.app = Starlette(routes=mounted.mounted())
    server.start()
    try:
        yield replace(parties, as_url=server.origin)
    finally:
        server.stop()
        mounted.server.close()
