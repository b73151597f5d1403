"""Requests shaped the way other stacks send them, against the example servers on loopback
(issue 9 item 3): an agent provider that writes its loopback agent ids without the port
(``aauth:other-stack@127.0.0.1`` for ``http://127.0.0.1:PORT``), an agent that signs with
another RFC 9421 implementation (``http_message_signatures``) and relays an interaction
without a ``capabilities`` member.  Expected: 200 at every resource, 202 and then a person
token at the PS, 424 from the relay, and a resource token carrying both jti claims."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms

from aauth_server.fields import parse_aauth_requirement
from aauth_server.tokens.jwt import decode_unverified
from example_apps._procs import RunningApp
from example_apps.demo import RESOURCES
from tests.e2e.outside import Outside, outside_world

PASSWORD = "other-stack-password"  # the scripted person's, loopback only
LOCAL = "other-stack"
AGENT = f"aauth:{LOCAL}@127.0.0.1"  # the port left out, as other stacks write it
GET_COVERED = ("@method", "@authority", "@path", "signature-key")
POST_COVERED = (*GET_COVERED, "content-type", "content-digest")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class OtherAgent:
    key: Ed25519PrivateKey
    jwk: dict[str, str]
    token: str

    def post(self, client: httpx.Client, url: str, body: dict[str, Any]) -> httpx.Response:
        content = json.dumps(body).encode()
        request = client.build_request(
            "POST", url, content=content, headers={"Content-Type": "application/json"}
        )
        # The signing library writes Content-Digest itself from the body.
        return client.send(self._signed(request, POST_COVERED, body=content))

    def get(
        self, client: httpx.Client, url: str, token: str | None = None, wait: int | None = None
    ) -> httpx.Response:
        headers = {} if wait is None else {"Prefer": f"wait={wait}"}
        request = client.build_request("GET", url, headers=headers)
        return client.send(self._signed(request, GET_COVERED, token))

    def _signed(
        self,
        request: httpx.Request,
        covered: tuple[str, ...],
        token: str | None = None,
        body: bytes | None = None,
    ) -> httpx.Request:
        request.headers["Signature-Key"] = f'sig=jwt;jwt="{token or self.token}"'
        HTTPMessageSigner(
            signature_algorithm=algorithms.ED25519,
            key_resolver=MappingKeyResolver(public_keys={}, private_keys={self.kid: self.key}),
        ).sign(
            request,
            key_id=self.kid,  # this implementation always writes keyid: the JWK thumbprint
            label="sig",
            include_alg=False,
            covered_component_ids=covered,
            created=datetime.datetime.now(datetime.UTC),
            body=body,
        )
        return request

    @property
    def kid(self) -> str:
        canonical = json.dumps(
            {m: self.jwk[m] for m in ("crv", "kty", "x")}, separators=(",", ":"), sort_keys=True
        )
        return b64url(hashlib.sha256(canonical.encode()).digest())


@dataclass
class Stack:
    world: Outside
    agent: OtherAgent

    @property
    def client(self) -> httpx.Client:
        return self.world.client

    @property
    def ps(self) -> RunningApp:
        return self.world.ps

    @property
    def resources(self) -> dict[str, RunningApp]:
        return self.world.resources


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    # The other stack's agent provider: its own key, its own (portless) agent ids.
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw), "alg": "Ed25519"}
    with outside_world(AGENT, jwk, PASSWORD) as world:
        yield Stack(world, OtherAgent(key, jwk, world.agent_token))


@pytest.mark.parametrize("name", [spec.name for spec in RESOURCES])
def test_a_portless_loopback_agent_id_gets_200(stack: Stack, name: str) -> None:
    response = stack.agent.get(stack.client, stack.resources[name].url + "/whoami")
    assert response.status_code == 200, response.text
    assert response.json()["agent"] == AGENT


def test_the_ps_answers_202_relays_answer_424_and_tokens_carry_both_jtis(stack: Stack) -> None:
    agent, client, ps = stack.agent, stack.client, stack.ps
    relay = {"type": "interaction", "url": ps.url + "/elsewhere", "code": "ABCD-2345"}
    # Unbound, no capabilities member: the agent can open the URL itself.
    refused = agent.post(client, ps.url + "/interaction", relay)
    assert refused.status_code == 424, refused.text
    assert refused.json()["error"] == "interaction_unavailable"

    resource = stack.resources["starlette"].url
    started = agent.post(
        client, ps.url + "/person", {"resource": resource, "capabilities": ["interaction"]}
    )
    pending = stack.world.approve(started)
    issued = agent.get(client, pending, wait=5)  # a long poll: not paced by Retry-After
    assert issued.status_code == 200, issued.text
    person_token = issued.json()["person_token"]

    # Bound now, still no channel and no capabilities member: 424 again, never 403.
    again = agent.post(client, ps.url + "/interaction", relay)
    assert again.status_code == 424, again.text

    profile = agent.get(client, resource + "/profile", person_token)
    assert profile.status_code == 200, profile.text
    challenge = agent.get(client, resource + "/data", person_token)
    assert challenge.status_code == 401
    rt = parse_aauth_requirement(challenge.headers["aauth-requirement"]).resource_token
    assert rt is not None
    claims = decode_unverified(rt).payload
    jti = decode_unverified(person_token).payload["jti"]
    assert claims["presented_jti"] == claims["person_token_jti"] == jti
