"""The intermediary's own parts (aauth_server/intermediary.py), in process: its agent-provider
documents and self-issued agent tokens, where it routes (the PS the upstream token names),
and interaction chaining's wire — its own 202, code and Location, the single-use interaction
page, the pending URL for the original caller only, 410 after delivery.  ``work`` stands in
for the downstream calls (the end-to-end run is test_e2e_chaining.py)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from aauth_server.agent.flow import FlowError, Interaction
from aauth_server.fields import parse_aauth_requirement
from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.intermediary import ChainedCall, Intermediary, json_response
from aauth_server.keys.jwk import PublicKey
from aauth_server.resource import PersonIdentity
from aauth_server.tokens.aauth import TYP_AUTH, TYP_PERSON
from aauth_server.tokens.jwt import decode_unverified, verify_jwt_signature

MID = "https://intermediary.example"
PS = "https://ps.example"
DOWNSTREAM_URL = "https://ps.example/consent/request/abc"


@pytest.fixture
def mid() -> Iterator[Intermediary]:
    intermediary = Intermediary(MID, hold=5.0)
    yield intermediary
    intermediary.close()


def caller(jkt: str = "caller-jkt", typ: str = TYP_PERSON, ps: str = PS) -> PersonIdentity:
    return PersonIdentity(
        ps=ps,
        sub="s",
        issuer=ps if typ == TYP_PERSON else "https://as.example",
        jkt=jkt,
        claims={},
        token="upstream.jwt.token",
        typ=typ,
        jti="j",
    )


def get(url: str) -> HttpRequest:
    return HttpRequest("GET", url, [], b"")


def body(response: HttpResponse) -> Any:
    return json.loads(response.body)


def test_it_is_its_own_agent_provider(mid: Intermediary) -> None:
    metadata = mid.handle(get(MID + "/.well-known/aauth-agent.json"))
    assert metadata is not None and body(metadata)["issuer"] == MID
    jwks_path = body(metadata)["jwks_uri"].removeprefix(MID)
    jwks = mid.handle(get(MID + jwks_path))
    assert jwks is not None
    (key,) = body(jwks)["keys"]
    token = decode_unverified(mid.agent_token())
    verify_jwt_signature(token, PublicKey.from_jwk(key))  # signed with the published key
    claims = token.payload
    assert claims["iss"] == MID and claims["sub"] == "aauth:intermediary@intermediary.example"
    assert claims["cnf"]["jwk"]["x"] == mid.agent_key.public.jwk["x"]
    assert "ps" not in claims  # it asks the PS each upstream token names
    assert mid.handle(get(MID + "/elsewhere")) is None


def test_it_routes_to_the_ps_the_upstream_token_names(mid: Intermediary) -> None:
    flow = mid.flow_for(caller(), lambda i: None)
    assert flow.ps == PS and flow.upstream_token == "upstream.jwt.token"
    four_party = mid.flow_for(caller(typ=TYP_AUTH, ps="https://other-ps.example"), lambda i: None)
    assert four_party.ps == "https://other-ps.example"  # an auth token's ps, not its iss
    assert flow.mediator is None and "interaction" in flow.capabilities


def test_a_quick_downstream_answers_at_once(mid: Intermediary) -> None:
    answer = mid.run(caller(), lambda call: json_response({"done": True}))
    assert answer.status == 200 and body(answer) == {"done": True}


def _chained(mid: Intermediary) -> tuple[HttpResponse, threading.Event]:
    release = threading.Event()

    def work(call: ChainedCall) -> HttpResponse:
        call.flow.interact(Interaction(DOWNSTREAM_URL, "DOWN-CODE"))
        release.wait(10)
        return json_response({"downstream": "token arrived"})

    return mid.run(caller(), work), release


def test_interaction_chaining_wire(mid: Intermediary) -> None:
    first, release = _chained(mid)
    assert first.status == 202
    assert first.header("cache-control") == "no-store" and first.header("retry-after") == "1"
    location = first.header("location") or ""
    assert location.startswith(MID + "/aauth/chain/pending/")
    req = parse_aauth_requirement(first.header("aauth-requirement") or "")
    assert req.requirement == "interaction"
    assert req.url == MID + "/aauth/chain/interact" and req.code and req.code != "DOWN-CODE"
    pending_id = location.rsplit("/", 1)[1]

    # Only the original caller (its key) may poll; others see nothing.
    assert mid.poll(pending_id, caller(jkt="someone-else")).status == 404
    assert mid.poll("no-such-id", caller()).status == 404

    # The intermediary's page sends the person on to the downstream interaction, once.
    page = mid.handle(get(f"{MID}/aauth/chain/interact?code={req.code.lower()}"))
    assert page is not None and page.status == 303
    assert page.header("location") == DOWNSTREAM_URL + "?code=DOWN-CODE"
    again = mid.handle(get(f"{MID}/aauth/chain/interact?code={req.code}"))
    assert again is not None and again.status == 410
    unknown = mid.handle(get(f"{MID}/aauth/chain/interact?code=ZZZZ-ZZZZ"))
    assert unknown is not None and unknown.status == 410

    waiting = mid.poll(pending_id, caller())
    assert waiting.status == 202 and body(waiting) == {"status": "interacting"}
    assert waiting.header("aauth-requirement") is None

    release.set()
    for _ in range(200):
        done = mid.poll(pending_id, caller())
        if done.status != 202:
            break
        threading.Event().wait(0.02)
    assert done.status == 200 and body(done) == {"downstream": "token arrived"}
    assert mid.poll(pending_id, caller()).status == 410


def test_a_downstream_that_only_asks_to_wait_is_held_then_deferred() -> None:
    mid = Intermediary(MID, hold=0.2)
    release = threading.Event()

    def work(call: ChainedCall) -> HttpResponse:
        release.wait(10)
        return json_response({})

    try:
        answer = mid.run(caller(), work)
        assert answer.status == 202
        req = parse_aauth_requirement(answer.header("aauth-requirement") or "")
        assert req.requirement == "approval"
    finally:
        release.set()
        mid.close()


def test_an_interaction_url_it_would_not_send_a_person_to(mid: Intermediary) -> None:
    release = threading.Event()

    def work(call: ChainedCall) -> HttpResponse:
        call.flow.interact(Interaction("http://evil.example/interact", "DOWN-CODE"))
        release.wait(10)
        return json_response({})

    try:
        first = mid.run(caller(), work)
        req = parse_aauth_requirement(first.header("aauth-requirement") or "")
        page = mid.handle(get(f"{MID}/aauth/chain/interact?code={req.code}"))
        assert page is not None and page.status == 502
    finally:
        release.set()


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (403, "denied", (403, "denied")),
        (408, "expired", (408, "expired")),
        (400, "revoked_upstream_token", (400, "revoked_upstream_token")),
        (401, "invalid_signature", (500, "server_error")),
        (502, "as_unreachable", (500, "server_error")),
    ],
)
def test_downstream_refusals(
    mid: Intermediary, status: int, error: str, expected: tuple[int, str]
) -> None:
    refused = httpx.Response(status, json={"error": error})

    def work(call: ChainedCall) -> HttpResponse:
        raise FlowError("refused", refused)

    answer = mid.run(caller(), work)
    assert (answer.status, body(answer)["error"]) == expected


def test_egress_admits_no_plain_http_outside_development(mid: Intermediary) -> None:
    def work(call: ChainedCall) -> HttpResponse:
        call.request("GET", "http://downstream.example/data")
        return json_response({})

    answer = mid.run(caller(), work)
    assert answer.status == 500 and "egress" in body(answer)["detail"]
