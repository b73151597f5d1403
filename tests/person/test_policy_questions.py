"""The PS policy asks the agent a clarification question (issue 9 item 3, digest 7): the
``AskAgent`` decision, the agent's ``202 requirement=clarification``, and its answer reaching
the policy (asked again) and, when the policy then asks the person, the consent page."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pytest

from aauth_server.person import Approve, AskAgent, AskPerson, Decision, Deny, TokenRequest
from aauth_server.person.lifecycle import State
from aauth_server.tokens.aauth import TYP_AUTH, TYP_PERSON
from aauth_server.tokens.jwt import decode_unverified
from tests.person.ps_harness import ALICE, PsWorld, Sender, body_of, sender
from tests.support import RESOURCE

QUESTION = "Which project is this report for?"
CODE = re.compile(r'code="([0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4})"')


@dataclass
class Scripted:
    """Answers with the next decision and records what the policy saw each time."""

    decisions: list[Decision]
    seen: list[TokenRequest] = field(default_factory=list)

    def decide(self, request: TokenRequest) -> Decision:
        self.seen.append(request)
        return self.decisions.pop(0) if len(self.decisions) > 1 else self.decisions[0]


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _world(mode: str, *decisions: Decision, **overrides: Any) -> tuple[PsWorld, Sender, Scripted]:
    policy = Scripted(list(decisions))
    pw = PsWorld(policy=policy, **overrides)
    pw.bind()
    return pw, sender(pw.app, mode), policy


def _asked(response: Any, question: str = QUESTION) -> str:
    assert response.status == 202, response.body
    assert response.header("aauth-requirement") == "requirement=clarification"
    assert body_of(response)["clarification"] == question
    assert body_of(response)["status"] == "pending"  # nobody is at a page
    return str(response.header("location"))


def _answer(pw: PsWorld, send: Sender, location: str, text: str) -> Any:
    body = {"action": "clarification_response", "clarification_response": text}
    return send(pw.poll(location, body=body))


def _auth_request(pw: PsWorld, **kw: Any) -> Any:
    presented = pw.person_token()
    return pw.auth_request(pw.resource_token(presented, "data.read"), presented, **kw)


def test_the_policy_asks_then_approves_on_the_answer(mode: str) -> None:
    pw, send, policy = _world(
        mode, AskAgent(QUESTION, options=("alpha", "beta"), timeout=120), Approve()
    )
    first = send(_auth_request(pw))
    location = _asked(first)
    assert body_of(first)["options"] == ["alpha", "beta"] and body_of(first)["timeout"] == 120
    assert "code=" not in (first.header("aauth-requirement") or "")

    answered = _answer(pw, send, location, "Project *alpha*")
    assert answered.status == 202, answered.body
    assert answered.header("aauth-requirement") is None
    # The policy was asked again, with the answer (agent-asserted, as it came).
    assert [r.clarifications for r in policy.seen] == [(), ((QUESTION, "Project *alpha*"),)]
    pw.tick()
    delivered = send(pw.poll(location))
    assert delivered.status == 200, delivered.body
    token = decode_unverified(body_of(delivered)["auth_token"])
    assert token.header["typ"] == TYP_AUTH and token.payload["scope"] == "data.read"


def test_the_policy_asks_then_denies(mode: str) -> None:
    pw, send, _ = _world(mode, AskAgent(QUESTION), Deny("not for that project"))
    location = _asked(send(pw.person_request()))
    assert _answer(pw, send, location, "Project omega").status == 202
    pw.tick()
    denied = send(pw.poll(location))
    assert denied.status == 403
    assert body_of(denied) == {"error": "denied", "detail": "not for that project"}


def test_the_answer_reaches_the_person_when_the_policy_then_asks_them(mode: str) -> None:
    pw, send, _ = _world(mode, AskAgent(QUESTION), AskPerson())
    location = _asked(send(pw.person_request()))
    answered = _answer(pw, send, location, "Project alpha")
    assert answered.status == 202
    requirement = answered.header("aauth-requirement") or ""
    assert requirement.startswith('requirement=interaction; url="https://ps.example/consent"')
    code = CODE.search(requirement)
    assert code is not None and answered.header("location") == location
    view = pw.ps.consent.open(code.group(1), ALICE)
    assert view.clarifications == ((QUESTION, "Project alpha"),)
    pw.ps.consent.approve(view.pending_id, ALICE)
    pw.tick()
    delivered = send(pw.poll(location))
    assert delivered.status == 200, delivered.body
    assert decode_unverified(body_of(delivered)["person_token"]).header["typ"] == TYP_PERSON


def test_an_agent_without_interaction_waits_for_the_person_s_page(mode: str) -> None:
    pw, send, _ = _world(mode, AskAgent(QUESTION), AskPerson())
    location = _asked(send(pw.person_request(capabilities=["clarification"])))
    answered = _answer(pw, send, location, "Project alpha")
    assert answered.status == 202
    assert answered.header("aauth-requirement") == "requirement=approval"
    (view,) = pw.ps.consent.pending_for(ALICE)
    assert view.clarifications == ((QUESTION, "Project alpha"),)


def test_a_second_question_then_approval(mode: str) -> None:
    pw, send, policy = _world(mode, AskAgent(QUESTION), AskAgent("And the month?"), Approve())
    location = _asked(send(pw.person_request()))
    again = _answer(pw, send, location, "alpha")
    _asked(again, "And the month?")
    assert _answer(pw, send, location, "March").status == 202
    assert policy.seen[-1].clarifications == ((QUESTION, "alpha"), ("And the month?", "March"))
    pw.tick()
    assert send(pw.poll(location)).status == 200


def test_questions_stop_at_the_round_limit(mode: str) -> None:
    pw, send, policy = _world(mode, AskAgent(QUESTION), clarification_rounds=2)
    location = _asked(send(pw.person_request()))
    _asked(_answer(pw, send, location, "one"))
    # Two rounds used: the policy's next AskAgent goes to the person instead.
    final = _answer(pw, send, location, "two")
    assert (final.header("aauth-requirement") or "").startswith("requirement=interaction")
    assert len(policy.seen) == 3


def test_an_agent_without_the_clarification_capability_is_not_asked(mode: str) -> None:
    pw, send, _ = _world(mode, AskAgent(QUESTION))
    response = send(pw.person_request(capabilities=["interaction"]))
    assert response.status == 202
    assert (response.header("aauth-requirement") or "").startswith("requirement=interaction")


def test_an_unanswered_question_times_out(mode: str) -> None:
    pw, send, _ = _world(mode, AskAgent(QUESTION, timeout=30))
    location = _asked(send(pw.person_request()))
    pw.tick(31)
    expired = send(pw.poll(location))
    assert expired.status == 408 and body_of(expired)["error"] == "expired"


def test_the_person_may_decide_while_the_agent_is_questioned(mode: str) -> None:
    pw, send, _ = _world(mode, AskAgent(QUESTION), Approve())
    location = _asked(send(pw.person_request()))
    (view,) = pw.ps.consent.pending_for(ALICE)
    assert view.state == State.QUESTIONED.value
    pw.ps.consent.deny(view.pending_id, ALICE)
    # A late answer finds the request settled: refused, and the denial is delivered.
    late = _answer(pw, send, location, "alpha")
    assert late.status == 400, late.body
    pw.tick()
    assert send(pw.poll(location)).status == 403


def test_an_unbound_agent_is_never_asked_by_the_policy(mode: str) -> None:
    policy = Scripted([AskAgent(QUESTION)])
    pw = PsWorld(policy=policy)
    send = sender(pw.app, mode)
    response = send(pw.person_request(resource=RESOURCE))
    assert (response.header("aauth-requirement") or "").startswith("requirement=interaction")
    assert policy.seen == []


def test_ask_agent_rejects_empty_questions() -> None:
    with pytest.raises(ValueError, match="question"):
        AskAgent("  ")
    with pytest.raises(ValueError, match="timeout"):
        AskAgent(QUESTION, timeout=0)
