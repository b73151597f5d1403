"""Missions at the PS (digest 8.3-8.6, 6.4): the blob and its s256, the two states, the
mission log, and every PS endpoint given a mission_s256: the token endpoints stamp an
active mission, and every endpoint answers 404 mission_not_found / 403 mission_terminated
(the interaction endpoint's mission error included), through both drivers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aauth_server.keys.jwk import b64url_decode, b64url_encode
from aauth_server.missions import Mission, mission_s256
from aauth_server.person import DefaultPolicy
from aauth_server.storage.redis import AsyncRedisStore, RedisStore
from aauth_server.tokens.jwt import decode_unverified
from tests.person.ps_harness import ALICE, PsWorld, Sender, body_of, sender
from tests.person.test_relay import INTERACTION, Env
from tests.postgres_server import fresh_database
from tests.redis_server import ensure_redis
from tests.storage.conftest import delete_prefix
from tests.support import RESOURCE

AGENT = "aauth:assistant@agent.example"
PLAN = "# Plan a trip\n\nBook flights and a hotel in *Kyoto*."
CODE = re.compile(r'code="([0-9A-Z-]+)"')
UNKNOWN = b64url_encode(hashlib.sha256(b"no such mission").digest())


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def world(mode: str, **overrides: Any) -> tuple[PsWorld, Sender]:
    overrides.setdefault(
        "policy",
        DefaultPolicy(auto_approve_agents=(AGENT,), auto_approve_scopes=("data.read",)),
    )
    pw = PsWorld(**overrides)
    pw.bind()
    return pw, sender(pw.app, mode)


def approve(pw: PsWorld, *, agent: str | None = None, **kw: Any) -> Mission:
    claims = decode_unverified(pw.world.agent_token).payload
    return pw.ps.missions.approve(
        agent_issuer=str(claims["iss"]),
        agent=agent or str(claims["sub"]),
        person=kw.pop("person", ALICE),
        description=kw.pop("description", PLAN),
        **kw,
    )


def problem_of(response: Any, status: int, error: str) -> dict[str, Any]:
    assert response.status == status, response.body
    assert response.header("content-type") == "application/problem+json"
    body: dict[str, Any] = body_of(response)
    assert body["error"] == error, body
    return body


def claims_of(token: str) -> dict[str, Any]:
    return dict(decode_unverified(token).payload)


def now_dt(pw: PsWorld) -> datetime:
    return datetime.fromtimestamp(pw.clock.now(), UTC)


# -- the mission itself -------------------------------------------------------------------------


def test_the_approval_hashes_exactly_the_bytes_it_returns_and_serves() -> None:
    pw = PsWorld()
    until = now_dt(pw) + timedelta(days=3)
    tools = [{"name": "WebSearch", "description": "Search the web"}]
    mission = approve(pw, expires_at=until, tools=tools, resources=[RESOURCE])
    body = mission.approval(capabilities=["interaction"], person_tokens={RESOURCE: "eyJ.x.y"})
    blob = b64url_decode(body["mission"])
    assert body["s256"] == b64url_encode(hashlib.sha256(blob).digest()) == mission.s256
    assert mission_s256(blob) == mission.s256
    assert body["capabilities"] == ["interaction"]  # outside the blob and its digest
    assert body["person_tokens"] == {RESOURCE: "eyJ.x.y"}
    doc = json.loads(blob)
    assert doc == {
        "agent": AGENT,
        "approved_at": now_dt(pw).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "description": PLAN,
        "expires_at": until.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "approved_tools": tools,
        "approved_resources": [RESOURCE],
    }
    assert "approver" not in doc  # -11: the mission is (this PS, s256)
    stored = pw.ps.missions.get(mission.s256)
    assert stored is not None and stored.blob == blob and stored.active
    assert stored.expires_at == until.timestamp()
    # approved_at to the microsecond makes two approvals of one plan two missions.
    pw.clock.advance(0.000001)
    assert approve(pw).s256 != approve(PsWorld()).s256 != mission.s256


def test_a_mission_needs_a_description_and_aware_times() -> None:
    pw = PsWorld()
    with pytest.raises(ValueError, match="description"):
        approve(pw, description="  ")
    with pytest.raises(ValueError, match="timezone"):
        approve(pw, expires_at=datetime(2030, 1, 1))


def test_termination_is_final_and_keeps_its_first_reason() -> None:
    pw = PsWorld()
    mission = approve(pw)
    ended = pw.ps.missions.terminate(mission.s256, "completed")
    assert (ended.state, ended.termination_reason) == ("terminated", "completed")
    again = pw.ps.missions.terminate(mission.s256, "revoked")
    assert again.termination_reason == "completed"
    with pytest.raises(LookupError):
        pw.ps.missions.terminate(UNKNOWN)
    with pytest.raises(LookupError):
        pw.ps.missions.terminate("not an s256")
    events = [entry["event"] for entry in pw.ps.missions.history(mission.s256)]
    assert events == ["approved", "terminated"]


# -- token endpoints ------------------------------------------------------------------------------


def test_a_person_token_carries_the_active_mission_and_the_log_records_it(mode: str) -> None:
    pw, send = world(mode)
    mission = approve(pw)
    response = send(pw.person_request(mission_s256=mission.s256))
    assert response.status == 200, response.body
    token = body_of(response)["person_token"]
    assert claims_of(token)["mission_s256"] == mission.s256
    history = pw.ps.missions.history(mission.s256)
    assert [(e["event"], e.get("decision"), e.get("actor")) for e in history] == [
        ("approved", None, ALICE),
        ("decision", "granted", "policy"),
        ("token_issued", None, None),
    ]
    assert history[1]["agent"] == AGENT and history[1]["scope"] == []
    assert history[-1]["kind"] == "person" and history[-1]["resource"] == RESOURCE
    assert history[-1]["jti"] == claims_of(token)["jti"]
    assert [e["seq"] for e in history] == [1, 2, 3]


def test_the_auth_token_carries_the_mission_of_the_resource_token(mode: str) -> None:
    pw, send = world(mode)
    mission = approve(pw)
    presented = pw.person_token(mission_s256=mission.s256)
    response = send(pw.auth_request(pw.resource_token(presented), presented))
    assert response.status == 200, response.body
    assert claims_of(body_of(response)["auth_token"])["mission_s256"] == mission.s256
    issued = pw.ps.missions.history(mission.s256)[-1]
    assert (issued["event"], issued["kind"], issued["scope"]) == (
        "token_issued",
        "auth",
        ["data.read"],
    )


def test_tokens_never_outlive_the_mission(mode: str) -> None:
    pw, send = world(mode)
    mission = approve(pw, expires_at=now_dt(pw) + timedelta(seconds=600))
    body = body_of(send(pw.person_request(mission_s256=mission.s256)))
    assert body["expires_in"] == 600
    assert claims_of(body["person_token"])["exp"] == int(pw.clock.now()) + 600
    presented = body["person_token"]
    auth = body_of(send(pw.auth_request(pw.resource_token(presented), presented)))
    assert auth["expires_in"] == 600


def test_the_policy_sees_the_mission(mode: str) -> None:
    seen: list[Mission | None] = []

    class Recording(DefaultPolicy):
        def decide(self, request: Any) -> Any:
            seen.append(request.mission)
            return super().decide(request)

    pw, send = world(mode, policy=Recording(auto_approve_agents=(AGENT,)))
    open_ended = approve(pw)
    assert send(pw.person_request(mission_s256=open_ended.s256)).status == 200
    assert send(pw.person_request()).status == 200
    assert seen[0] is not None and seen[0].s256 == open_ended.s256
    assert seen[1] is None
    # A person token for one of the mission's approved resources needs no policy at all.
    pw.clock.advance(1)
    scoped = approve(pw, resources=[RESOURCE])
    assert send(pw.person_request(mission_s256=scoped.s256)).status == 200
    assert len(seen) == 2
    assert pw.ps.missions.history(scoped.s256)[1]["actor"] == "mission"


# -- mission errors on every endpoint -------------------------------------------------------------


def _requests(pw: PsWorld, s256: str) -> dict[str, Any]:
    presented = pw.person_token(mission_s256=s256)
    return {
        "person": pw.person_request(mission_s256=s256),
        "auth": pw.auth_request(pw.resource_token(presented), presented),
        "interaction": pw.post(pw.config.interaction_path, {**INTERACTION, "mission_s256": s256}),
    }


@pytest.mark.parametrize("reason", ["completed", "revoked", "superseded", "a-reason-of-our-own"])
def test_a_terminated_mission_answers_mission_terminated_everywhere(mode: str, reason: str) -> None:
    pw, send = world(mode)
    mission = approve(pw)
    pw.ps.missions.terminate(mission.s256, reason)
    for name, request in _requests(pw, mission.s256).items():
        body = problem_of(send(request), 403, "mission_terminated")
        assert body["mission_status"] == "terminated", name
        assert body["termination_reason"] == reason, name


def test_an_expired_mission_is_terminated_expired(mode: str) -> None:
    pw, send = world(mode)
    mission = approve(pw, expires_at=now_dt(pw) + timedelta(seconds=60))
    assert send(pw.person_request(mission_s256=mission.s256)).status == 200
    pw.tick(60)
    for request in _requests(pw, mission.s256).values():
        body = problem_of(send(request), 403, "mission_terminated")
        assert body["termination_reason"] == "expired"
    stored = pw.ps.missions.get(mission.s256)
    assert stored is not None and (stored.state, stored.termination_reason) == (
        "terminated",
        "expired",
    )
    assert pw.ps.missions.history(mission.s256)[-1]["event"] == "terminated"


def test_unknown_and_other_agents_missions_answer_alike(mode: str) -> None:
    pw, send = world(mode)
    theirs = approve(pw, agent="aauth:other@agent.example")
    for name in ("person", "auth", "interaction"):
        answers = []
        for s256 in (UNKNOWN, theirs.s256):
            response = send(_requests(pw, s256)[name])
            problem_of(response, 404, "mission_not_found")
            answers.append((response.headers, response.body))
        assert answers[0] == answers[1], name
    # Nothing of the other agent's mission was logged for this agent's attempts.
    assert [e["event"] for e in pw.ps.missions.history(theirs.s256)] == ["approved"]


def test_a_mission_of_another_person_is_not_found(mode: str) -> None:
    pw, send = world(mode)
    mission = approve(pw, person="bob")
    problem_of(send(pw.person_request(mission_s256=mission.s256)), 404, "mission_not_found")


@pytest.mark.parametrize("value", ["abc", 7, "", "A" * 44, "+" * 43])
def test_a_malformed_mission_s256_is_invalid_request(mode: str, value: Any) -> None:
    pw, send = world(mode)
    for name, request in {
        "person": pw.person_request(mission_s256=value),
        "interaction": pw.post(pw.config.interaction_path, {**INTERACTION, "mission_s256": value}),
    }.items():
        problem_of(send(request), 400, "invalid_request")


def test_ending_a_mission_revokes_its_pending_requests(mode: str) -> None:
    pw, send = world(mode, policy=DefaultPolicy())  # everything is asked of the person
    mission = approve(pw)
    started = send(pw.person_request(mission_s256=mission.s256))
    assert started.status == 202
    location = str(started.header("Location"))
    pw.ps.missions.terminate(mission.s256, "revoked")
    pw.tick()
    body = problem_of(send(pw.poll(location)), 403, "revoked")
    assert "mission" in body["detail"]
    pw.tick()
    problem_of(send(pw.poll(location)), 410, "gone")


def test_the_mission_log_records_the_persons_and_the_agents_side(mode: str) -> None:
    pw, send = world(mode, policy=DefaultPolicy())
    mission = approve(pw)
    started = send(pw.person_request(mission_s256=mission.s256))
    assert started.status == 202
    location = str(started.header("Location"))
    code = CODE.search(str(started.header("AAuth-Requirement")))
    assert code is not None
    view = pw.ps.consent.open(code.group(1), ALICE)
    # The consent page learns which mission the request belongs to.
    assert view.mission is not None and view.mission.s256 == mission.s256
    assert view.mission.description == PLAN
    aview = asyncio.run(pw.ps.consent.aview(view.pending_id, ALICE))
    assert aview.mission is not None and aview.mission.s256 == mission.s256
    assert pw.ps.consent.view(view.pending_id, ALICE).mission == view.mission
    pw.ps.consent.ask(view.pending_id, ALICE, "Which *calendar*?")
    pw.tick()
    answer = {"action": "clarification_response", "clarification_response": "work"}
    assert send(pw.poll(location, body=answer)).status == 202
    pw.ps.consent.approve(view.pending_id, ALICE)
    pw.tick()
    delivered = send(pw.poll(location))
    assert delivered.status == 200, delivered.body
    assert claims_of(body_of(delivered)["person_token"])["mission_s256"] == mission.s256
    history = pw.ps.missions.history(mission.s256)
    assert [(e["event"], e.get("decision"), e.get("actor")) for e in history] == [
        ("approved", None, ALICE),
        ("decision", "asked", "policy"),
        ("person_clarification_asked", None, "person"),
        ("agent_clarification_response", None, None),
        ("decision", "granted", "person"),
        ("token_issued", None, None),
    ]
    assert history[2]["question"] == "Which *calendar*?" and history[3]["answer"] == "work"
    assert {e.get("pending") for e in history[2:5]} == {view.pending_id}


# -- the interaction endpoint within a mission ----------------------------------------------------


@pytest.mark.parametrize("mode_name", ["sync", "async"])
def test_relays_within_a_mission_go_to_the_mission_log(mode_name: str) -> None:
    env = Env(mode_name)
    env.w.bind()
    mission = approve(env.w)
    # No channel reaches alice yet: the refusal is logged in the mission too.
    refused = env.ask(
        {**INTERACTION, "capabilities": ["interaction"], "mission_s256": mission.s256}
    )
    problem_of(refused, 424, "interaction_unavailable")
    env.present()
    relayed = env.ask({**INTERACTION, "mission_s256": mission.s256})
    assert relayed.status == 202, relayed.body
    entries = [e for e in env.w.ps.missions.history(mission.s256) if e["event"] == "relay"]
    assert [e["outcome"] for e in entries] == ["interaction_unavailable", "relayed via ps-page"]
    assert {e["agent"] for e in entries} == {AGENT}
    env.w.ps.missions.terminate(mission.s256, "completed")
    body = problem_of(
        env.ask({**INTERACTION, "mission_s256": mission.s256}), 403, "mission_terminated"
    )
    assert body["termination_reason"] == "completed"


# -- on PostgreSQL records beside a real Redis ----------------------------------------------------


def test_missions_and_concurrent_log_entries_on_postgresql_and_redis() -> None:
    url = ensure_redis()
    prefix = "aauth-test-" + uuid.uuid4().hex
    with fresh_database() as database:
        pw = PsWorld(
            store=RedisStore.from_url(url, prefix=prefix),
            async_store=AsyncRedisStore.from_url(url, prefix=prefix),
            records=database,
            records_migrate=True,
        )
        try:
            mission = approve(pw)
            missions = pw.ps.missions

            def append(n: int) -> None:
                for i in range(10):
                    pw.ps.run(missions.log_steps(mission.s256, {"event": "note", "n": n, "i": i}))

            threads = [threading.Thread(target=append, args=(n,)) for n in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            history = missions.history(mission.s256)
            notes = {(e["n"], e["i"]) for e in history if e["event"] == "note"}
            assert notes == {(n, i) for n in range(8) for i in range(10)}  # none overwritten
            assert [e["seq"] for e in history] == list(range(1, 82))

            async def end() -> Mission:
                try:
                    return await missions.aterminate(mission.s256, "completed")
                finally:
                    await pw.ps.aclose()

            assert asyncio.run(end()).termination_reason == "completed"
            stored = missions.get(mission.s256)
            assert stored is not None and stored.blob == mission.blob and not stored.active
        finally:
            pw.ps.close()
            delete_prefix(url, prefix)
