"""The cap on a mission's accepted updates (``max_mission_updates``) at the mission endpoint:
updates the PS accepts itself and updates the person approves stop at the cap with
``409 mission_update_limit`` (digest 8.5: a bigger change is a new mission), the cap is per
mission, a full mission is not put to the person, an approval that comes after the mission
filled up is refused to the agent once with that answer, and two parallel updates at
``cap - 1`` on real SQL records get exactly one in."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.missions import Mission
from aauth_server.resource.config import ConfigurationError
from tests.missions.test_mission_endpoint import at_mission, owned, problem_of, started, world
from tests.person.ps_harness import ALICE, PsWorld, Sender, body_of
from tests.records.conftest import database_url

DETAIL = "propose a new mission"


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def update(pw: PsWorld, mission: Mission, text: str) -> HttpRequest:
    request: HttpRequest = at_mission(pw, mission.s256, {"action": "update", "description": text})
    return request


def refused(response: HttpResponse, cap: int) -> None:
    """The answer at the cap, in full."""
    body = problem_of(response, 409, "mission_update_limit")
    assert set(body) == {"error", "detail", "mission_status", "max_updates"}
    assert DETAIL in body["detail"] and f"{cap} accepted updates" in body["detail"]
    assert body["mission_status"] == "active" and body["max_updates"] == cap


def approved_by_person(pw: PsWorld, send: Sender, mission: Mission, text: str) -> str:
    """An update the person approves; the digest the agent's poll collects."""
    location, code = started(send(update(pw, mission, text)))
    view = pw.ps.consent.open(code, ALICE)
    pw.ps.consent.approve(view.pending_id, ALICE)
    pw.tick()
    response = send(pw.poll(location))
    assert response.status == 200, response.body
    digest: str = body_of(response)["s256"]
    return digest


def events(pw: PsWorld, mission: Mission) -> list[tuple[str, Any]]:
    return [
        (e["event"], e.get("description") or e.get("reason"))
        for e in pw.ps.missions.history(mission.s256)
    ]


# -- the PS accepts updates itself ----------------------------------------------------------------


def test_the_ps_accepts_updates_up_to_the_cap_then_answers_mission_update_limit(
    mode: str,
) -> None:
    pw, send = world(mode, mission_updates="accept", max_mission_updates=3)
    mission = owned(pw)
    for n in range(3):
        response = send(update(pw, mission, f"Step {n}."))
        assert response.status == 200, response.body
    refused(send(update(pw, mission, "One step too many.")), 3)
    refused(send(update(pw, mission, "And again.")), 3)  # the answer stays the same
    stored = pw.ps.missions.get(mission.s256)
    assert stored is not None and stored.active  # the mission itself goes on
    assert [u.description for u in stored.updates] == ["Step 0.", "Step 1.", "Step 2."]
    assert [e for e, _ in events(pw, mission)].count("update_accepted") == 3
    # Nothing else changed: token requests and audits naming the mission still work.
    audit = {"mission_s256": mission.s256, "action": "noted"}
    assert send(pw.post(pw.config.audit_path, audit)).status == 201


def test_the_cap_is_per_mission(mode: str) -> None:
    pw, send = world(mode, mission_updates="accept", max_mission_updates=1)
    full = owned(pw)
    assert send(update(pw, full, "Only one.")).status == 200
    refused(send(update(pw, full, "Two.")), 1)
    pw.clock.advance(1)  # another approved_at: another mission of the same agent
    other = owned(pw)
    response = send(update(pw, other, "Its own first."))
    assert response.status == 200, response.body
    stored = pw.ps.missions.get(other.s256)
    assert stored is not None and body_of(response) == {"s256": stored.updates[0].s256}


def test_a_suspended_or_ended_full_mission_answers_its_status_not_the_cap(mode: str) -> None:
    pw, send = world(mode, mission_updates="accept", max_mission_updates=1)
    mission = owned(pw)
    assert send(update(pw, mission, "Only one.")).status == 200
    pw.ps.run(pw.ps.missions.suspend_steps(mission.s256, ALICE))
    problem_of(send(update(pw, mission, "Two.")), 403, "mission_suspended")
    pw.ps.missions.terminate(mission.s256, "revoked")
    problem_of(send(update(pw, mission, "Two.")), 403, "mission_terminated")


# -- the person decides ---------------------------------------------------------------------------


def test_person_approved_updates_count_and_a_full_mission_is_not_put_to_the_person(
    mode: str,
) -> None:
    pw, send = world(mode, max_mission_updates=2)
    mission = owned(pw)
    approved_by_person(pw, send, mission, "Also Osaka.")
    approved_by_person(pw, send, mission, "Also Nara.")
    refused(send(update(pw, mission, "Also Tokyo.")), 2)
    # No pending request was made for it, so nothing waits on the person's list, and the
    # proposal was not logged as one the person could decide.
    assert [v.kind for v in pw.ps.consent.pending_for(ALICE)] == []
    assert ("update_proposed", "Also Tokyo.") not in events(pw, mission)
    stored = pw.ps.missions.get(mission.s256)
    assert stored is not None and len(stored.updates) == 2


def test_an_approval_after_the_mission_filled_up_is_refused_to_the_agent_once(mode: str) -> None:
    pw, send = world(mode, max_mission_updates=1)
    mission = owned(pw)
    # Two updates put to the person while the mission has room for one.
    first, first_code = started(send(update(pw, mission, "Also Osaka.")))
    second, second_code = started(send(update(pw, mission, "Also Nara.")))
    one = pw.ps.consent.open(first_code, ALICE)
    two = pw.ps.consent.open(second_code, ALICE)
    pw.ps.consent.approve(one.pending_id, ALICE)
    pw.ps.consent.approve(two.pending_id, ALICE)  # the person's click is not an error
    pw.tick()
    accepted = send(pw.poll(first))
    assert accepted.status == 200, accepted.body
    refused(send(pw.poll(second)), 1)
    pw.tick()
    problem_of(send(pw.poll(second)), 410, "gone")  # told once, like any outcome
    problem_of(send(pw.poll(first)), 410, "gone")
    stored = pw.ps.missions.get(mission.s256)
    assert stored is not None and stored.active
    assert [u.description for u in stored.updates] == ["Also Osaka."]
    assert body_of(accepted) == {"s256": stored.updates[0].s256}
    # Nothing lost: both proposals are in the log, with the one acceptance and the refusal.
    log = events(pw, mission)
    assert ("update_proposed", "Also Osaka.") in log and ("update_proposed", "Also Nara.") in log
    assert [e for e, _ in log].count("update_accepted") == 1
    assert ("update_refused", "the mission holds its 1 accepted updates") in log


def test_open_update_requests_are_bounded_by_max_pending_per_agent(mode: str) -> None:
    pw, send = world(mode, max_pending_per_agent=2)
    mission = owned(pw)
    started(send(update(pw, mission, "One.")))
    started(send(update(pw, mission, "Two.")))
    problem_of(send(update(pw, mission, "Three.")), 429, "slow_down")


# -- configuration --------------------------------------------------------------------------------


def test_the_default_cap_is_fifty() -> None:
    assert PsWorld().config.max_mission_updates == 50


@pytest.mark.parametrize("value", [0, -3, True, 2.5, "50", None])
def test_max_mission_updates_must_be_a_positive_integer(value: object) -> None:
    with pytest.raises(ConfigurationError, match="max_mission_updates must be a positive integer"):
        PsWorld(max_mission_updates=value)


# -- two parallel updates at cap - 1, on real SQL records ------------------------------------------


@pytest.mark.parametrize("asynchronous", [False, True], ids=["threads", "tasks"])
@pytest.mark.parametrize("backend_name", ["sqlite-file", "postgresql"])
def test_two_parallel_updates_at_cap_minus_one_get_exactly_one_in(
    backend_name: str, asynchronous: bool, tmp_path: Path
) -> None:
    cap = 3
    with database_url(backend_name, tmp_path) as url:
        pw, send = world(
            "sync",
            mission_updates="accept",
            max_mission_updates=cap,
            records=url,
            records_migrate=True,
        )
        try:
            mission = owned(pw)
            for n in range(cap - 1):
                assert send(update(pw, mission, f"Step {n}.")).status == 200
            requests = [update(pw, mission, "Left."), update(pw, mission, "Right.")]
            if asynchronous:

                async def both() -> list[HttpResponse]:
                    try:
                        return list(await asyncio.gather(*(pw.app.asend(r) for r in requests)))
                    finally:
                        await pw.ps.aclose()

                answers = asyncio.run(both())
            else:
                answers = [HttpResponse(0, [], b"")] * 2
                start = threading.Barrier(2)

                def one(k: int) -> None:
                    start.wait()
                    answers[k] = pw.app.send(requests[k])

                threads = [threading.Thread(target=one, args=(k,)) for k in range(2)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
            assert sorted(a.status for a in answers) == [200, 409], [a.body for a in answers]
            refused(next(a for a in answers if a.status == 409), cap)
            stored = pw.ps.missions.get(mission.s256)
            assert stored is not None and len(stored.updates) == cap
            assert [u.seq for u in stored.updates] == list(range(1, cap + 1))
            assert stored.updates[-1].description in ("Left.", "Right.")
        finally:
            pw.ps.close()
