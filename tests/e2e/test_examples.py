"""End to end: the example agent provider and the three example resources as real servers.

The agent here is deliberately independent of aauth_server: its key and JWK come straight
from ``cryptography``, its signature from the ``http_message_signatures`` package (another
RFC 9421 implementation) and its ``Signature-Key`` header is written by hand.  Only the
agent token comes from the running provider, over HTTP.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import http_sf
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms

from example_apps._procs import RunningApp, running_apps
from example_apps.demo import PROVIDER, RESOURCES

RESOURCE_NAMES = [spec.name for spec in RESOURCES]
COVERED = ("@method", "@authority", "@path", "signature-key")
EXAMPLE_MODULES = [
    "example_apps",
    "example_apps.agent_provider",
    "example_apps.demo",
    "example_apps.person_server",
    "example_apps.three_party",
    *(spec.module for spec in RESOURCES),
]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class IndependentAgent:
    key: Ed25519PrivateKey
    jwk: dict[str, str]
    token: str
    agent_id: str

    @property
    def thumbprint(self) -> str:
        # RFC 7638 for OKP: the required members in lexicographic order, no whitespace.
        canonical = json.dumps(
            {m: self.jwk[m] for m in ("crv", "kty", "x")}, separators=(",", ":"), sort_keys=True
        )
        return b64url(hashlib.sha256(canonical.encode()).digest())

    def sign(self, request: httpx.Request) -> httpx.Request:
        request.headers["Signature-Key"] = f'sig=jwt;jwt="{self.token}"'
        signer = HTTPMessageSigner(
            signature_algorithm=algorithms.ED25519,
            key_resolver=MappingKeyResolver(
                public_keys={}, private_keys={self.thumbprint: self.key}
            ),
        )
        signer.sign(
            request,
            key_id=self.thumbprint,  # AAuth: keyid, if sent, must name the Signature-Key key
            label="sig",
            include_alg=False,  # AAuth: the algorithm comes from the key, alg MUST NOT be sent
            covered_component_ids=COVERED,
            created=datetime.datetime.now(datetime.UTC),
        )
        return request


@dataclass
class World:
    provider: RunningApp
    resources: dict[str, RunningApp]
    client: httpx.Client

    def enroll(self, local: str) -> IndependentAgent:
        key = Ed25519PrivateKey.generate()
        raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw), "alg": "Ed25519"}
        response = self.client.post(
            self.provider.url + "/dev/agent-token", json={"local": local, "jwk": jwk}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        return IndependentAgent(key, jwk, body["agent_token"], body["agent"])


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with (
        running_apps([PROVIDER, *RESOURCES]) as apps,
        httpx.Client(timeout=10, trust_env=False) as client,
    ):
        yield World(apps[0], {app.name: app for app in apps[1:]}, client)


@pytest.fixture(scope="module")
def agent(world: World) -> IndependentAgent:
    return world.enroll("e2e-agent")


def sf_dict(value: str | None) -> dict[str, tuple[object, dict[str, object]]]:
    assert value is not None
    parsed = http_sf.parse(value.encode(), tltype="dictionary")
    assert isinstance(parsed, dict)
    return cast(dict[str, tuple[object, dict[str, object]]], parsed)


def assert_signature_error(response: httpx.Response, code: str) -> None:
    assert response.status_code == 401, response.text
    error, _ = sf_dict(response.headers.get("signature-error"))["error"]
    assert error == http_sf.Token(code)
    assert "aauth-requirement" not in response.headers


def test_provider_metadata_names_its_issuer(world: World) -> None:
    url = world.provider.url
    metadata = world.client.get(url + "/.well-known/aauth-agent.json").json()
    assert metadata["issuer"] == url
    assert metadata["jwks_uri"] == url + "/.well-known/jwks.json"
    keys = world.client.get(metadata["jwks_uri"]).json()["keys"]
    assert keys and all(k["alg"] == "Ed25519" and "d" not in k for k in keys)


def test_enrolled_agent_id_is_on_the_provider_domain(world: World, agent: IndependentAgent) -> None:
    assert agent.agent_id == "aauth:e2e-agent@" + world.provider.url.removeprefix("http://")


@pytest.mark.parametrize("name", RESOURCE_NAMES)
def test_resource_metadata_names_its_issuer(world: World, name: str) -> None:
    app = world.resources[name]
    response = world.client.get(app.url + "/.well-known/aauth-resource.json")
    assert response.status_code == 200
    assert response.json()["issuer"] == app.url


@pytest.mark.parametrize("name", RESOURCE_NAMES)
def test_unsigned_request_is_challenged(world: World, name: str) -> None:
    response = world.client.get(world.resources[name].url + "/whoami")
    assert response.status_code == 401
    requirement, params = sf_dict(response.headers.get("aauth-requirement"))["requirement"]
    assert requirement == http_sf.Token("agent-token")
    assert params == {}
    assert "signature-error" not in response.headers


@pytest.mark.parametrize("name", RESOURCE_NAMES)
def test_independently_signed_request_is_accepted(
    world: World, agent: IndependentAgent, name: str
) -> None:
    request = agent.sign(world.client.build_request("GET", world.resources[name].url + "/whoami"))
    signature_input = request.headers["signature-input"]
    assert signature_input.startswith('sig=("@method" "@authority" "@path" "signature-key")')
    assert ";alg=" not in signature_input
    response = world.client.send(request)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["agent"] == agent.agent_id
    # The resource bound the request to the key we generated, not to anything of its own.
    assert body["jkt"] == agent.thumbprint


@pytest.mark.parametrize("name", RESOURCE_NAMES)
def test_request_redirected_to_another_authority_is_rejected(
    world: World, agent: IndependentAgent, name: str
) -> None:
    # Signed for the provider's origin, delivered to the resource: @authority no longer matches.
    original = agent.sign(world.client.build_request("GET", world.provider.url + "/whoami"))
    headers = [(k, v) for k, v in original.headers.multi_items() if k.lower() != "host"]
    request = world.client.build_request(
        "GET", world.resources[name].url + "/whoami", headers=headers
    )
    assert_signature_error(world.client.send(request), "invalid_signature")


@pytest.mark.parametrize("name", RESOURCE_NAMES)
def test_substituted_agent_token_is_rejected(
    world: World, agent: IndependentAgent, name: str
) -> None:
    # Another agent's valid token swapped into the covered Signature-Key: the token verifies,
    # but neither the signature base nor the bound key match any more.
    other = world.enroll("other-agent")
    request = agent.sign(world.client.build_request("GET", world.resources[name].url + "/whoami"))
    request.headers["Signature-Key"] = f'sig=jwt;jwt="{other.token}"'
    assert_signature_error(world.client.send(request), "invalid_signature")


def test_demo_shows_three_outcomes_per_resource() -> None:
    result = subprocess.run(
        # Never the machine's Redis on 6379, which the demo would use when it answers.
        [sys.executable, "-m", "example_apps.demo", "--store", "memory://"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in RESOURCE_NAMES:
        for step in ("unsigned", "signed", "tampered"):
            assert f"[{name}] PASS {step}:" in result.stdout, result.stdout
    out, n = result.stdout, len(RESOURCE_NAMES)
    assert out.count("< HTTP/1.1 401 ") == 2 * n
    assert out.count("< AAuth-Requirement: requirement=agent-token") == n
    assert out.count("< Signature-Error: error=invalid_signature") == n
    assert "FAIL" not in out


@pytest.mark.parametrize("module", EXAMPLE_MODULES)
def test_every_example_has_help(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout
