"""Another AAuth stack's agent against our servers on loopback: the ``aauth`` package (PyPI,
MIT) signs every request with its own signer (``sig=:<unpadded base64url>:``, content-digest
and content-type covered on PS calls), polls our pending URLs with its own poller and reads
our resource's challenge with its own header parser.  Its high-level token functions insist
on https identifiers without a port, so on loopback the test strings the steps together the
way those functions do; tests/person/test_peer_library.py runs them in process."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aauth import generate_ed25519_keypair, public_key_to_jwk
from aauth.agent.poller import poll_pending_url
from aauth.agent.signer import AgentRequestSigner
from aauth.agent.token_exchange import extract_resource_token

from example_apps.demo import RESOURCES
from tests.e2e.outside import Outside, outside_world
from tests.peer import PEER_SIGNATURE, ps_post

PASSWORD = "peer-library-password"  # the scripted person's, loopback only
AGENT = "aauth:peer-library@127.0.0.1"


@dataclass
class PeerAgent:
    key: Any  # cryptography Ed25519PrivateKey, from the peer library
    token: str
    client: httpx.Client

    def get(self, url: str, token: str | None = None) -> httpx.Response:
        headers: dict[str, str] = {}
        headers.update(
            AgentRequestSigner(self.key).sign_request(
                "GET", url, headers, token=token or self.token
            )
        )
        assert PEER_SIGNATURE.fullmatch(headers["Signature"]), headers["Signature"]
        return self.client.get(url, headers=headers)

    def post(self, url: str, body: dict[str, Any]) -> httpx.Response:
        headers, content = ps_post(self.key, self.token, url, body)
        return self.client.post(url, headers=headers, content=content)

    def poll(self, location: str) -> Any:
        """The peer's own poller on our pending URL, its GETs signed by the peer."""
        return poll_pending_url(location, lambda url: self.get(url), max_polls=30, default_wait=1)


@dataclass
class Stack:
    world: Outside
    agent: PeerAgent


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    key, _ = generate_ed25519_keypair()
    with outside_world(AGENT, public_key_to_jwk(key.public_key()), PASSWORD) as world:
        yield Stack(world, PeerAgent(key, world.agent_token, world.client))


@pytest.mark.parametrize("name", [spec.name for spec in RESOURCES])
def test_the_peer_agents_signature_is_accepted_at_every_resource(stack: Stack, name: str) -> None:
    response = stack.agent.get(stack.world.resources[name].url + "/whoami")
    assert response.status_code == 200, response.text
    assert response.json()["agent"] == AGENT


def test_the_peer_agent_gets_a_person_token_then_an_auth_token(stack: Stack) -> None:
    agent, world = stack.agent, stack.world
    ps, resource = world.ps, world.resources["starlette"].url
    started = agent.post(
        ps.url + "/person", {"resource": resource, "capabilities": ["interaction"]}
    )
    result = agent.poll(world.approve(started))
    assert result.success, (result.error, result.error_description)
    person_token = result.response_body["person_token"]

    challenge = agent.get(resource + "/data", person_token)
    assert challenge.status_code == 401, challenge.text
    resource_token = extract_resource_token(challenge.headers)  # the peer's header parser
    assert resource_token, challenge.headers

    body = {
        "resource_token": resource_token,
        "presented_token": person_token,
        "capabilities": ["interaction"],
    }
    # The example PS puts each scope to the person: 202, alice approves, the poll has it.
    result = agent.poll(world.approve(agent.post(ps.url + "/token", body)))
    assert result.success, (result.error, result.error_description)
    auth_token = result.auth_token
    assert auth_token

    data = agent.get(resource + "/data", auth_token)
    assert data.status_code == 200, data.text
