"""The example Access Server (``python -m example_apps.access_server``) over the wire, in
each framework (Starlette and Django on uvicorn, Flask on Werkzeug): a PS signs as a server
with :class:`~aauth_server.outbound.ServerSigner` (its keys, the agent provider's and the
resource's served from loopback JWKS), and every token-endpoint code of digest 5.6 an AS
answers comes back over HTTP; then the claims + clarification flow, the pending URL's
identity check and cancellation."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from aauth_server.access import RequireInteraction
from aauth_server.keys.egress import EgressPolicy
from aauth_server.keys.jwk import PrivateKey
from aauth_server.outbound import FetchResponse, OutboundClient
from aauth_server.tokens.aauth import DWK_ACCESS, DWK_PERSON, DWK_RESOURCE, TYP_AUTH, check_claims
from aauth_server.tokens.jwt import decode_unverified
from example_apps._procs import AppSpec, running_apps
from tests.access.wire_world import Wire, access_server_on_loopback, loopback_parties


@pytest.fixture(scope="module")
def parties() -> Iterator[Wire]:
    with loopback_parties() as parties:
        yield parties


@pytest.fixture(scope="module", params=["starlette", "flask", "django"])
def wire(request: pytest.FixtureRequest, parties: Wire) -> Iterator[Wire]:
    spec = AppSpec(
        "access-server",
        "example_apps.access_server",
        (
            "--dev",
            "--trust-ps",
            parties.ps.issuer,
            "--require-claims",
            "email",
            "--clarify",
            "Which project?",
            "--framework",
            request.param,
        ),
    )
    with running_apps([spec]) as apps:
        yield replace(parties, as_url=apps[0].url)


def _json(response: FetchResponse) -> dict[str, Any]:
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
    "upstream_token not a token": (
        lambda w: w.triple(upstream_token="x"),
        400,
        "invalid_upstream_token",
    ),
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


def test_server_error_and_user_unreachable_over_the_wire(parties: Wire) -> None:
    def broken(request: Any) -> Any:
        raise RuntimeError("the policy's database is down")

    with access_server_on_loopback(parties, policy=broken) as wire:
        response = wire.send("POST", "/token", wire.triple())
        assert (response.status, _json(response)["error"]) == (500, "server_error")
        assert "database" not in response.body.decode()  # the cause is for the log only
    with access_server_on_loopback(
        parties, policy=lambda request: RequireInteraction(), interaction_page=False
    ) as wire:
        response = wire.send("POST", "/token", wire.triple())
        assert (response.status, _json(response)["error"]) == (403, "user_unreachable")
