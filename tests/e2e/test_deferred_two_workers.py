"""Deferred auth-token delivery across two worker processes sharing one Redis.

Two ``example_apps.starlette_resource`` processes with the same issuer, signing key and
Redis store: the ``202`` comes from worker A, the poll with the auth token is answered by
worker B (which runs A's held invocation), and a repeat at A gets B's stored answer.  The
agent provider and the Person Server are documents served on loopback by this test.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from aauth_server.agent import AgentProvider
from aauth_server.fields import parse_aauth_requirement
from aauth_server.http import HttpRequest
from aauth_server.keys.jwk import PrivateKey
from aauth_server.signatures.message import AAUTH_COMPONENTS, sign_request
from aauth_server.signatures.signature_key import SignatureKey, serialize_signature_key
from aauth_server.tokens.aauth import DWK_PERSON, mint_auth_token, mint_person_token
from example_apps._procs import AppSpec, running_apps
from tests.redis_server import ensure_redis

MODULE = "example_apps.starlette_resource"
PERSON = "user-42"


def _document_server(documents: Mapping[str, Any]) -> tuple[ThreadingHTTPServer, str]:
    """Serve ``path -> JSON`` on a loopback port; returns the server and its origin."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = documents.get(self.path)
            payload = json.dumps(body).encode() if body is not None else b"{}"
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@dataclass
class Agent:
    key: PrivateKey
    agent_token: str
    ps_key: PrivateKey
    ps: str

    def person_token(self, resource: str) -> str:
        return mint_person_token(
            self.ps_key,
            iss=self.ps,
            aud=resource,
            sub=PERSON,
            cnf_jwk=self.key.public,
            now=time.time(),
            dev_loopback=True,
        )

    def auth_token(self, resource: str, scope: str) -> str:
        return mint_auth_token(
            self.ps_key,
            iss=self.ps,
            dwk=DWK_PERSON,
            aud=resource,
            ps=self.ps,
            sub=PERSON,
            cnf_jwk=self.key.public,
            now=time.time(),
            scope=scope,
            dev_loopback=True,
        )

    def signed(self, method: str, url: str, token: str) -> HttpRequest:
        sk = serialize_signature_key([SignatureKey("sig", "jwt", {"jwt": token})])
        request = HttpRequest(method, url, [("Signature-Key", sk)])
        lines = sign_request(
            request, self.key, components=AAUTH_COMPONENTS, created=int(time.time())
        )
        return replace(request, headers=request.headers + lines)


@pytest.fixture
def agent() -> Iterator[Agent]:
    # The documents name their own origin, so they are filled in once the ports are bound.
    ap_documents: dict[str, Any] = {}
    ps_documents: dict[str, Any] = {}
    ap_server, ap = _document_server(ap_documents)
    ps_server, ps = _document_server(ps_documents)
    try:
        provider = AgentProvider(ap, PrivateKey.generate("Ed25519", kid="ap-1"), dev_loopback=True)
        ap_documents.update({urlsplit(u).path: d for u, d in provider.documents().items()})
        ps_key = PrivateKey.generate("Ed25519", kid="ps-1")
        ps_documents["/.well-known/aauth-person.json"] = {
            "issuer": ps,
            "jwks_uri": ps + "/jwks.json",
            "person_token_endpoint": ps + "/person",
            "auth_token_endpoint": ps + "/token",
        }
        ps_documents["/jwks.json"] = {"keys": [ps_key.public_jwk()]}
        key = PrivateKey.generate("Ed25519")
        yield Agent(key, provider.issue(key.public, "assistant"), ps_key, ps)
    finally:
        for server in (ap_server, ps_server):
            server.shutdown()
            server.server_close()


def _send(client: httpx.Client, request: HttpRequest) -> httpx.Response:
    return client.request(request.method, request.url, headers=request.headers)


def test_held_invocation_runs_on_the_other_worker(agent: Agent, tmp_path: Path) -> None:
    key_file = tmp_path / "signing-key.json"
    key_file.write_text(json.dumps(PrivateKey.generate("Ed25519", kid="rs-1").private_jwk()))
    shared = (
        *("--dev", "--signing-key", str(key_file), "--ps", agent.ps),
        *("--store", ensure_redis(), "--store-prefix", f"e2e-two-workers-{uuid.uuid4().hex}"),
    )
    with (
        # Worker A's default --dev issuer is its own origin; B is told to use the same one.
        running_apps([AppSpec("worker-a", MODULE, shared)]) as (worker_a,),
        running_apps([AppSpec("worker-b", MODULE, (*shared, "--issuer", worker_a.url))]) as (
            worker_b,
        ),
        httpx.Client(timeout=10, trust_env=False) as client,
    ):
        issuer = worker_a.url
        # One signing key file: both workers publish the same key for their resource tokens.
        jwks = [client.get(w.url + "/aauth/jwks.json").json() for w in (worker_a, worker_b)]
        assert jwks[0] == jwks[1] and jwks[0]["keys"][0]["kid"] == "rs-1"
        person = agent.person_token(issuer)
        held = _send(client, agent.signed("GET", worker_a.url + "/deferred", person))
        assert held.status_code == 202, held.text
        requirement = parse_aauth_requirement(held.headers["aauth-requirement"])
        assert requirement.requirement == "auth-token" and requirement.resource_token
        location = held.headers["location"]
        assert location.startswith(issuer + "/aauth/pending/")
        pending = urlsplit(location).path

        # B knows the held invocation: a person token still gets the 202.
        waiting = _send(client, agent.signed("GET", worker_b.url + pending, person))
        assert waiting.status_code == 202, waiting.text

        auth = agent.auth_token(issuer, "data.read")
        done = _send(client, agent.signed("GET", worker_b.url + pending, auth))
        assert done.status_code == 200, (done.text, worker_b.log())
        assert done.json() == {"scope": "data.read", "deferred": True}

        repeat = _send(client, agent.signed("GET", worker_a.url + pending, auth))
        assert (repeat.status_code, repeat.content) == (200, done.content)

        other = _send(
            client,
            agent.signed("GET", worker_a.url + pending, agent.auth_token(issuer, "data.read")),
        )
        assert other.status_code == 410
