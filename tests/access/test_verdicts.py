"""The policy's verdicts (digest 5.4, 5.5, 7) and the pending URL a PS polls: claims asked and
answered (both shapes; ``sub`` refused), clarification rounds (capped), updated requests,
cancel, approval by an operator, expiry and revocation while pending, and that only the PS
that asked may poll (another PS gets 404)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aauth_server.access import (
    AccessRequest,
    Deny,
    Issue,
    RequireApproval,
    RequireClaims,
    RequireClarification,
    Verdict,
)
from aauth_server.keys.jwk import PrivateKey
from aauth_server.outbound import ServerSigner
from aauth_server.tokens.aauth import DWK_PERSON
from aauth_server.tokens.jwt import decode_unverified
from tests.access.as_harness import AsWorld, body_of, header, pending_path
from tests.support import PERSON, PS_ISSUER, RESOURCE

OTHER_PS = "https://other-ps.example"


def claims_then_issue(request: AccessRequest) -> Verdict:
    if "email" not in request.claims:
        return RequireClaims(["email"])
    return Issue(claims={"email": request.claims["email"]})


def clarify_then_issue(request: AccessRequest) -> Verdict:
    if not request.clarifications or request.clarifications[-1][1] is None:
        return RequireClarification("Why do you need it?", options=["work", "fun"], timeout=60)
    if request.clarifications[-1][1] == "more":
        return RequireClarification("Tell me more")
    if request.clarifications[-1][1] == "fun":
        return Deny("work only")
    return Issue()


def always_ask(request: AccessRequest) -> Verdict:
    return RequireClarification(f"question {request.rounds + 1}?")


def start(aw: AsWorld, scope: str = "data.read") -> Any:
    response = aw.send(aw.token_request(aw.triple(scope)))
    assert response.status == 202, response.body
    return response


def poll(aw: AsWorld, path: str, method: str = "GET", body: Any = None, **kw: Any) -> Any:
    return aw.send(aw.signed(method, path, body, **kw))


def test_claims_are_asked_then_answered_with_action() -> None:
    aw = AsWorld(policy=claims_then_issue)
    first = start(aw)
    assert header(first, "aauth-requirement") == "requirement=claims"
    assert header(first, "cache-control") == "no-store"
    assert header(first, "retry-after") == "1"
    assert body_of(first) == {"status": "pending", "required_claims": ["email"]}
    path = pending_path(first)
    # Polling before answering keeps the same 202.
    again = poll(aw, path)
    assert (again.status, body_of(again)) == (202, body_of(first))
    answered = poll(aw, path, "POST", {"action": "claims", "claims": {"email": "a@example.com"}})
    assert answered.status == 202 and header(answered, "retry-after") == "0"
    done = poll(aw, path)
    assert done.status == 200
    claims = decode_unverified(body_of(done)["auth_token"]).payload
    assert claims["email"] == "a@example.com"
    # The outcome was delivered: the pending URL is gone.
    assert poll(aw, path).status == 410


def test_a_flat_claims_object_is_accepted() -> None:
    aw = AsWorld(policy=claims_then_issue)
    path = pending_path(start(aw))
    assert poll(aw, path, "POST", {"email": "b@example.com"}).status == 202
    token = body_of(poll(aw, path))["auth_token"]
    assert decode_unverified(token).payload["email"] == "b@example.com"


@pytest.mark.parametrize(
    "body",
    [
        {"action": "claims", "claims": {"sub": "x", "email": "a@x"}},
        {"sub": "x"},
        {"action": "claims", "claims": "email"},
        {"action": "claims", "claims": {}},
        {"action": "unknown"},
        {"action": "clarification_response", "clarification_response": "hi"},
    ],
)
def test_bad_claims_answers_are_invalid_request(body: Any) -> None:
    aw = AsWorld(policy=claims_then_issue)
    path = pending_path(start(aw))
    response = poll(aw, path, "POST", body)
    assert (response.status, body_of(response)["error"]) == (400, "invalid_request")
    # The request is still waiting for its claims.
    assert header(poll(aw, path), "aauth-requirement") == "requirement=claims"


def test_requiring_sub_is_refused_by_the_verdict_itself() -> None:
    with pytest.raises(ValueError):
        RequireClaims(["email", "sub"])


def test_clarification_rounds_then_issue() -> None:
    aw = AsWorld(policy=clarify_then_issue)
    first = start(aw)
    assert header(first, "aauth-requirement") == "requirement=clarification"
    assert body_of(first) == {
        "status": "pending",
        "clarification": "Why do you need it?",
        "timeout": 60,
        "options": ["work", "fun"],
    }
    path = pending_path(first)
    answer = {"action": "clarification_response", "clarification_response": "more"}
    second = poll(aw, path, "POST", answer)
    assert body_of(second)["clarification"] == "Tell me more"
    answer["clarification_response"] = "work"
    assert poll(aw, path, "POST", answer).status == 202
    assert poll(aw, path).status == 200


def test_a_clarification_answer_can_lead_to_denial() -> None:
    aw = AsWorld(policy=clarify_then_issue)
    path = pending_path(start(aw))
    poll(aw, path, "POST", {"action": "clarification_response", "clarification_response": "fun"})
    denied = poll(aw, path)
    assert (denied.status, body_of(denied)["error"]) == (403, "denied")
    assert poll(aw, path).status == 410


def test_clarification_rounds_are_capped() -> None:
    aw = AsWorld(policy=always_ask, clarification_rounds=3)
    path = pending_path(start(aw))
    for n in (2, 3):
        reply = poll(
            aw, path, "POST", {"action": "clarification_response", "clarification_response": "x"}
        )
        assert body_of(reply)["clarification"] == f"question {n}?"
    poll(aw, path, "POST", {"action": "clarification_response", "clarification_response": "x"})
    capped = poll(aw, path)
    assert (capped.status, body_of(capped)["error"]) == (403, "denied")
    assert "rounds" in body_of(capped)["detail"]


def test_clarification_timeout_expires_the_request() -> None:
    aw = AsWorld(policy=clarify_then_issue)
    path = pending_path(start(aw))
    aw.clock.advance(61)
    expired = poll(aw, path)
    assert (expired.status, body_of(expired)["error"]) == (408, "expired")


def test_pending_lifetime_expires_the_request() -> None:
    aw = AsWorld(policy=lambda r: RequireApproval(), pending_lifetime=30)
    path = pending_path(start(aw))
    aw.clock.advance(31)
    assert body_of(poll(aw, path))["error"] == "expired"


def test_updated_request_keeps_fixed_claims_and_changes_scope() -> None:
    aw = AsWorld(policy=clarify_then_issue)
    first_body = aw.triple("data.read data.write")
    first = aw.send(aw.token_request(first_body))
    path = pending_path(first)
    presented = aw.world.person_token()
    update = {
        "action": "updated_request",
        "resource_token": aw.resource_token(presented, "data.read"),
        "presented_token": presented,
        "justification": "only reading",
    }
    assert poll(aw, path, "POST", update).status == 202
    token = body_of(poll(aw, path))["auth_token"]
    assert decode_unverified(token).payload["scope"] == "data.read"


def test_updated_request_in_a_sub_agent_flow_stays_bound_to_the_sub_agent() -> None:
    """Digest 7 and 9: an updated pair for a parent-mediated request keeps the sub-agent
    chain the first request proved; the auth token is bound to the sub-agent's key, and a
    new pair naming another key is refused."""
    from aauth_server.tokens.aauth import mint_person_token

    aw = AsWorld(policy=clarify_then_issue)
    sub_key = PrivateKey.generate("Ed25519")
    parent = str(decode_unverified(aw.world.agent_token).payload["sub"])
    sub_token = aw.world.provider.issue_subagent(sub_key.public, parent, "helper")

    def presented_for(key: PrivateKey) -> str:
        return mint_person_token(
            aw.world.ps_key,
            iss=PS_ISSUER,
            aud=RESOURCE,
            sub=PERSON,
            cnf_jwk=key.public,
            now=aw.clock.now(),
            lifetime=3600,
        )

    first = presented_for(sub_key)
    body = {
        "resource_token": aw.resource_token(
            first, "data.read data.write", agent_jkt=sub_key.public.thumbprint
        ),
        "agent_token": aw.world.agent_token,
        "presented_token": first,
        "subagent_token": sub_token,
    }
    response = aw.send(aw.token_request(body))
    assert response.status == 202, response.body
    path = pending_path(response)
    # A new pair bound to the parent's key is not this sub-agent's request.
    other = aw.world.person_token()
    refused = poll(
        aw,
        path,
        "POST",
        {
            "action": "updated_request",
            "resource_token": aw.resource_token(other, "data.read"),
            "presented_token": other,
        },
    )
    assert (refused.status, body_of(refused)["error"]) == (400, "invalid_resource_token")
    again = presented_for(sub_key)
    update = {
        "action": "updated_request",
        "resource_token": aw.resource_token(
            again, "data.read", agent_jkt=sub_key.public.thumbprint
        ),
        "presented_token": again,
        "justification": "only reading",
    }
    assert poll(aw, path, "POST", update).status == 202
    aw.clock.advance(1)
    done = poll(aw, path)
    assert done.status == 200, done.body
    claims = decode_unverified(body_of(done)["auth_token"]).payload
    assert claims["scope"] == "data.read"
    assert claims["cnf"] == {"jwk": sub_key.public.jwk}


def test_updated_request_changing_a_fixed_claim_is_refused() -> None:
    aw = AsWorld(policy=clarify_then_issue)
    path = pending_path(start(aw))
    presented = aw.world.person_token(sub="someone-else")
    update = {
        "action": "updated_request",
        "resource_token": aw.resource_token(presented),
        "presented_token": presented,
    }
    response = poll(aw, path, "POST", update)
    assert (response.status, body_of(response)["error"]) == (400, "invalid_resource_token")
    missing = poll(aw, path, "POST", {"action": "updated_request", "resource_token": "x"})
    assert body_of(missing)["error"] == "invalid_request"


def test_delete_cancels() -> None:
    aw = AsWorld(policy=clarify_then_issue)
    path = pending_path(start(aw))
    assert poll(aw, path, "DELETE").status == 204
    assert poll(aw, path).status == 410
    assert poll(aw, path, "DELETE").status == 410


def test_approval_by_an_operator() -> None:
    def needs_approval(request: AccessRequest) -> Verdict:
        if request.approved is None:
            return RequireApproval()
        return Issue() if request.approved else Deny("operator said no")

    aw = AsWorld(policy=needs_approval)
    first = start(aw)
    assert header(first, "aauth-requirement") == "requirement=approval"
    assert body_of(first) == {"status": "pending"}
    path = pending_path(first)
    aw.server.decide(path.rsplit("/", 1)[1], True)
    assert poll(aw, path).status == 200
    second = pending_path(start(aw))
    asyncio.run(aw.server.adecide(second.rsplit("/", 1)[1], False))
    assert body_of(poll(aw, second))["error"] == "denied"


def test_only_the_ps_that_asked_may_poll() -> None:
    aw = AsWorld(policy=claims_then_issue, trust_any_ps=True, trusted_ps=())
    path = pending_path(start(aw))
    other_key = PrivateKey.generate(kid="other-1")
    docs = {
        OTHER_PS + "/.well-known/aauth-person.json": {
            "issuer": OTHER_PS,
            "jwks_uri": OTHER_PS + "/jwks.json",
        },
        OTHER_PS + "/jwks.json": {"keys": [other_key.public_jwk()]},
    }
    aw.world.extra_documents.update(docs)
    aw.server.discovery = aw.world.discovery()
    aw.server.server_verifier.discovery = aw.server.discovery
    other = ServerSigner(other_key, OTHER_PS, DWK_PERSON, clock=aw.clock)
    for method, body in (("GET", None), ("POST", {"email": "x@y"}), ("DELETE", None)):
        response = poll(aw, path, method, body, signer=other)
        assert (response.status, body_of(response)["error"]) == (404, "not_found")
    # ... and the request is untouched for the right PS.
    assert header(poll(aw, path), "aauth-requirement") == "requirement=claims"
    assert poll(aw, "/pending/" + "x" * 32).status == 404


def test_revoking_the_presented_token_revokes_the_pending_request() -> None:
    aw = AsWorld(policy=lambda r: RequireApproval())
    body = aw.triple()
    path = pending_path(aw.send(aw.token_request(body)))
    jti = str(decode_unverified(body["presented_token"]).payload["jti"])
    aw.server.records.run(aw.server.rec.revoke(PS_ISSUER, jti, exp=2e9, now=0))
    revoked = poll(aw, path)
    assert (revoked.status, body_of(revoked)["error"]) == (403, "revoked")


def test_a_late_delivery_past_every_cap_is_expired() -> None:
    aw = AsWorld(policy=claims_then_issue, pending_lifetime=3600)
    short = aw.world.provider.issue(aw.world.agent_key.public, "assistant", lifetime=300)
    response = aw.send(aw.token_request({**aw.triple(), "agent_token": short}))
    path = pending_path(response)
    poll(aw, path, "POST", {"email": "a@b"})
    aw.clock.advance(301)
    assert body_of(poll(aw, path))["error"] == "expired"


def test_prefer_wait_long_polls_until_the_answer() -> None:
    aw = AsWorld(policy=claims_then_issue)
    path = pending_path(start(aw))
    answer = aw.long_poll_answered(path, {"email": "c@d"})
    # The parked poll wakes on the answer and hands the token out at once.
    assert answer.status == 200 and "auth_token" in body_of(answer)
    assert poll(aw, path).status == 410


def test_a_later_interaction_without_a_page_is_denied() -> None:
    from aauth_server.access import RequireInteraction

    def claims_then_interaction(request: AccessRequest) -> Verdict:
        if "email" not in request.claims:
            return RequireClaims(["email"])
        return RequireInteraction()

    aw = AsWorld(policy=claims_then_interaction, interaction_page=False)
    path = pending_path(start(aw))
    assert poll(aw, path, "POST", {"email": "a@b"}).status == 202
    outcome = poll(aw, path)
    assert (outcome.status, body_of(outcome)["error"]) == (403, "denied")


def test_claims_that_are_not_json_are_server_error() -> None:
    aw = AsWorld(policy=lambda request: Issue(claims={"when": object()}))
    response = aw.send(aw.token_request(aw.triple()))
    assert (response.status, body_of(response)["error"]) == (500, "server_error")


def test_an_operator_cannot_approve_an_expired_request() -> None:
    aw = AsWorld(policy=lambda r: RequireApproval(), pending_lifetime=30)
    path = pending_path(start(aw))
    aw.clock.advance(31)
    with pytest.raises(Exception) as info:
        aw.server.decide(path.rsplit("/", 1)[1], True)
    assert "not waiting for approval" in str(info.value)
    assert body_of(poll(aw, path))["error"] == "expired"
