"""Real servers on 127.0.0.1 for the revocation cascades: an agent provider, a Person Server
and the example Starlette resource, each under its own uvicorn (tests/threaded_uvicorn.py).

The agent provider signs its revocations as a server in its own right (``jwks_uri``
scheme), with the same key the PS fetches from its published JWKS.  A resource can be made
slow at its revocation endpoint (``slow_revoke`` seconds), to show a cascade that outlasts
the PS's hold and answers ``202``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from aauth_server.access import AccessServer, AccessServerConfig
from aauth_server.agent import Agent, AgentProvider
from aauth_server.agent.flow import AgentFlow, Interaction
from aauth_server.asgi import async_asgi_app
from aauth_server.fields import parse_signature_error
from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.keys.egress import EgressPolicy
from aauth_server.keys.jwk import PrivateKey
from aauth_server.outbound import OutboundClient, ServerSigner
from aauth_server.person import PersonServer, PersonServerConfig
from aauth_server.person.policy import DefaultPolicy
from aauth_server.revocation_client import RevocationClient
from aauth_server.tokens.aauth import DWK_AGENT, DWK_PERSON
from aauth_server.tokens.jwt import decode_unverified
from tests.person.ps_harness import SUBJECT_SECRET
from tests.threaded_uvicorn import ThreadedUvicorn

ALICE = "alice"
DEADLINE = 30.0


class Lazy:
    """An ASGI app whose handler is set once the server (and so its port) exists."""

    def __init__(self) -> None:
        self.handler: Callable[[HttpRequest], Any] | None = None
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.app is not None:
            await self.app(scope, receive, send)
            return

        async def handle(request: HttpRequest) -> HttpResponse:
            assert self.handler is not None
            answer = self.handler(request)
            if asyncio.iscoroutine(answer):
                answer = await answer
            return answer or HttpResponse(404, [], b"")

        await async_asgi_app(handle)(scope, receive, send)


class SlowRevoke:
    """ASGI middleware: the revocation endpoint answers ``delay`` seconds late."""

    def __init__(self, app: Any, path: str) -> None:
        self.app = app
        self.path = path
        self.delay = 0.0
        self.fail = False
        self.seen = 0
        #: ``(path, Signature-Key)`` of every other request: which tokens were presented.
        self.presented: list[tuple[str, str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") == "http" and scope.get("path") != self.path:
            for name, value in scope.get("headers", []):
                if name == b"signature-key":
                    self.presented.append((str(scope.get("path")), value.decode("latin-1")))
        if scope.get("type") == "http" and scope.get("path") == self.path:
            self.seen += 1
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.fail:
                await send({"type": "http.response.start", "status": 503, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return
        await self.app(scope, receive, send)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def signature_error(response: httpx.Response) -> str:
    return parse_signature_error(response.headers["signature-error"]).code


@dataclass
class Net:
    ap: AgentProvider
    ps: PersonServer
    ps_url: str
    rs_url: str
    slow: SlowRevoke
    servers: list[ThreadedUvicorn]
    access: AccessServer | None = None
    as_url: str = ""
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30, trust_env=False))

    def agent(self, local: str = "assistant") -> Agent:
        key = PrivateKey.generate("Ed25519")
        token = self.ap.issue(key.public, local, ps=self.ps_url)
        agent = Agent(key, token, self.ap.agent_id(local))
        now = time.time()
        self.ps.records.run(
            self.ps.rec.bind(self.ap.issuer, agent.agent_id, ALICE, now=now, ttl=3600)
        )
        return agent

    def flow(self, agent: Agent) -> AgentFlow:
        def interact(interaction: Interaction) -> None:  # pragma: no cover - never asked
            raise AssertionError(f"the policy approves: no interaction ({interaction})")

        return AgentFlow(agent, self.http, interact=interact, ps=self.ps_url)

    def signer_client(self, key: PrivateKey, issuer: str, dwk: str) -> RevocationClient:
        """A revocation client signing as ``issuer`` (the caller identity)."""
        outbound = OutboundClient(ServerSigner(key, issuer, dwk), EgressPolicy(dev_loopback=True))
        return RevocationClient(outbound, sleep=time.sleep, now=time.time)

    def ap_client(self) -> RevocationClient:
        return self.signer_client(self.ap.key, self.ap.issuer, DWK_AGENT)

    def ps_client(self) -> RevocationClient:
        """A revocation client signing as the PS (what its cascade and federation sign with)."""
        return self.signer_client(self.ps.config.signing_key, self.ps_url, DWK_PERSON)

    def federate(self, agent: Agent, resource_token: str, person_token: str) -> str:
        """The PS's call to the AS for an auth token (digest 5.4), signed as the PS; the
        AS records the auth token against the person token.  (What h-fed's federation does
        from the PS's auth token endpoint.)"""
        client = self.ps_client().client
        assert client is not None
        body = {
            "resource_token": resource_token,
            "agent_token": agent.token,
            "presented_token": person_token,
        }
        answer = client.request("POST", self.as_url + "/token", json=body)
        assert answer.status == 200, answer.body
        token = json.loads(answer.body)["auth_token"]
        assert isinstance(token, str)
        return token

    def call(self, agent: Agent, path: str, token: str) -> httpx.Response:
        """One signed call to the resource presenting ``token`` (no requirement loop)."""
        flow = self.flow(agent)
        return flow._send("resource", "GET", self.rs_url + path, token, None)


def agent_claims(agent: Agent) -> dict[str, Any]:
    return dict(decode_unverified(agent.token).payload)


@contextmanager
def network(
    *, access: bool = False, approve: tuple[str, ...] = (), **ps_settings: Any
) -> Iterator[Net]:
    """AP, PS and resource (and, with ``access``, an Access Server the resource sends its
    resource tokens to: four-party)."""
    from aauth_server_starlette import AAuth

    from example_apps.starlette_resource import SCOPES, create_app

    ap_app, ps_app, rs_app, as_app = Lazy(), Lazy(), Lazy(), Lazy()
    servers = [ThreadedUvicorn(app) for app in (ap_app, ps_app, rs_app, as_app)]
    ap_server, ps_server, rs_server, as_server = servers
    ap = AgentProvider(ap_server.origin, dev_loopback=True, ps=ps_server.origin)
    ap_app.handler = ap.handle
    settings: dict[str, Any] = {
        "issuer": ps_server.origin,
        "signing_key": PrivateKey.generate("Ed25519", kid="ps-1"),
        "subject_secret": SUBJECT_SECRET,
        "dev_loopback": True,
        "records": "sqlite://",
        "policy": DefaultPolicy(
            auto_approve_agents=(ap.agent_id("assistant"), ap.agent_id("helper"), *approve),
            auto_approve_scopes=("data.read",),
        ),
    }
    settings.update(ps_settings)
    ps = PersonServer(PersonServerConfig(**settings))
    ps_app.handler = ps.ahandle
    access_server = None
    if access:
        access_server = AccessServer(
            AccessServerConfig(
                issuer=as_server.origin,
                signing_key=PrivateKey.generate("Ed25519", kid="as-1"),
                trusted_ps=(ps_server.origin,),
                dev_loopback=True,
                records="sqlite://",
            )
        )
        as_app.handler = access_server.ahandle
    aauth = AAuth(
        issuer=rs_server.origin,
        dev_loopback=True,
        signing_key=PrivateKey.generate("Ed25519", kid="rs-1"),
        scope_descriptions=SCOPES,
        revocation_path="/aauth/revoke",
        authorization_path="/aauth/authorize",
        trusted_ps=(ps_server.origin,),
        access_server=as_server.origin if access else None,
    )
    slow = SlowRevoke(create_app(aauth), "/aauth/revoke")
    rs_app.app = slow
    for server in servers:
        server.start()
    net = Net(ap, ps, ps_server.origin, rs_server.origin, slow, servers)
    net.access, net.as_url = access_server, as_server.origin
    try:
        yield net
    finally:
        net.http.close()
        ps.close()
        if access_server is not None:
            access_server.close()
        for server in servers:
            server.stop()
