"""Whole PS flows at the core level: interaction, consent, clarification, delivery, long polls,
exactly-once delivery, and every polling error of digest 5.6, through both drivers."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest

from aauth_server.errors import AAuthError
from aauth_server.keys.jwk import PrivateKey
from aauth_server.person import DefaultPolicy, InvalidCode
from aauth_server.tokens.aauth import TYP_AUTH, TYP_PERSON, check_claims, check_header
from aauth_server.tokens.jwt import decode_unverified, verify_jwt_signature
from tests.person.ps_harness import (
    ALICE,
    RESOURCE_DESCRIPTION,
    RESOURCE_NAME,
    PsWorld,
    Sender,
    body_of,
    sender,
)
from tests.support import PS_ISSUER, RESOURCE, SCOPES

CODE = re.compile(r'code="([^"]+)"')
AGENT = "aauth:assistant@agent.example"


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make(mode: str, **overrides: Any) -> tuple[PsWorld, Sender]:
    pw = PsWorld(**overrides)
    return pw, sender(pw.app, mode)


def claims_of(pw: PsWorld, token: str, typ: str) -> dict[str, Any]:
    jwt = decode_unverified(token)
    check_header(jwt, typ)
    verify_jwt_signature(jwt, pw.world.ps_key.public)
    return dict(check_claims(jwt, typ=typ, now=pw.clock.now(), audience=RESOURCE))


def start(pw: PsWorld, send: Sender, request: Any = None) -> tuple[str, str]:
    """Send a token request that needs the person; return (Location, code)."""
    response = send(request or pw.person_request())
    assert response.status == 202, response.body
    match = CODE.search(response.header("aauth-requirement") or "")
    assert match
    return response.header("location") or "", match.group(1)


def error_of(response: Any, status: int, error: str) -> None:
    assert response.status == status, response.body
    assert body_of(response)["error"] == error


# -- the whole story --------------------------------------------------------------------------


def test_person_then_auth_token_flow_with_clarification(mode: str) -> None:
    pw, send = make(mode)
    location, code = start(
        pw, send, pw.person_request(justification="Plan a *trip*", device="laptop")
    )
    view = pw.ps.consent.open(code, ALICE)
    assert view.state == "interacting" and view.kind == "person" and view.binds_agent
    assert (view.agent, view.agent_issuer, view.resource) == (
        AGENT,
        "https://agent.example",
        RESOURCE,
    )
    assert (view.resource_name, view.resource_description) == (RESOURCE_NAME, RESOURCE_DESCRIPTION)
    assert (view.justification, view.device, view.platform) == ("Plan a *trip*", "laptop", None)
    assert [v.pending_id for v in pw.ps.consent.pending_for(ALICE)] == [view.pending_id]

    pw.ps.consent.ask(
        view.pending_id, ALICE, "Which calendar?", options=["work", "home"], timeout=120
    )
    pw.tick()
    asked = send(pw.poll(location))
    assert asked.status == 202
    assert asked.header("aauth-requirement") == "requirement=clarification"
    assert body_of(asked) == {
        "status": "interacting",
        "clarification": "Which calendar?",
        "timeout": 115,
        "options": ["work", "home"],
    }
    answered = send(
        pw.poll(
            location, body={"action": "clarification_response", "clarification_response": "work"}
        )
    )
    assert answered.status == 202 and body_of(answered) == {"status": "interacting"}
    view = pw.ps.consent.view(view.pending_id, ALICE)
    assert view.clarifications == (("Which calendar?", "work"),) and view.rounds_left == 4

    pw.ps.consent.approve(view.pending_id, ALICE)
    pw.tick()
    delivered = send(pw.poll(location))
    assert delivered.status == 200, delivered.body
    person_token = body_of(delivered)["person_token"]
    claims = claims_of(pw, person_token, TYP_PERSON)
    assert claims["sub"] == pw.sub_for(ALICE) and claims["cnf"]["jwk"] == dict(
        pw.world.agent_key.public.jwk
    )
    pw.tick()
    error_of(send(pw.poll(location)), 410, "gone")
    assert pw.ps.consent.pending_for(ALICE) == []

    # The agent is now bound: the auth-token request goes to the same person.
    resource_token = pw.resource_token(person_token, "data.read data.write")
    location, code = start(pw, send, pw.auth_request(resource_token, person_token))
    view = pw.ps.consent.open(code, ALICE)
    assert view.kind == "auth" and not view.binds_agent
    assert view.scopes == (("data.read", SCOPES["data.read"]), ("data.write", SCOPES["data.write"]))
    pw.ps.consent.approve(view.pending_id, ALICE)
    pw.tick()
    delivered = send(pw.poll(location))
    assert delivered.status == 200, delivered.body
    auth = claims_of(pw, body_of(delivered)["auth_token"], TYP_AUTH)
    assert auth["scope"] == "data.read data.write" and auth["sub"] == claims["sub"]
    assert auth["ps"] == auth["iss"] == PS_ISSUER
    pw.tick()
    error_of(send(pw.poll(location)), 410, "gone")


def test_the_async_twins_run_the_same_story() -> None:
    pw = PsWorld()

    async def story() -> None:
        app, consent = pw.app, pw.ps.consent
        response = await app.asend(pw.person_request())
        location = response.header("location") or ""
        code = CODE.search(response.header("aauth-requirement") or "")
        assert code
        view = await consent.aopen(code.group(1), ALICE)
        await consent.aask(view.pending_id, ALICE, "Why?")
        pw.tick()
        reply = {"action": "clarification_response", "clarification_response": "Because"}
        assert (await app.asend(pw.poll(location, body=reply))).status == 202
        assert (await consent.aview(view.pending_id, ALICE)).clarifications == (
            ("Why?", "Because"),
        )
        assert [v.pending_id for v in await consent.apending_for(ALICE)] == [view.pending_id]
        await pw.ps.presence.atouch(ALICE)
        await consent.aapprove(view.pending_id, ALICE)
        pw.tick()
        assert (await app.asend(pw.poll(location))).status == 200
        pw.tick()
        assert (await app.asend(pw.poll(location))).status == 410

    asyncio.run(story())


def test_a_bound_agent_is_recognised_and_auto_approved(mode: str) -> None:
    pw, send = make(mode, policy=DefaultPolicy(auto_approve_agents=(AGENT,)))
    location, code = start(pw, send)
    pw.ps.consent.approve(pw.ps.consent.open(code, ALICE).pending_id, ALICE)
    pw.tick()
    assert send(pw.poll(location)).status == 200
    # A later request, even with a new agent token instance, is decided by the policy at once.
    again = send(
        pw.post("/person", {"resource": "https://other.example"}, token=pw.new_agent_token())
    )
    assert again.status == 200


def test_approval_without_interaction_from_the_open_page(mode: str) -> None:
    pw, send = make(mode)
    pw.bind()
    pw.ps.presence.touch(ALICE)
    response = send(pw.person_request(capabilities=[]))
    assert response.header("aauth-requirement") == "requirement=approval"
    (view,) = pw.ps.consent.pending_for(ALICE)
    assert view.state == "pending" and not view.can_ask
    pw.ps.consent.approve(view.pending_id, ALICE)
    pw.tick()
    assert send(pw.poll(response.header("location") or "")).status == 200


def test_updated_request_replaces_the_scope(mode: str) -> None:
    pw, send = make(mode)
    pw.bind()
    presented = pw.person_token(tenant="acme")
    location, code = start(pw, send, pw.auth_request(pw.resource_token(presented), presented))
    view = pw.ps.consent.open(code, ALICE)
    pw.ps.consent.ask(view.pending_id, ALICE, "Do you need write access?")
    fresh = pw.person_token(tenant="acme")
    tampered = {
        "action": "updated_request",
        "resource_token": pw.resource_token(fresh, "data.write", drop=("tenant",)),
        "presented_token": fresh,
    }
    error_of(send(pw.poll(location, body=tampered)), 400, "invalid_resource_token")
    update = {
        "action": "updated_request",
        "resource_token": pw.resource_token(fresh, "data.write"),
        "presented_token": fresh,
        "justification": "Only write",
    }
    assert send(pw.poll(location, body=update)).status == 202
    view = pw.ps.consent.view(view.pending_id, ALICE)
    assert [s for s, _ in view.scopes] == ["data.write"] and view.justification == "Only write"
    assert view.clarifications == (("Do you need write access?", "Only write"),)
    pw.ps.consent.approve(view.pending_id, ALICE)
    pw.tick()
    auth = claims_of(pw, body_of(send(pw.poll(location)))["auth_token"], TYP_AUTH)
    assert auth["scope"] == "data.write" and auth["tenant"] == "acme"


# -- clarification limits -----------------------------------------------------------------------


def test_clarification_needs_the_capability_and_rounds_left(mode: str) -> None:
    pw, send = make(mode, clarification_rounds=1)
    _, code = start(pw, send, pw.person_request(capabilities=["interaction"]))
    view = pw.ps.consent.open(code, ALICE)
    assert not view.can_ask
    with pytest.raises(AAuthError) as refused:
        pw.ps.consent.ask(view.pending_id, ALICE, "Why?")
    assert (refused.value.status, refused.value.error) == (409, "clarification_unavailable")
    location, code = start(pw, send)
    view = pw.ps.consent.open(code, ALICE)
    pw.ps.consent.ask(view.pending_id, ALICE, "Why?")
    with pytest.raises(AAuthError):
        pw.ps.consent.ask(view.pending_id, ALICE, "And?")  # one question at a time
    reply = {"action": "clarification_response", "clarification_response": "ok"}
    assert send(pw.poll(location, body=reply)).status == 202
    assert pw.ps.consent.view(view.pending_id, ALICE).rounds_left == 0
    with pytest.raises(AAuthError):
        pw.ps.consent.ask(view.pending_id, ALICE, "And?")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"action": "shrug"},
        {"action": "clarification_response"},
        {"action": "clarification_response", "clarification_response": "no question open"},
        {"action": "updated_request", "resource_token": "x", "presented_token": "y"},
    ],
)
def test_bad_pending_posts_are_invalid_requests(mode: str, body: Any) -> None:
    pw, send = make(mode)
    location, _ = start(pw, send)
    error_of(send(pw.poll(location, body=body)), 400, "invalid_request")


def test_an_unanswered_clarification_times_out(mode: str) -> None:
    pw, send = make(mode)
    location, code = start(pw, send)
    view = pw.ps.consent.open(code, ALICE)
    pw.ps.consent.ask(view.pending_id, ALICE, "Why?", timeout=30)
    pw.tick(31)
    error_of(send(pw.poll(location)), 408, "expired")


# -- polling errors (digest 5.6) -------------------------------------------------------------------


def test_denied(mode: str) -> None:
    pw, send = make(mode)
    location, code = start(pw, send)
    pw.ps.consent.deny(pw.ps.consent.open(code, ALICE).pending_id, ALICE)
    pw.tick()
    error_of(send(pw.poll(location)), 403, "denied")
    pw.tick()
    error_of(send(pw.poll(location)), 410, "gone")


def test_abandoned(mode: str) -> None:
    pw, send = make(mode)
    location, code = start(pw, send)
    pw.ps.consent.abandon(pw.ps.consent.open(code, ALICE).pending_id, ALICE)
    pw.tick()
    error_of(send(pw.poll(location)), 403, "abandoned")


def test_revoked_agent_token_while_pending(mode: str) -> None:
    pw, send = make(mode)
    location, code = start(pw, send)
    view = pw.ps.consent.open(code, ALICE)
    assert send(pw.revoke_agent_token()).status == 200
    pw.tick()
    error_of(send(pw.poll(location)), 401, "revoked_jwt")
    fresh = pw.new_agent_token()
    error_of(send(pw.poll(location, token=fresh)), 403, "revoked")
    with pytest.raises(AAuthError):
        pw.ps.consent.approve(view.pending_id, ALICE)


def test_expired(mode: str) -> None:
    pw, send = make(mode, pending_lifetime=60)
    location, _ = start(pw, send)
    pw.tick(61)
    error_of(send(pw.poll(location)), 408, "expired")
    pw.tick()
    error_of(send(pw.poll(location)), 410, "gone")


def test_invalid_code_locks_the_request(mode: str) -> None:
    pw, send = make(mode)
    location, code = start(pw, send)
    pending_id = location.rsplit("/", 1)[1]
    for _ in range(5):
        with pytest.raises(InvalidCode):
            pw.ps.consent.open("0000-0000", ALICE, pending_id=pending_id)
    pw.tick(60)  # the person's own lock has lapsed; the request's has not
    with pytest.raises(InvalidCode):
        pw.ps.consent.open(code, ALICE)
    error_of(send(pw.poll(location)), 410, "invalid_code")


def test_codes_are_single_use_and_rate_limited_per_person(mode: str) -> None:
    pw, send = make(mode)
    _, code = start(pw, send)
    view = pw.ps.consent.open(code.lower().replace("-", ""), ALICE)  # typed sloppily: still ok
    with pytest.raises(InvalidCode) as used:
        pw.ps.consent.open(code, ALICE)
    assert (used.value.status, used.value.error) == (410, "invalid_code")
    _, code = start(pw, send)
    for bad in ("ZZZZ-ZZZZ", "not a code", "", "ZZZZ-ZZZY", "ZZZZ-ZZZX"):
        with pytest.raises(InvalidCode):
            pw.ps.consent.open(bad, "mallory")
    with pytest.raises(InvalidCode):
        pw.ps.consent.open(code, "mallory")  # locked for the minute, right code or not
    pw.tick(60)
    assert pw.ps.consent.open(code, "mallory").pending_id != view.pending_id


def test_slow_down(mode: str) -> None:
    pw, send = make(mode, max_wait=0)  # the long poll below answers at once in both drivers
    location, _ = start(pw, send)
    early = send(pw.poll(location))
    error_of(early, 429, "slow_down")
    assert early.header("retry-after") == "5"
    pw.tick()
    assert send(pw.poll(location)).status == 202
    # A long poll is paced by its own wait, not by Retry-After.
    waited = send(pw.poll(location, wait=10))
    assert waited.status == 202 and waited.header("retry-after") == "5"


def test_cancel_then_gone(mode: str) -> None:
    pw, send = make(mode)
    location, _ = start(pw, send)
    cancelled = send(pw.poll(location, method="DELETE"))
    assert cancelled.status == 204 and cancelled.header("cache-control") == "no-store"
    pw.tick()
    error_of(send(pw.poll(location)), 410, "gone")
    error_of(send(pw.poll(location, method="DELETE")), 410, "gone")


def test_only_the_same_agent_may_poll(mode: str) -> None:
    pw, send = make(mode)
    location, _ = start(pw, send)
    pw.tick()
    other_key = PrivateKey.generate("Ed25519")
    other = pw.world.provider.issue(other_key.public, "assistant")
    error_of(send(pw.poll(location, token=other, key=other_key)), 403, "forbidden")
    stranger = pw.world.provider.issue(pw.world.agent_key.public, "intruder")
    error_of(send(pw.poll(location, token=stranger)), 403, "forbidden")
    assert send(pw.poll(location, token=pw.new_agent_token())).status == 202
    error_of(send(pw.poll(PS_ISSUER + "/pending/unknown-request-id-000")), 404, "not_found")


def test_consent_refuses_other_peoples_requests(mode: str) -> None:
    pw, send = make(mode)
    _, code = start(pw, send)
    view = pw.ps.consent.open(code, ALICE)
    for call in (pw.ps.consent.view, pw.ps.consent.approve, pw.ps.consent.deny):
        with pytest.raises(AAuthError) as refused:
            call(view.pending_id, "bob")
        assert refused.value.status == 404
    pw.ps.consent.deny(view.pending_id, ALICE)
    with pytest.raises(AAuthError) as late:
        pw.ps.consent.approve(view.pending_id, ALICE)
    assert (late.value.status, late.value.error) == (409, "invalid_state")


# -- long polls ---------------------------------------------------------------------------------


def test_prefer_wait_is_woken_by_the_approval() -> None:
    pw = PsWorld()
    location, code = start(pw, pw.app.send)
    pending_id = pw.ps.consent.open(code, ALICE).pending_id

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        began = loop.time()
        poll = asyncio.create_task(pw.app.asend(pw.poll(location, wait=30)))
        for _ in range(20):
            await asyncio.sleep(0)  # let the poll reach its wait
        assert not poll.done()
        await pw.ps.consent.aapprove(pending_id, ALICE)
        response = await poll
        assert response.status == 200, response.body
        return loop.time() - began

    assert asyncio.run(scenario()) < 5


def test_exactly_one_of_fifty_concurrent_pollers_gets_the_token() -> None:
    pw = PsWorld()
    location, code = start(pw, pw.app.send)
    pending_id = pw.ps.consent.open(code, ALICE).pending_id

    async def scenario() -> list[int]:
        polls = [asyncio.create_task(pw.app.asend(pw.poll(location, wait=30))) for _ in range(50)]
        for _ in range(50):
            await asyncio.sleep(0)
        await pw.ps.consent.aapprove(pending_id, ALICE)
        return [r.status for r in await asyncio.gather(*polls)]

    statuses = asyncio.run(scenario())
    assert sorted(statuses) == [200] + [410] * 49


def test_a_long_poll_is_capped_by_max_wait_and_times_out_with_202() -> None:
    pw = PsWorld(max_wait=1)
    location, _ = start(pw, pw.app.send)

    async def scenario() -> tuple[Any, float]:
        loop = asyncio.get_running_loop()
        began = loop.time()
        response = await pw.app.asend(pw.poll(location, wait=30))
        return response, loop.time() - began

    response, elapsed = asyncio.run(scenario())
    assert response.status == 202 and body_of(response) == {"status": "pending"}
    assert 0.9 <= elapsed < 5


def test_the_sync_driver_answers_a_long_poll_at_once_and_paces_it() -> None:
    pw = PsWorld()  # max_wait 30: a sync worker must not park for it
    location, _ = start(pw, pw.app.send)
    pw.tick(5)  # the first 202 asked the agent to wait Retry-After
    response = pw.app.send(pw.poll(location, wait=30))
    assert response.status == 202 and response.header("cache-control") == "no-store"
    # It could not wait, so it counts as a plain poll: the next one inside Retry-After is
    # slowed down, as is `Prefer: wait=0` (no way around the pacing).
    error_of(pw.app.send(pw.poll(location, wait=30)), 429, "slow_down")
    pw.tick(5)
    assert pw.app.send(pw.poll(location, wait=0)).status == 202
    error_of(pw.app.send(pw.poll(location, wait=0)), 429, "slow_down")


def test_a_long_poll_on_an_open_question_answers_at_once_with_it(mode: str) -> None:
    """The question is what the agent waits for: a long poll never holds it back."""
    pw, send = make(mode, max_wait=3)  # a held poll would take 3 s
    location, code = start(pw, send)
    pending_id = pw.ps.consent.open(code, ALICE).pending_id
    pw.ps.consent.ask(pending_id, ALICE, "Which calendar?")
    pw.tick(5)  # the first 202 asked the agent to wait Retry-After
    began = time.monotonic()
    asked = send(pw.poll(location, wait=30))
    assert time.monotonic() - began < 1.5
    assert asked.status == 202, asked.body
    assert asked.header("aauth-requirement") == "requirement=clarification"
    assert body_of(asked) == {"status": "interacting", "clarification": "Which calendar?"}
    # Asking again at once is a busy loop: paced like a plain poll.
    error_of(send(pw.poll(location, wait=30)), 429, "slow_down")
    pw.tick(5)
    reply = {"action": "clarification_response", "clarification_response": "work"}
    assert send(pw.poll(location, body=reply)).status == 202
    # Answered, the long poll waits again (the async driver parks it until max_wait).
    if mode == "async":
        began = time.monotonic()
        assert body_of(send(pw.poll(location, wait=30))) == {"status": "interacting"}
        assert time.monotonic() - began >= 2.9


def test_a_poll_whose_record_cannot_be_read_answers_500_server_error() -> None:
    """The polling table's server_error row: a store failure that is not an outage."""
    pw = PsWorld()
    location, _ = start(pw, pw.app.send)

    from aauth_server.storage.base import StorageError

    def corrupted(kind: str, id: str) -> Any:
        raise StorageError("stored record is not a JSON object")

    pw.ps.store.get = corrupted  # type: ignore[method-assign]
    response = pw.app.send(pw.poll(location))
    error_of(response, 500, "server_error")
    assert "JSON" not in response.body.decode()  # the cause is logged, never sent
