"""A small AAuth world for tests: an agent provider, an agent, a resource config, and
builders for signed (and deliberately broken) requests.  No network: key discovery
reads the provider's documents from a StaticFetcher."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from aauth_server.agent import AgentProvider
from aauth_server.clock import SYSTEM_CLOCK, Clock
from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.keys.discovery import KeyDiscovery
from aauth_server.keys.fetcher import AsyncStaticFetcher, StaticFetcher
from aauth_server.keys.jwk import PrivateKey
from aauth_server.resource import ResourceConfig
from aauth_server.signatures.message import AAUTH_COMPONENTS, sign_request
from aauth_server.signatures.signature_key import SignatureKey, serialize_signature_key

AP_ISSUER = "https://agent.example"
RESOURCE = "https://resource.example"


@dataclass
class World:
    clock: Clock = SYSTEM_CLOCK
    provider: AgentProvider = field(init=False)
    agent_key: PrivateKey = field(init=False)
    agent_token: str = field(init=False)
    extra_documents: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.provider = AgentProvider(
            AP_ISSUER, PrivateKey.generate("Ed25519", kid="ap-1"), clock=self.clock
        )
        self.agent_key = PrivateKey.generate("Ed25519")
        self.agent_token = self.provider.issue(self.agent_key.public, "assistant")

    @property
    def agent_id(self) -> str:
        return self.provider.agent_id("assistant")

    def documents(self) -> dict[str, Any]:
        return {**self.provider.documents(), **self.extra_documents}

    def discovery(self) -> KeyDiscovery:
        docs = self.documents()
        return KeyDiscovery(StaticFetcher(docs), AsyncStaticFetcher(docs), clock=self.clock)

    def resource_config(self, **overrides: Any) -> ResourceConfig:
        return ResourceConfig(
            issuer=RESOURCE, discovery=self.discovery(), clock=self.clock, **overrides
        )

    def now(self) -> int:
        return int(self.clock.now())

    def signed(
        self,
        method: str = "GET",
        path: str = "/whoami",
        *,
        body: bytes = b"",
        headers: Sequence[tuple[str, str]] = (),
        token: str | None = None,
        key: PrivateKey | None = None,
        signature_key: str | None = None,
        components: Sequence[str] | None = None,
        created: int | None = None,
        label: str = "sig",
        origin: str = RESOURCE,
    ) -> HttpRequest:
        """A request signed the way a correct AAuth agent signs it, with knobs to break it."""
        hdrs = list(headers)
        if body and not any(k.lower() == "content-type" for k, _ in hdrs):
            hdrs.append(("Content-Type", "application/json"))
        sk = signature_key
        if sk is None:
            sk = serialize_signature_key(
                [
                    SignatureKey(
                        label, "jwt", {"jwt": token if token is not None else self.agent_token}
                    )
                ]
            )
        hdrs.append(("Signature-Key", sk))
        request = HttpRequest(method, origin + path, hdrs, body)
        if components is None:
            components = list(AAUTH_COMPONENTS) + (
                ["content-type", "content-digest"] if body else []
            )
        signed = sign_request(
            request,
            key or self.agent_key,
            label=label,
            components=components,
            created=created if created is not None else self.now(),
        )
        return replace(request, headers=hdrs + signed)


def with_header(request: HttpRequest, name: str, value: str | None) -> HttpRequest:
    """Replace (or with None remove) every line of one header."""
    headers = [(k, v) for k, v in request.headers if k.lower() != name.lower()]
    if value is not None:
        headers.append((name, value))
    return replace(request, headers=headers)


@dataclass(frozen=True)
class Scenario:
    """One wire scenario: a request and what every adapter must answer."""

    name: str
    build: Callable[[World], HttpRequest]
    status: int
    error: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    path: str = "/whoami"


def scenarios() -> list[Scenario]:
    """The table every adapter runs (tests/adapters/test_wire_parity.py)."""

    def tampered(w: World) -> HttpRequest:
        req = w.signed()
        return replace(req, url=req.url.replace("/whoami", "/whoami"), method="POST")

    return [
        Scenario(
            "unsigned",
            lambda w: HttpRequest("GET", RESOURCE + "/whoami", []),
            401,
            "agent_token_required",
            {"aauth-requirement": "requirement=agent-token"},
        ),
        Scenario("signed", lambda w: w.signed(), 200),
        Scenario(
            "tampered-method",
            tampered,
            401,
            "invalid_signature",
            {"signature-error": "error=invalid_signature"},
        ),
        Scenario(
            "missing-signature",
            lambda w: with_header(w.signed(), "Signature", None),
            401,
            "invalid_signature",
            {"signature-error": "error=invalid_signature"},
        ),
        Scenario(
            "uncovered-signature-key",
            lambda w: w.signed(components=["@method", "@authority", "@path"]),
            401,
            "invalid_input",
            {
                "signature-error": "error=invalid_input, required_input="
                '("@method" "@authority" "@path" "signature-key")'
            },
        ),
        Scenario(
            "stale",
            lambda w: w.signed(created=w.now() - 120),
            401,
            "invalid_signature",
            {"signature-error": "error=invalid_signature"},
        ),
        Scenario(
            "future",
            lambda w: w.signed(created=w.now() + 120),
            401,
            "clock_skew",
            {"signature-error": "error=clock_skew"},
        ),
        Scenario(
            "hwk-scheme",
            lambda w: w.signed(
                signature_key='sig=hwk;kty="OKP";crv="Ed25519";x="'
                + str(w.agent_key.public.jwk["x"])
                + '";alg="Ed25519"'
            ),
            401,
            "unsupported_scheme",
            {"signature-error": "error=unsupported_scheme", "accept-signature-scheme": "jwt"},
        ),
        Scenario(
            "wrong-key",
            lambda w: w.signed(key=PrivateKey.generate("Ed25519")),
            401,
            "invalid_signature",
            {"signature-error": "error=invalid_signature"},
        ),
        Scenario(
            "optional-unsigned",
            lambda w: HttpRequest("GET", RESOURCE + "/optional", []),
            200,
            path="/optional",
        ),
        Scenario("optional-signed", lambda w: w.signed(path="/optional"), 200, path="/optional"),
        Scenario("post-with-body", lambda w: w.signed("POST", body=b'{"a":1}'), 200),
    ]


def assert_scenario(scenario: Scenario, response: HttpResponse, world: World) -> None:
    """What every adapter must answer for ``scenario`` (status, headers, body ``error``)."""
    assert response.status == scenario.status
    for name, value in scenario.headers.items():
        assert response.header(name) == value
    payload = json.loads(response.body)
    if scenario.error is not None:
        assert response.header("content-type") == "application/problem+json"
        assert payload["error"] == scenario.error
        assert payload["detail"]
    elif scenario.name == "optional-unsigned":
        assert payload == {"agent": None}
    else:
        assert payload == {"agent": world.agent_id}
