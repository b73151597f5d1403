"""The example Access Server (``python -m example_apps.access_server``) over the wire, in
each framework (Starlette and Django on uvicorn, Flask on Werkzeug): a PS signs as a server
with :class:`~aauth_server.outbound.ServerSigner` (its keys, the agent provider's and the
resource's served from loopback JWKS), and every token-endpoint code of digest 5.6 an AS
answers comes back over HTTP; then the claims + clarification flow, the pending URL's
identity check and cancellation."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from aauth_server.agent import AgentProvider
from aauth_server.asgi import asgi_app
from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.keys.egress import EgressPolicy
from aauth_server.keys.jwk import PrivateKey
from aauth_server.outbound import FetchResponse, OutboundClient, ServerSigner
from aauth_server.tokens.aauth import (
    DWK_ACCESS,
    DWK_PERSON,
    DWK_RESOURCE,
    TYP_AUTH,
    check_claims,
    mint_agent_token,
    mint_person_token,
    mint_resource_token,
)
from aauth_server.tokens.jwt import decode_unverified
from example_apps._procs import AppSpec, running_apps
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


@pytest.fixture(scope="module", params=["starlette", "flask", "django"])
def wire(request: pytest.FixtureRequest) -> Iterator[Wire]:
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
    spec = AppSpec(
        "access-server",
        "example_apps.access_server",
        (
            "--dev",
            "--trust-ps",
            ps.issuer,
            "--require-claims",
            "email",
            "--clarify",
            "Which project?",
        ),
    )
    try:
        with running_apps([spec]) as apps:
            yield Wire(
                apps[0].url,
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


def _json(response: FetchResponse) -> dict[str, Any]:
    import json

    parsed: dict[str, Any] = json.loads(response.body)
    return parsed


def test_metadata(wire: Wire) -> None:
    response = OutboundClient(None, EgressPolicy(dev_loopback=True)).request(
        "GET", wire.as_url + "/.well-known/aauth-access.json"
    )
    meta = _json(response)
    assert meta["issuer"] == wire.as_url
    assert meta["auth_token_endpoint"] == wire.as_url + "/token"
    assert meta["revocation_endpoint"] == wire.as_url + "/revoke"


def _revoked(wire: Wire, token_key: str, signer: tuple[PrivateKey, str, str]) -> dict[str, Any]:
    body = wire.triple()
    claims = decode_unverified(body[token_key]).payload
    client = wire.client(*signer)
    try:
        revoked = client.request(
            "POST", wire.as_url + "/revoke", json={"jti": claims["jti"], "exp": claims["exp"]}
        )
    finally:
        client.close()
    assert revoked.status == 200
    return body


WIRE_CASES: dict[str, tuple[Callable[[Wire], Any], int, str]] = {
    "invalid_request": (lambda w: {"resource_token": "x"}, 400, "invalid_request"),
    "invalid_resource_token": (
        lambda w: w.triple(resource_token=w.resource_token(w.person_token(), aud=w.ps.issuer)),
        400,
        "invalid_resource_token",
    ),
    "expired_resource_token": (
        lambda w: w.triple(
            resource_token=w.resource_token(w.person_token(), now=time.time() - 400)
        ),
        400,
        "expired_resource_token",
    ),
    "revoked_resource_token": (
        lambda w: _revoked(w, "resource_token", (w.resource_key, w.resource.issuer, DWK_RESOURCE)),
        400,
        "revoked_resource_token",
    ),
    "invalid_presented_token": (
        lambda w: w.triple(presented_token=w.agent_token()),
        400,
        "invalid_presented_token",
    ),
    "expired_presented_token": (
        lambda w: (lambda p: w.triple(presented_token=p, resource_token=w.resource_token(p)))(
            w.person_token(now=time.time() - 3700)
        ),
        400,
        "expired_presented_token",
    ),
    "revoked_presented_token": (
        lambda w: _revoked(w, "presented_token", (w.ps_key, w.ps.issuer, DWK_PERSON)),
        400,
        "revoked_presented_token",
    ),
    "invalid_agent_token": (lambda w: w.triple(agent_token="a.b.c"), 400, "invalid_agent_token"),
    "expired_agent_token": (
        lambda w: w.triple(agent_token=w.agent_token(now=time.time() - 7200)),
        400,
        "expired_agent_token",
    ),
    "clock_skew": (
        lambda w: w.triple(
            resource_token=w.resource_token(w.person_token(), now=time.time() + 200)
        ),
        400,
        "clock_skew",
    ),
    "upstream_token (not yet)": (lambda w: w.triple(upstream_token="x"), 400, "invalid_request"),
}


@pytest.mark.parametrize("case", list(WIRE_CASES))
def test_token_endpoint_codes_over_the_wire(wire: Wire, case: str) -> None:
    make, status, error = WIRE_CASES[case]
    response = wire.send("POST", "/token", make(wire))
    assert response.status == status, response.body
    assert response.headers["content-type"] == "application/problem+json"
    assert _json(response)["error"] == error


def test_an_untrusted_ps_is_denied(wire: Wire) -> None:
    other = wire.client(wire.other_key, wire.other_ps.issuer)
    try:
        response = wire.send("POST", "/token", wire.triple(), client=other)
    finally:
        other.close()
    assert (response.status, _json(response)["error"]) == (403, "denied")


def test_a_bad_signature_is_401(wire: Wire) -> None:
    impostor = wire.client(PrivateKey.generate(kid="ps-1"))
    try:
        response = wire.send("POST", "/token", wire.triple(), client=impostor)
    finally:
        impostor.close()
    assert response.status == 401 and "signature-error" in response.headers


def test_claims_then_clarification_then_the_token(wire: Wire) -> None:
    first = wire.send("POST", "/token", wire.triple())
    assert first.status == 202
    assert first.headers["aauth-requirement"] == "requirement=claims"
    assert first.headers["cache-control"] == "no-store"
    location = first.headers["location"]
    assert location.startswith(wire.as_url + "/pending/")
    path = location[len(wire.as_url) :]
    assert _json(first) == {"status": "pending", "required_claims": ["email"]}
    # Another PS polling, answering or cancelling this request: 404.
    other = wire.client(wire.other_key, wire.other_ps.issuer)
    try:
        for method, body in (("GET", None), ("POST", {"email": "x@y"}), ("DELETE", None)):
            assert wire.send(method, path, body, client=other).status == 404
    finally:
        other.close()
    sub = wire.send("POST", path, {"action": "claims", "claims": {"sub": "no"}})
    assert (sub.status, _json(sub)["error"]) == (400, "invalid_request")
    asked = wire.send("POST", path, {"action": "claims", "claims": {"email": "alice@example.com"}})
    assert asked.headers["aauth-requirement"] == "requirement=clarification"
    assert _json(asked)["clarification"] == "Which project?"
    reply = {"action": "clarification_response", "clarification_response": "Apollo"}
    assert wire.send("POST", path, reply).status == 202
    done = wire.send("GET", path)
    assert done.status == 200
    token = _json(done)["auth_token"]
    claims = check_claims(
        decode_unverified(token),
        typ=TYP_AUTH,
        now=time.time(),
        audience=wire.resource.issuer,
        dev_loopback=True,
    )
    assert (claims["iss"], claims["dwk"], claims["ps"]) == (wire.as_url, DWK_ACCESS, wire.ps.issuer)
    assert claims["email"] == "alice@example.com" and claims["sub"] == "pairwise-7"
    assert wire.send("GET", path).status == 410


def test_cancel_over_the_wire(wire: Wire) -> None:
    first = wire.send("POST", "/token", wire.triple())
    path = first.headers["location"][len(wire.as_url) :]
    assert wire.send("DELETE", path).status == 204
    assert wire.send("GET", path).status == 410
