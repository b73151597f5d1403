"""The agent-facing mission surface at the PS, through both drivers: proposal with the person's
edit and a clarification round, approval body and person tokens, update, completion (both
shapes, accepted and followed up), permission, audit, mission-scoped decisions, every mission
error of digest 8.6 and the suspension answer."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aauth_server.http import HttpResponse
from aauth_server.keys.jwk import b64url_decode, b64url_encode
from aauth_server.missions import Mission, mission_s256
from aauth_server.person import DefaultPolicy
from aauth_server.tokens.jwt import decode_unverified
from tests.person.ps_harness import ALICE, PsWorld, Sender, body_of, sender
from tests.person.test_relay import INTERACTION
from tests.support import PS_ISSUER, RESOURCE

AGENT = "aauth:assistant@agent.example"
PLAN = "# Plan a trip\n\nBook flights and a hotel in *Kyoto*."
FLIGHTS = "https://flights.example"
TOOLS = [{"name": "WebSearch", "description": "Search the web"}]
CODE = re.compile(r'code="([0-9A-Z-]+)"')
UNKNOWN = b64url_encode(hashlib.sha256(b"no such mission").digest())
CAPS = ["interaction", "clarification"]


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def world(mode: str, **overrides: Any) -> tuple[PsWorld, Sender]:
    overrides.setdefault(
        "policy", DefaultPolicy(auto_approve_agents=(AGENT,), auto_approve_scopes=("data.read",))
    )
    pw = PsWorld(**overrides)
    pw.bind()
    return pw, sender(pw.app, mode)


def problem_of(response: HttpResponse, status: int, error: str) -> dict[str, Any]:
    assert response.status == status, response.body
    assert response.header("content-type") == "application/problem+json"
    body: dict[str, Any] = body_of(response)
    assert body["error"] == error, body
    return body


def claims_of(token: str) -> dict[str, Any]:
    return dict(decode_unverified(token).payload)


def owned(pw: PsWorld, *, agent: str | None = None, **kw: Any) -> Mission:
    claims = decode_unverified(pw.world.agent_token).payload
    return pw.ps.missions.approve(
        agent_issuer=str(claims["iss"]),
        agent=agent or str(claims["sub"]),
        person=kw.pop("person", ALICE),
        description=kw.pop("description", PLAN),
        **kw,
    )


def started(response: HttpResponse) -> tuple[str, str]:
    assert response.status == 202, response.body
    assert response.header("cache-control") == "no-store"
    code = CODE.search(str(response.header("AAuth-Requirement")))
    assert code is not None
    return str(response.header("Location")), code.group(1)


def propose(pw: PsWorld, **body: Any) -> Any:
    payload = {"description": PLAN, "tools": TOOLS, "resources": [RESOURCE], **body}
    payload.setdefault("capabilities", CAPS)
    return pw.post(pw.config.mission_path, payload)


def at_mission(pw: PsWorld, s256: str, body: dict[str, Any]) -> Any:
    return pw.post(f"{pw.config.mission_path}/{s256}", {"capabilities": CAPS, **body})


# -- proposal and approval (digest 8.2, 8.3) ------------------------------------------------------


def test_a_proposal_is_approved_with_the_persons_edit_and_returns_its_bytes(mode: str) -> None:
    pw, send = world(mode)
    location, code = started(send(propose(pw)))
    view = pw.ps.consent.open(code, ALICE)
    assert view.kind == "mission" and view.proposal is not None
    assert view.proposal == {"description": PLAN, "tools": TOOLS, "resources": [RESOURCE]}
    edited = PLAN + "\n\nNo more than **two** nights."
    pw.ps.consent.approve(view.pending_id, ALICE, {"description": edited})
    pw.tick()
    response = send(pw.poll(location))
    assert response.status == 200, response.body
    body = body_of(response)
    assert set(body) == {"s256", "mission", "capabilities", "person_tokens"}
    blob = b64url_decode(body["mission"])
    assert body["s256"] == b64url_encode(hashlib.sha256(blob).digest()) == mission_s256(blob)
    doc = json.loads(blob)
    assert doc["agent"] == AGENT and doc["description"] == edited
    assert doc["approved_tools"] == TOOLS and doc["approved_resources"] == [RESOURCE]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", doc["approved_at"])
    assert body["capabilities"] == ["interaction"]
    token = body["person_tokens"][RESOURCE]
    claims = claims_of(token)
    assert claims["mission_s256"] == body["s256"] and claims["aud"] == RESOURCE
    stored = pw.ps.missions.get(body["s256"])
    assert stored is not None and stored.blob == blob and stored.active
    # The PS recorded the person token it issued under the mission (for halting it later).
    issued = pw.ps.records.run(pw.ps.rec.issued_where(mission=body["s256"]))
    assert [(t.jti, t.type, t.aud) for t in issued] == [(claims["jti"], "person", RESOURCE)]
    events = [e["event"] for e in pw.ps.missions.history(body["s256"])]
    assert events == ["approved", "description_edited", "token_issued"]
    pw.tick()
    problem_of(send(pw.poll(location)), 410, "gone")


def test_the_person_may_ask_before_approving_a_mission(mode: str) -> None:
    pw, send = world(mode)
    location, code = started(send(propose(pw, resources=None, tools=None)))
    view = pw.ps.consent.open(code, ALICE)
    pw.ps.consent.ask(view.pending_id, ALICE, "Which *dates*?")
    pw.tick()
    asked = send(pw.poll(location))
    assert asked.status == 202 and body_of(asked)["clarification"] == "Which *dates*?"
    assert "requirement=clarification" in str(asked.header("AAuth-Requirement"))
    reply = {"action": "clarification_response", "clarification_response": "May 3-7"}
    assert send(pw.poll(location, body=reply)).status == 202
    assert pw.ps.consent.view(view.pending_id, ALICE).clarifications == (
        ("Which *dates*?", "May 3-7"),
    )
    pw.ps.consent.approve(view.pending_id, ALICE)
    pw.tick()
    body = body_of(send(pw.poll(location)))
    assert "person_tokens" not in body  # no resources proposed, none issued
    assert json.loads(b64url_decode(body["mission"]))["description"] == PLAN


def test_a_denied_proposal_creates_nothing(mode: str) -> None:
    pw, send = world(mode)
    location, code = started(send(propose(pw)))
    view = pw.ps.consent.open(code, ALICE)
    pw.ps.consent.deny(view.pending_id, ALICE)
    pw.tick()
    problem_of(send(pw.poll(location)), 403, "denied")
    assert pw.ps.records.run(pw.ps.rec.missions_of(ALICE)) == []


@pytest.mark.parametrize(
    "body",
    [
        {"description": ""},
        {"description": 7},
        {"description": "x" * 20_001},
        {"tools": "WebSearch"},
        {"tools": [{"description": "no name"}]},
        {"tools": [{"name": "x"}] * 65},
        {"resources": ["http://flights.example"]},
        {"resources": ["https://flights.example/path"]},
        {"resources": "https://flights.example"},
        {"capabilities": "interaction"},
    ],
)
def test_a_malformed_proposal_is_invalid_request(mode: str, body: dict[str, Any]) -> None:
    pw, send = world(mode)
    problem_of(send(propose(pw, **body)), 400, "invalid_request")


def test_a_proposal_must_be_json(mode: str) -> None:
    pw, send = world(mode)
    request = pw.post(
        pw.config.mission_path, b"description=x", headers=[("Content-Type", "text/plain")]
    )
    problem_of(send(request), 400, "invalid_request")


def test_a_proposal_without_a_way_to_the_person_is_user_unreachable(mode: str) -> None:
    pw, send = world(mode)
    problem_of(send(propose(pw, capabilities=[])), 403, "user_unreachable")


# -- update (digest 8.5) -------------------------------------------------------------------------


def test_an_update_the_person_accepts_returns_the_digest_of_its_bytes(mode: str) -> None:
    pw, send = world(mode)
    mission = owned(pw)
    location, code = started(
        send(at_mission(pw, mission.s256, {"action": "update", "description": "Also Osaka."}))
    )
    view = pw.ps.consent.open(code, ALICE)
    assert view.kind == "mission_update" and view.mission is not None
    assert view.mission.s256 == mission.s256
    pw.ps.consent.approve(view.pending_id, ALICE)
    pw.tick()
    body = body_of(send(pw.poll(location)))
    stored = pw.ps.missions.get(mission.s256)
    assert stored is not None and len(stored.updates) == 1
    update = stored.updates[0]
    assert update.s256 == mission_s256(update.blob)
    assert body == {"s256": update.s256}
    assert update.description == "Also Osaka." and update.accepted_by == ALICE
    assert stored.blob == mission.blob  # the blob and its s256 never change
    assert stored.descriptions == (PLAN, "Also Osaka.")


def test_an_update_the_ps_accepts_itself_answers_at_once(mode: str) -> None:
    pw, send = world(mode, mission_updates="accept")
    mission = owned(pw)
    response = send(at_mission(pw, mission.s256, {"action": "update", "description": "Osaka."}))
    assert response.status == 200, response.body
    stored = pw.ps.missions.get(mission.s256)
    assert stored is not None and body_of(response) == {"s256": stored.updates[0].s256}
    assert stored.updates[0].accepted_by == "ps"


# -- completion (digest 8.5), both shapes ----------------------------------------------------------


def _completion(pw: PsWorld, s256: str, shape: str) -> Any:
    summary = "Booked **flights** and the hotel."
    if shape == "mission_endpoint":
        return at_mission(pw, s256, {"action": "completion", "summary": summary})
    body = {
        "type": "completion",
        "summary": summary,
        "mission": {"approver": PS_ISSUER, "s256": s256},
        "capabilities": CAPS,
    }
    return pw.post(pw.config.interaction_path, body)


@pytest.mark.parametrize("shape", ["mission_endpoint", "interaction_endpoint"])
def test_an_accepted_completion_ends_the_mission_completed(mode: str, shape: str) -> None:
    pw, send = world(mode)
    mission = owned(pw)
    location, code = started(send(_completion(pw, mission.s256, shape)))
    view = pw.ps.consent.open(code, ALICE)
    assert view.kind == "completion" and view.proposal == {
        "summary": "Booked **flights** and the hotel."
    }
    pw.ps.consent.approve(view.pending_id, ALICE)
    pw.tick()
    response = send(pw.poll(location))
    assert response.status == 200, response.body
    assert body_of(response) == {
        "s256": mission.s256,
        "mission_status": "terminated",
        "termination_reason": "completed",
    }
    stored = pw.ps.missions.get(mission.s256)
    assert stored is not None and (stored.state, stored.termination_reason) == (
        "terminated",
        "completed",
    )
    body = problem_of(send(pw.person_request(mission_s256=mission.s256)), 403, "mission_terminated")
    assert body["termination_reason"] == "completed"


@pytest.mark.parametrize("shape", ["mission_endpoint", "interaction_endpoint"])
def test_a_follow_up_keeps_the_mission_active_and_reaches_the_agent(mode: str, shape: str) -> None:
    pw, send = world(mode)
    mission = owned(pw)
    location, code = started(send(_completion(pw, mission.s256, shape)))
    view = pw.ps.consent.open(code, ALICE)
    pw.ps.consent.ask(view.pending_id, ALICE, "Did you book the *return* flight?")
    pw.tick()
    asked = send(pw.poll(location))
    assert asked.status == 202
    assert "requirement=clarification" in str(asked.header("AAuth-Requirement"))
    assert body_of(asked)["clarification"] == "Did you book the *return* flight?"
    stored = pw.ps.missions.get(mission.s256)
    assert stored is not None and stored.active
    # The mission stays usable meanwhile.
    assert send(pw.person_request(mission_s256=mission.s256)).status == 200
    reply = {"action": "clarification_response", "clarification_response": "Yes, May 7."}
    assert send(pw.poll(location, body=reply)).status == 202
    pw.ps.consent.approve(view.pending_id, ALICE)
    pw.tick()
    assert body_of(send(pw.poll(location)))["termination_reason"] == "completed"


def test_a_legacy_completion_for_another_ps_is_mission_not_found(mode: str) -> None:
    pw, send = world(mode)
    mission = owned(pw)
    body = {
        "type": "completion",
        "summary": "Done.",
        "mission": {"approver": "https://other-ps.example", "s256": mission.s256},
    }
    problem_of(send(pw.post(pw.config.interaction_path, body)), 404, "mission_not_found")
    bad = {"type": "completion", "summary": "Done.", "mission": "nope"}
    problem_of(send(pw.post(pw.config.interaction_path, bad)), 400, "invalid_request")


# -- the mission URL's errors (digest 8.6) ---------------------------------------------------------


def test_mission_url_errors(mode: str) -> None:
    pw, send = world(mode)
    mission = owned(pw)
    problem_of(send(at_mission(pw, "not-a-digest", {"action": "update"})), 400, "invalid_request")
    problem_of(send(at_mission(pw, mission.s256, {})), 400, "invalid_request")
    problem_of(send(at_mission(pw, mission.s256, {"action": "delete"})), 400, "invalid_request")
    problem_of(
        send(at_mission(pw, mission.s256, {"action": "update", "description": ""})),
        400,
        "invalid_request",
    )
    problem_of(send(at_mission(pw, mission.s256, {"action": "completion"})), 400, "invalid_request")
    pw.clock.advance(1)
    theirs = owned(pw, agent="aauth:other@agent.example")
    answers = []
    for s256 in (UNKNOWN, theirs.s256):
        response = send(at_mission(pw, s256, {"action": "update", "description": "x"}))
        problem_of(response, 404, "mission_not_found")
        answers.append((response.headers, response.body))
    assert answers[0] == answers[1]
    pw.ps.missions.terminate(mission.s256, "revoked")
    body = problem_of(
        send(at_mission(pw, mission.s256, {"action": "completion", "summary": "x"})),
        403,
        "mission_terminated",
    )
    assert body == {
        "error": "mission_terminated",
        "detail": "this mission is no longer active",
        "mission_status": "terminated",
        "termination_reason": "revoked",
    }


def test_an_expired_mission_is_not_ended_by_another_agents_probe(mode: str) -> None:
    """Item 8: ownership first; a probe changes nothing of someone else's mission."""
    pw, send = world(mode)
    until = datetime.fromtimestamp(pw.clock.now(), UTC) + timedelta(seconds=60)
    theirs = owned(pw, agent="aauth:other@agent.example", expires_at=until)
    pw.clock.advance(1)
    unknown_answer = send(pw.person_request(mission_s256=UNKNOWN))
    pw.tick(120)
    probe = send(pw.person_request(mission_s256=theirs.s256))
    problem_of(probe, 404, "mission_not_found")
    assert (probe.headers, probe.body) == (unknown_answer.headers, unknown_answer.body)
    row = pw.ps.records.run(pw.ps.rec.get_mission(theirs.s256))
    assert row is not None and row.status == "active"  # not ended by the probe
    assert [e["event"] for e in pw.ps.missions.history(theirs.s256)] == ["approved"]


# -- permission (digest 8.7) and audit (8.8) -------------------------------------------------------


def test_approved_tools_are_granted_and_others_go_to_the_person(mode: str) -> None:
    pw, send = world(mode)
    mission = owned(pw, tools=TOOLS)
    granted = send(
        pw.post(
            pw.config.permission_path,
            {"action": "WebSearch", "mission_s256": mission.s256, "capabilities": CAPS},
        )
    )
    assert (granted.status, body_of(granted)) == (200, {"permission": "granted"})
    request = {
        "action": "SendEmail",
        "description": "Mail the *itinerary*",
        "parameters": {"to": "alice@example.com"},
        "mission_s256": mission.s256,
        "capabilities": CAPS,
    }
    location, code = started(send(pw.post(pw.config.permission_path, request)))
    view = pw.ps.consent.open(code, ALICE)
    assert view.kind == "permission" and view.proposal is not None
    assert view.proposal["parameters"] == {"to": "alice@example.com"}
    pw.ps.consent.approve(view.pending_id, ALICE)
    pw.tick()
    assert body_of(send(pw.poll(location))) == {"permission": "granted"}
    location, code = started(send(pw.post(pw.config.permission_path, request)))
    view = pw.ps.consent.open(code, ALICE)
    pw.ps.consent.deny(view.pending_id, ALICE)
    pw.tick()
    denied = send(pw.poll(location))
    assert denied.status == 200
    assert body_of(denied) == {"permission": "denied", "reason": "the person declined"}
    entries = [
        (e.get("action"), e["decision"], e["actor"])
        for e in pw.ps.missions.history(mission.s256)
        if e["event"] in ("permission", "decision")
    ]
    assert entries == [
        ("WebSearch", "granted", "mission"),
        ("SendEmail", "asked", "policy"),
        (None, "granted", "person"),
        ("SendEmail", "asked", "policy"),
        (None, "denied", "person"),
    ]


def test_a_policy_may_answer_permissions(mode: str) -> None:
    class Permissive(DefaultPolicy):
        def decide_permission(self, **kw: Any) -> bool | None:
            return kw["action"] == "Read"

    pw, send = world(mode, policy=Permissive())
    for action, answer in (("Read", "granted"), ("Write", "denied")):
        response = send(pw.post(pw.config.permission_path, {"action": action}))
        assert body_of(response)["permission"] == answer
    problem_of(send(pw.post(pw.config.permission_path, {})), 400, "invalid_request")


def test_audit_records_are_appended_and_answer_201(mode: str) -> None:
    pw, send = world(mode)
    mission = owned(pw)
    body = {
        "mission_s256": mission.s256,
        "action": "WebSearch",
        "description": "Looked up flights",
        "parameters": {"q": "KIX"},
        "result": {"hits": 3},
    }
    response = send(pw.post(pw.config.audit_path, body))
    assert (response.status, response.body) == (201, b"")
    entry = pw.ps.missions.history(mission.s256)[-1]
    assert entry["event"] == "audit" and entry["action"] == "WebSearch"
    assert entry["result"] == {"hits": 3} and entry["parameters"] == {"q": "KIX"}
    problem_of(send(pw.post(pw.config.audit_path, {"action": "x"})), 400, "invalid_request")
    problem_of(
        send(pw.post(pw.config.audit_path, {"mission_s256": UNKNOWN, "action": "x"})),
        404,
        "mission_not_found",
    )
    problem_of(
        send(pw.post(pw.config.audit_path, {"mission_s256": mission.s256, "result": []})),
        400,
        "invalid_request",
    )


# -- mission-scoped decisions (item 3) -------------------------------------------------------------


def test_approved_resources_are_granted_and_others_denied_outside_mission_scope(mode: str) -> None:
    pw, send = world(mode, policy=DefaultPolicy())  # the policy alone would ask for everything
    mission = owned(pw, resources=[RESOURCE])
    assert send(pw.person_request(mission_s256=mission.s256)).status == 200
    body = problem_of(send(pw.person_request(FLIGHTS, mission_s256=mission.s256)), 403, "denied")
    assert body["detail"] == "outside mission scope"
    decisions = [
        (e["resource"], e["decision"], e.get("reason"), e["actor"])
        for e in pw.ps.missions.history(mission.s256)
        if e["event"] == "decision"
    ]
    assert decisions == [
        (RESOURCE, "granted", None, "mission"),
        (FLIGHTS, "denied", "outside mission scope", "mission"),
    ]


def test_outside_the_mission_the_person_may_be_asked_instead(mode: str) -> None:
    pw, send = world(mode, policy=DefaultPolicy(), mission_outside_scope="ask")
    mission = owned(pw, resources=[RESOURCE])
    started(send(pw.person_request(FLIGHTS, mission_s256=mission.s256)))


def test_auth_tokens_within_a_mission_follow_the_policys_mission_scopes(mode: str) -> None:
    pw, send = world(mode, policy=DefaultPolicy(mission_scopes=("data.read",)))
    mission = owned(pw, resources=[RESOURCE])
    presented = pw.person_token(mission_s256=mission.s256)
    response = send(pw.auth_request(pw.resource_token(presented), presented))
    assert response.status == 200, response.body
    wider = pw.person_token(mission_s256=mission.s256)
    asked = send(pw.auth_request(pw.resource_token(wider, "data.read data.write"), wider))
    assert asked.status == 202


def test_a_policy_can_query_the_mission_log(mode: str) -> None:
    class AtMostTwice(DefaultPolicy):
        def decide(self, request: Any) -> Any:
            assert request.mission_log is not None
            seen = yield from request.mission_log.count(event="token_issued")
            from aauth_server.person import Approve, Deny

            return Approve() if seen < 2 else Deny("enough for this mission")

    pw, send = world(mode, policy=AtMostTwice())
    mission = owned(pw)
    assert [send(pw.person_request(mission_s256=mission.s256)).status for _ in range(3)] == [
        200,
        200,
        403,
    ]


# -- suspension (our extension) ---------------------------------------------------------------


def test_every_endpoint_naming_a_suspended_mission_answers_mission_suspended(mode: str) -> None:
    pw, send = world(mode)
    mission = owned(pw, tools=TOOLS)
    presented = pw.person_token(mission_s256=mission.s256)
    pw.ps.run(pw.ps.missions.suspend_steps(mission.s256, ALICE))
    requests = {
        "person": pw.person_request(mission_s256=mission.s256),
        "auth": pw.auth_request(pw.resource_token(presented), presented),
        "interaction": pw.post(
            pw.config.interaction_path, {**INTERACTION, "mission_s256": mission.s256}
        ),
        "update": at_mission(pw, mission.s256, {"action": "update", "description": "x"}),
        "completion": at_mission(pw, mission.s256, {"action": "completion", "summary": "x"}),
        "legacy": _completion(pw, mission.s256, "interaction_endpoint"),
        "permission": pw.post(
            pw.config.permission_path, {"action": "WebSearch", "mission_s256": mission.s256}
        ),
        "audit": pw.post(pw.config.audit_path, {"action": "x", "mission_s256": mission.s256}),
    }
    for name, request in requests.items():
        body = problem_of(send(request), 403, "mission_suspended")
        assert body == {
            "error": "mission_suspended",
            "detail": "the person suspended this mission",
            "mission_status": "suspended",
        }, name
    pw.ps.run(pw.ps.missions.resume_steps(mission.s256, ALICE))
    assert send(pw.person_request(mission_s256=mission.s256)).status == 200


def test_pending_requests_of_a_suspended_mission_wait(mode: str) -> None:
    pw, send = world(mode, policy=DefaultPolicy())
    mission = owned(pw)
    location, code = started(send(pw.person_request(mission_s256=mission.s256)))
    view = pw.ps.consent.open(code, ALICE)
    pw.ps.consent.approve(view.pending_id, ALICE)
    pw.ps.run(pw.ps.missions.suspend_steps(mission.s256, ALICE))
    pw.tick()
    waiting = send(pw.poll(location))
    assert waiting.status == 202, waiting.body  # approved, but held while suspended
    pw.ps.run(pw.ps.missions.resume_steps(mission.s256, ALICE))
    pw.tick()
    assert send(pw.poll(location)).status == 200
