"""The PS side of the four-party flow against a scripted Access Server on real uvicorn: what
the PS sends, how it holds the agent's request while the AS defers, how it answers claims,
clarifications and interactions, and what the agent gets back (both drivers)."""

from __future__ import annotations

from typing import Any

from aauth_server.fields import parse_aauth_requirement
from aauth_server.signatures.signature_key import parse_signature_key
from aauth_server.tokens.jwt import decode_unverified
from tests.federation.harness import ALICE, FedWorld, Policy, Reply, ScriptedAS, body_of
from tests.person.ps_harness import PS_ISSUER, RESOURCE, T0


def test_immediate_token_is_delivered_after_the_checks(fed: FedWorld, access: ScriptedAS) -> None:
    access.on("POST", "/token", access.issued())
    response = fed.ask_token()
    assert response.status == 200, response.body
    body = body_of(response)
    claims = decode_unverified(body["auth_token"]).payload
    assert claims["iss"] == access.origin
    assert claims["sub"] == fed.sub_for()
    assert body["expires_in"] == claims["exp"] - T0
    # What the PS sent: signed as a server (jwks_uri, aauth-person.json), the three tokens.
    (sent,) = access.requests("POST", "/token")
    assert set(sent.body) == {"resource_token", "agent_token", "presented_token"}
    assert sent.body["agent_token"] == fed.world.agent_token
    (member,) = parse_signature_key(sent.headers["signature-key"]).values()
    assert member.scheme == "jwks_uri"
    assert member.params["id"] == PS_ISSUER
    assert member.params["dwk"] == "aauth-person.json"
    covered = sent.headers["signature-input"]
    assert '"content-digest"' in covered and '"content-type"' in covered


def test_presentation_to_the_as_is_recorded(fed: FedWorld, access: ScriptedAS) -> None:
    access.on("POST", "/token", access.issued())
    pt = fed.person_token()
    jti = str(decode_unverified(pt).payload["jti"])
    # The person token as this PS records it when it issues one.
    from aauth_server.records import IssuedToken

    row = IssuedToken(jti=jti, type="person", aud=RESOURCE, iat=T0, exp=T0 + 3600)
    assert fed.ps.records.run(fed.ps.rec.record_issued(row))
    rt = fed.resource_token(pt, aud=access.origin)
    assert fed.send(fed.auth_request(rt, pt)).status == 200
    stored = fed.ps.records.run(fed.ps.rec.issued(jti))
    assert stored is not None and stored.presented_to == access.origin


def test_untrusted_as_stays_invalid_resource_token(fed: FedWorld, access: ScriptedAS) -> None:
    pt = fed.person_token()
    rt = fed.resource_token(pt, aud="https://other-as.example")
    response = fed.send(fed.auth_request(rt, pt))
    assert response.status == 400
    assert body_of(response)["error"] == "invalid_resource_token"
    assert access.requests() == []


def test_trust_hook_admits_an_as(fresh: ScriptedAS) -> None:
    access = fresh
    access.on("POST", "/token", access.issued())
    world = FedWorld(
        access, trusted_access_servers=[], trust_access_server=lambda iss: iss == access.origin
    )
    try:
        assert world.ask_token().status == 200
    finally:
        world.ps.close()


def test_pair_is_verified_before_the_as_is_called(fed: FedWorld, access: ScriptedAS) -> None:
    pt = fed.person_token()
    rt = fed.resource_token(pt, aud=access.origin, presented_jti="another-jti")
    response = fed.send(fed.auth_request(rt, pt))
    assert response.status == 400
    assert body_of(response)["error"] == "invalid_resource_token"
    assert access.requests() == []


def test_person_approval_first_then_the_as(fresh: ScriptedAS) -> None:
    access = fresh
    access.on("POST", "/token", access.issued())
    world = FedWorld(access, policy=Policy(ask=True))
    try:
        response = world.ask_token()
        assert response.status == 202
        assert parse_aauth_requirement(response.header("aauth-requirement")).requirement == (
            "interaction"
        )
        assert access.requests() == []  # the person decides before the AS is asked
        location = response.header("location")
        record_id = location.rsplit("/", 1)[1]
        world.ps.consent.approve(record_id, ALICE)
        got = world.poll_after(location)
        assert got.status == 200, got.body
        assert len(access.requests("POST", "/token")) == 1
        assert world.poll_after(location).status == 410
    finally:
        world.ps.close()


def test_deferral_is_held_and_polled_honouring_retry_after(
    fed: FedWorld, access: ScriptedAS
) -> None:
    access.on("POST", "/token", access.deferred(retry_after=30))
    access.on("GET", access.PENDING, access.issued())
    response = fed.ask_token()
    assert response.status == 202
    location = response.header("location")
    assert location.startswith(PS_ISSUER + "/pending/")
    assert int(response.header("retry-after")) >= 30
    # Before the AS's Retry-After the PS does not poll the AS.
    early = fed.poll_after(location, 10)
    assert early.status == 202
    assert access.requests("GET") == []
    got = fed.poll_after(location, 25)
    assert got.status == 200, got.body
    assert len(access.requests("GET", access.PENDING)) == 1
    assert access.requests("GET")[0].headers["signature-key"].startswith("sig=jwks_uri")


def test_claims_are_answered_from_the_ps_records(fed: FedWorld, access: ScriptedAS) -> None:
    access.on("POST", "/token", access.deferred("claims", required_claims=["email", "name"]))
    access.on("POST", access.PENDING, access.deferred())
    access.on("GET", access.PENDING, access.issued())
    response = fed.ask_token()
    assert response.status == 202
    (answer,) = access.requests("POST", access.PENDING)
    assert answer.body == {
        "action": "claims",
        "claims": {"email": "alice@example.com", "name": "Alice"},
    }
    assert "sub" not in answer.body["claims"]
    assert answer.headers["signature-key"].startswith("sig=jwks_uri")
    assert fed.claims_asked[0].person == ALICE
    got = fed.poll_after(response.header("location"))
    assert got.status == 200, got.body


def test_claim_the_ps_cannot_provide_ends_the_request(fed: FedWorld, access: ScriptedAS) -> None:
    access.on("POST", "/token", access.deferred("claims", required_claims=["phone_number"]))
    response = fed.ask_token()
    assert response.status == 403
    assert body_of(response)["error"] == "denied"
    assert "phone_number" in body_of(response)["detail"]
    assert access.requests("POST", access.PENDING) == []
    assert len(access.requests("DELETE", access.PENDING)) == 1  # cancelled at the AS


def test_as_asking_for_sub_is_refused(fed: FedWorld, access: ScriptedAS) -> None:
    access.on("POST", "/token", access.deferred("claims", required_claims=["sub"]))
    response = fed.ask_token()
    assert response.status == 502
    assert body_of(response)["error"] == "as_unreachable"
    assert access.requests("POST", access.PENDING) == []


def test_clarification_passed_to_the_agent_and_relayed(fed: FedWorld, access: ScriptedAS) -> None:
    access.on(
        "POST",
        "/token",
        access.deferred(
            "clarification",
            clarification="Which project is this for?",
            timeout=120,
            options=["alpha", "beta"],
        ),
    )
    access.on("POST", access.PENDING, access.deferred())
    access.on("GET", access.PENDING, access.issued())
    response = fed.ask_token()
    assert response.status == 202
    assert parse_aauth_requirement(response.header("aauth-requirement")).requirement == (
        "clarification"
    )
    body = body_of(response)
    assert body["clarification"] == "Which project is this for?"
    assert body["options"] == ["alpha", "beta"]
    assert body["timeout"] == 120
    location = response.header("location")
    # Polling before answering repeats the question and does not call the AS.
    again = fed.poll_after(location)
    assert body_of(again)["clarification"] == "Which project is this for?"
    assert access.requests("GET") == []
    fed.tick()
    answered = fed.send(
        fed.poll(
            location,
            body={"action": "clarification_response", "clarification_response": "alpha"},
        )
    )
    assert answered.status == 202
    assert answered.header("aauth-requirement") is None
    (relayed,) = access.requests("POST", access.PENDING)
    assert relayed.body == {
        "action": "clarification_response",
        "clarification_response": "alpha",
    }
    got = fed.poll_after(location)
    assert got.status == 200, got.body


def test_clarification_answered_by_the_ps_hook(fresh: ScriptedAS) -> None:
    access = fresh
    asked: list[Any] = []

    def answer(question: Any) -> str:
        asked.append(question)
        return "For the quarterly report."

    access.on("POST", "/token", access.deferred("clarification", clarification="Why?"))
    access.on("POST", access.PENDING, access.issued())
    world = FedWorld(access, access_clarification=answer)
    try:
        response = world.ask_token()
        assert response.status == 200, response.body
        assert asked[0].question == "Why?" and asked[0].person == ALICE
        (relayed,) = access.requests("POST", access.PENDING)
        assert relayed.body["clarification_response"] == "For the quarterly report."
    finally:
        world.ps.close()


def test_clarification_without_the_capability_is_user_unreachable(
    fed: FedWorld, access: ScriptedAS
) -> None:
    access.on("POST", "/token", access.deferred("clarification", clarification="Why?"))
    rt, pt = fed.tokens()
    response = fed.send(fed.auth_request(rt, pt, capabilities=["interaction"]))
    assert response.status == 403
    assert body_of(response)["error"] == "user_unreachable"


def test_interaction_is_relayed_to_the_agent(fed: FedWorld, access: ScriptedAS) -> None:
    url = access.origin + "/interact"
    access.on(
        "POST",
        "/token",
        access.deferred("interaction", params=f'; url="{url}"; code="ABCD2345"'),
    )
    access.on("GET", access.PENDING, access.deferred(), access.issued())
    response = fed.ask_token()
    assert response.status == 202
    requirement = parse_aauth_requirement(response.header("aauth-requirement"))
    assert requirement.requirement == "interaction"
    assert requirement.params == {"url": url, "code": "ABCD2345"}
    location = response.header("location")
    assert location.startswith(PS_ISSUER)
    still = fed.poll_after(location)
    assert still.status == 202
    got = fed.poll_after(location)
    assert got.status == 200, got.body


def test_updated_request_is_reverified_and_relayed(fed: FedWorld, access: ScriptedAS) -> None:
    access.on("POST", "/token", access.deferred("clarification", clarification="Narrower?"))
    access.on("POST", access.PENDING, access.deferred())
    response = fed.ask_token()
    location = response.header("location")
    pt = fed.person_token()
    rt = fed.resource_token(pt, "data.read", aud=access.origin)
    fed.tick()
    answered = fed.send(
        fed.poll(
            location,
            body={
                "action": "updated_request",
                "resource_token": rt,
                "presented_token": pt,
                "justification": "only reading",
            },
        )
    )
    assert answered.status == 202, answered.body
    (relayed,) = access.requests("POST", access.PENDING)
    assert relayed.body["action"] == "updated_request"
    assert relayed.body["resource_token"] == rt
    # A resource token naming another person is refused before anything is relayed.
    bad = fed.resource_token(pt, "data.read", aud=access.origin, sub="someone-else")
    fed.tick()
    refused = fed.send(
        fed.poll(
            location,
            body={"action": "updated_request", "resource_token": bad, "presented_token": pt},
        )
    )
    assert refused.status == 400


def test_agent_cancel_cancels_at_the_as(fed: FedWorld, access: ScriptedAS) -> None:
    access.on("POST", "/token", access.deferred(retry_after=60))
    access.on("DELETE", access.PENDING, Reply(204))
    response = fed.ask_token()
    location = response.header("location")
    fed.tick()
    gone = fed.send(fed.poll(location, method="DELETE"))
    assert gone.status == 204
    assert len(access.requests("DELETE", access.PENDING)) == 1
    assert fed.poll_after(location).status == 410


def test_unanswered_clarification_past_its_timeout_asks_the_as(
    fed: FedWorld, access: ScriptedAS
) -> None:
    access.on("POST", "/token", access.deferred("clarification", clarification="Why?", timeout=30))
    access.on("GET", access.PENDING, Reply(408, {"error": "expired", "detail": "too late"}))
    location = fed.ask_token().header("location")
    assert fed.poll_after(location, 10).status == 202
    assert access.requests("GET") == []
    late = fed.poll_after(location, 25)
    assert late.status == 408
    assert body_of(late)["error"] == "expired"


def test_a_restarted_ps_picks_the_exchange_up_from_the_store(
    fed: FedWorld, access: ScriptedAS
) -> None:
    from tests.person.ps_harness import PsApp

    access.on("POST", "/token", access.deferred(retry_after=3))
    access.on("GET", access.PENDING, access.issued())
    location = fed.ask_token().header("location")
    # Another worker (or this one after a restart) on the same store and records; the
    # first one stops (its records stay open: they are the in-memory database both use).
    first = fed.ps
    first.halt.stop()
    first.federation.close()
    fed.config.records = first.records
    fed.app = PsApp(fed.config)
    assert fed.ps is not first
    got = fed.poll_after(location)
    assert got.status == 200, got.body


def test_approval_at_the_as_keeps_the_agent_polling(fed: FedWorld, access: ScriptedAS) -> None:
    access.on("POST", "/token", access.deferred("approval", retry_after=2))
    access.on("GET", access.PENDING, access.deferred("approval", retry_after=2), access.issued())
    response = fed.ask_token()
    assert response.status == 202
    assert response.header("aauth-requirement") is None  # nothing for the agent to do
    location = response.header("location")
    assert fed.poll_after(location).status == 202
    assert fed.poll_after(location).status == 200
    assert len(access.requests("GET", access.PENDING)) == 2


def test_updated_request_with_a_broader_scope_is_checked_against_it(
    fed: FedWorld, access: ScriptedAS
) -> None:
    access.on("POST", "/token", access.deferred("clarification", clarification="More?"))
    access.on("POST", access.PENDING, access.deferred())
    location = fed.ask_token().header("location")
    pt = fed.person_token()
    rt = fed.resource_token(pt, "data.read data.write", aud=access.origin)
    fed.tick()
    body = {"action": "updated_request", "resource_token": rt, "presented_token": pt}
    assert fed.send(fed.poll(location, body=body)).status == 202
    # The AS grants what the new resource token asks: within it, so delivered.
    updated = access.requests("POST", access.PENDING)[0]
    access.on("GET", access.PENDING, access.issued(scope="data.read data.write"))
    got = fed.poll_after(location)
    assert got.status == 200, got.body
    assert decode_unverified(body_of(got)["auth_token"]).payload["scope"] == (
        "data.read data.write"
    )
    assert updated.body["resource_token"] == rt


def test_two_polls_at_once_ask_the_as_once(fed: FedWorld, access: ScriptedAS) -> None:
    """Long polls skip the PS's pacing; the record's compare-and-set lets one of them talk
    to the AS while the other answers 202."""
    import threading

    access.on("POST", "/token", access.deferred())
    access.on("GET", access.PENDING, Reply(202, delay=0.5, **_pending_reply(access)))
    location = fed.ask_token().header("location")
    assert location is not None
    fed.tick()
    requests = [fed.poll(location, wait=5) for _ in range(2)]
    answers: list[int] = []

    def poll(request: Any) -> None:
        answers.append(fed.send(request).status)

    threads = [threading.Thread(target=poll, args=(r,)) for r in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(answers) == [202, 202]
    assert len(access.requests("GET", access.PENDING)) == 1


def _pending_reply(access: ScriptedAS) -> dict[str, Any]:
    # Retry-After 30: a second poll that comes late (a loaded machine) is not due either.
    deferred = access.deferred(retry_after=30)
    return {"body": deferred.body, "headers": deferred.headers}


def test_parent_mediated_four_party(fed: FedWorld, access: ScriptedAS) -> None:
    """A sub-agent's request through its parent: the AS gets the parent's agent token and
    the sub-agent token; the PS accepts only an AS token bound to the sub-agent key."""
    from aauth_server.keys.jwk import PrivateKey
    from aauth_server.tokens.aauth import mint_person_token

    sub_key = PrivateKey.generate("Ed25519")
    provider = fed.world.provider
    sub_token = provider.issue_subagent(sub_key.public, provider.agent_id("assistant"), "helper")
    pt = mint_person_token(
        fed.world.ps_key,
        iss=PS_ISSUER,
        aud=RESOURCE,
        sub=fed.sub_for(),
        cnf_jwk=sub_key.public,
        now=fed.clock.now(),
        lifetime=3600,
    )
    rt = fed.resource_token(pt, aud=access.origin, agent_jkt=sub_key.public.thumbprint)
    body = {"resource_token": rt, "presented_token": pt, "subagent_token": sub_token}
    access.on(
        "POST",
        "/token",
        access.issued(cnf_jwk=sub_key.public),
        access.issued(),  # bound to the parent's key: refused
    )
    got = fed.send(fed.auth_request(rt, pt, subagent_token=sub_token))
    assert got.status == 200, got.body
    claims = decode_unverified(body_of(got)["auth_token"]).payload
    assert claims["cnf"]["jwk"]["x"] == sub_key.public.jwk["x"]
    sent = access.requests("POST", "/token")[0]
    assert sent.body["agent_token"] == fed.world.agent_token  # the parent's
    assert sent.body["subagent_token"] == sub_token
    refused = fed.send(fed.auth_request(**{**body, "subagent_token": sub_token}))
    assert refused.status == 502
    assert "another key" in body_of(refused)["detail"]
