"""Mission Control: the person's pages and the JSON API, behind the login hook, with the
consent pages' CSP and CSRF rules; Suspend / Resume / Revoke, completion proposals (Accept,
Ask a follow-up), the audit timeline newest first and paginated."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any
from urllib.parse import urlencode

import pytest

from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.missions import Mission
from aauth_server.missions.control import MissionControl
from tests.person.test_pages import SECRET, Browser, PagesEnv, make_env
from tests.support import PS_ISSUER

AGENT = "aauth:assistant@agent.example"
PLAN = "# Trip to *Kyoto*\n\n<script>alert(1)</script> [x](javascript:alert(1))"
FLIGHTS = "https://flights.example"


class ControlEnv:
    def __init__(self) -> None:
        self.env: PagesEnv = make_env()
        self.control = MissionControl(
            self.env.ps, authenticate=self.env.login.authenticate, secret=SECRET
        )
        env = self.env
        handlers = (env.ps.handle, env.pages.handle, self.control.handle, env.login.handle)
        ahandlers = (env.ps.ahandle, env.pages.ahandle, self.control.ahandle, env.login.ahandle)

        def send(request: HttpRequest) -> HttpResponse:
            for handler in handlers:
                response = handler(request)
                if response is not None:
                    return response
            return HttpResponse(404)

        async def asend(request: HttpRequest) -> HttpResponse:
            for handler in ahandlers:
                response = await handler(request)
                if response is not None:
                    return response
            return HttpResponse(404)

        env.send = send  # type: ignore[method-assign]
        env.asend = asend  # type: ignore[method-assign]

    def mission(self, person: str = "alice", **kw: Any) -> Mission:
        self.env.world.clock.advance(1)  # type: ignore[attr-defined]
        return self.env.ps.missions.approve(
            agent_issuer="https://agent.example",
            agent=AGENT,
            person=person,
            description=kw.pop("description", PLAN),
            **kw,
        )


@pytest.fixture
def ce() -> ControlEnv:
    return ControlEnv()


@pytest.fixture(params=["sync", "async"])
def use_async(request: pytest.FixtureRequest) -> bool:
    return request.param == "async"


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def test_signing_in_is_required(ce: ControlEnv) -> None:
    browser = Browser(ce.env)
    page = browser.get("/missions")
    assert page.status == 303 and page.header("Location") == "/login?next=%2Fmissions"
    api = browser.get("/missions/api/missions")
    assert api.status == 401 and json.loads(api.body)["error"] == "login_required"


def test_the_index_lists_only_the_persons_missions(ce: ControlEnv, use_async: bool) -> None:
    mine = ce.mission(tools=[{"name": "WebSearch"}])
    theirs = ce.mission(person="bob")
    ce.env.ps.run(ce.env.ps.missions.suspend_steps(mine.s256, "alice"))
    browser = ce.env.logged_in()
    page = browser.get("/missions", use_async=use_async)
    html = page.body.decode()
    assert page.status == 200
    assert "default-src 'none'" in str(page.header("Content-Security-Policy"))
    assert mine.s256 in html and theirs.s256 not in html
    assert '<span class="status suspended">suspended</span>' in html
    assert "<script>alert" not in html
    other = browser.get(f"/missions/{theirs.s256}", use_async=use_async)
    assert other.status == 404  # someone else's mission is no mission


def test_the_mission_page_shows_the_mission_and_its_timeline(ce: ControlEnv) -> None:
    mission = ce.mission(
        tools=[{"name": "WebSearch", "description": "Search the *web*"}], resources=[FLIGHTS]
    )
    ps = ce.env.ps
    ps.run(ps.missions.accept_update_steps(mission.s256, "Also **Osaka**.", "alice"))
    ps.run(
        ps.missions.log_steps(
            mission.s256,
            {
                "event": "decision",
                "kind": "auth",
                "agent": AGENT,
                "resource": "https://payments.example",
                "scope": ["charge"],
                "decision": "denied",
                "reason": "outside mission scope",
                "actor": "mission",
            },
        )
    )
    browser = ce.env.logged_in()
    html = browser.get(f"/missions/{mission.s256}").body.decode()
    assert "<h1>Trip to <em>Kyoto</em></h1>" in html
    assert "<script>alert" not in html and 'href="javascript' not in html
    assert "Also <strong>Osaka</strong>." in html
    assert "<code>WebSearch</code>" in html and FLIGHTS in html
    assert "(agent-asserted)" in html and AGENT in html
    timeline = re.search(r'<ol class="lines" id="timeline">(.*?)</ol>', html, re.S)
    assert timeline is not None
    lines = re.findall(r'data-seq="(\d+)"', timeline.group(1))
    assert lines == ["3", "2", "1"]  # newest first
    assert "payments.example" in timeline.group(1)
    assert "denied (mission)" in timeline.group(1) and "outside mission scope" in timeline.group(1)
    assert ">Suspend</button>" in html and ">Revoke</button>" in html
    assert ">Resume</button>" not in html


def test_the_timeline_is_paginated(ce: ControlEnv) -> None:
    mission = ce.mission()
    for n in range(60):
        ce.env.ps.run(
            ce.env.ps.missions.log_steps(mission.s256, {"event": "audit", "action": f"a{n}"})
        )
    browser = ce.env.logged_in()
    first = browser.get(f"/missions/{mission.s256}").body.decode()
    seqs = [int(s) for s in re.findall(r'data-seq="(\d+)"', first)]
    assert seqs == list(range(61, 11, -1))
    older = re.search(r'href="([^"]+)" id="older"', first)
    assert older is not None
    second = browser.get(older.group(1).replace("&amp;", "&")).body.decode()
    assert [int(s) for s in re.findall(r'data-seq="(\d+)"', second)] == list(range(11, 0, -1))
    assert 'id="older"' not in second and 'id="newest"' in second
    api = json.loads(browser.get(f"/missions/api/missions/{mission.s256}/log?limit=10").body)
    assert [e["seq"] for e in api["entries"]] == list(range(61, 51, -1))
    assert api["next_before"] == 52
    rest = browser.get(f"/missions/api/missions/{mission.s256}/log?limit=100&before=52").body
    assert len(json.loads(rest)["entries"]) == 51 and json.loads(rest)["next_before"] is None


def test_suspend_resume_and_revoke(ce: ControlEnv, use_async: bool) -> None:
    mission = ce.mission()
    browser = ce.env.logged_in()
    page = f"/missions/{mission.s256}"

    def press(label: str) -> str:
        html = browser.get(page, use_async=use_async).body.decode()
        assert f">{label}</button>" in html
        response = browser.post(
            page + "/status", {"csrf": _csrf(html), "action": label.lower()}, use_async=use_async
        )
        assert response.status == 303 and response.header("Location") == page
        state = ce.env.ps.missions.get(mission.s256)
        assert state is not None
        return state.state

    assert press("Suspend") == "suspended"
    html = browser.get(page).body.decode()
    assert ">Resume</button>" in html and ">Suspend</button>" not in html
    assert press("Resume") == "active"
    assert press("Revoke") == "terminated"
    stored = ce.env.ps.missions.get(mission.s256)
    assert stored is not None and stored.termination_reason == "revoked"
    html = browser.get(page).body.decode()
    assert "<button" not in html.split('id="timeline"')[0].split("</h1>")[1].split("<section")[0]
    events = [e["event"] for e in ce.env.ps.missions.history(mission.s256)]
    assert events == ["approved", "suspended", "resumed", "terminated"]
    assert {e.get("actor") for e in ce.env.ps.missions.history(mission.s256)[1:]} == {"alice"}


def test_forms_need_the_token_this_site_and_the_owner(ce: ControlEnv) -> None:
    mission = ce.mission()
    theirs = ce.mission(person="bob")
    browser = ce.env.logged_in()
    page = f"/missions/{mission.s256}"
    token = _csrf(browser.get(page).body.decode())
    for fields, origin in (
        ({"action": "suspend"}, None),
        ({"action": "suspend", "csrf": "forged"}, None),
        ({"action": "suspend", "csrf": token}, "https://evil.example"),
    ):
        assert browser.post(page + "/status", fields, origin=origin).status == 403
    # A token for one mission does not act on another.
    assert (
        browser.post(f"/missions/{theirs.s256}/status", {"action": "revoke", "csrf": token}).status
        == 403
    )
    stranger = Browser(ce.env)
    assert stranger.post(page + "/status", {"action": "revoke", "csrf": token}).status == 303
    assert ce.env.ps.missions.get(mission.s256).active  # type: ignore[union-attr]
    assert ce.env.ps.missions.get(theirs.s256).active  # type: ignore[union-attr]


def _propose_completion(ce: ControlEnv, mission: Mission) -> str:
    env = ce.env
    claims = env.world.agent_token
    assert claims
    env.ps.bindings.bind("https://agent.example", AGENT, "alice")
    body = {
        "action": "completion",
        "summary": "Booked **everything**.",
        "capabilities": ["clarification"],
    }
    request = env.world.signed(
        "POST",
        f"/mission/{mission.s256}",
        body=json.dumps(body).encode(),
        origin=PS_ISSUER,
    )
    env.ps.presence.touch("alice")  # alice has a PS page open: requirement=approval
    response = env.ps.handle(request)
    assert response is not None and response.status == 202, response and response.body
    return str(response.header("Location"))


def test_a_completion_is_accepted_from_mission_control(ce: ControlEnv) -> None:
    mission = ce.mission()
    _propose_completion(ce, mission)
    browser = ce.env.logged_in()
    page = f"/missions/{mission.s256}"
    html = browser.get(page).body.decode()
    assert "Booked <strong>everything</strong>." in html
    assert ">Accept</button>" in html and ">Ask a follow-up</button>" in html
    pending = re.search(r'name="request" value="([^"]+)"', html)
    assert pending is not None
    response = browser.post(
        page + "/completion",
        {"csrf": _csrf(html), "request": pending.group(1), "action": "accept"},
    )
    assert response.status == 303
    stored = ce.env.ps.missions.get(mission.s256)
    assert stored is not None and stored.termination_reason == "completed"


def test_a_follow_up_from_mission_control_reaches_the_agent(ce: ControlEnv) -> None:
    mission = ce.mission()
    location = _propose_completion(ce, mission)
    browser = ce.env.logged_in()
    page = f"/missions/{mission.s256}"
    html = browser.get(page).body.decode()
    pending = re.search(r'name="request" value="([^"]+)"', html)
    assert pending is not None
    response = browser.post(
        page + "/completion",
        {
            "csrf": _csrf(html),
            "request": pending.group(1),
            "action": "followup",
            "question": "And the *museum* tickets?",
        },
    )
    assert response.status == 303
    ce.env.world.clock.advance(10)  # type: ignore[attr-defined]
    poll = ce.env.world.signed("GET", location.removeprefix(PS_ISSUER), origin=PS_ISSUER)
    asked = ce.env.ps.handle(poll)
    assert asked is not None and asked.status == 202
    assert json.loads(asked.body)["clarification"] == "And the *museum* tickets?"
    assert ce.env.ps.missions.get(mission.s256).active  # type: ignore[union-attr]
    html = browser.get(page).body.decode()
    assert "Waiting for the agent" in html


def test_the_json_api(ce: ControlEnv, use_async: bool) -> None:
    mission = ce.mission(resources=[FLIGHTS])
    browser = ce.env.logged_in()
    listed = json.loads(browser.get("/missions/api/missions", use_async=use_async).body)
    assert [m["s256"] for m in listed["missions"]] == [mission.s256]
    detail = json.loads(browser.get(f"/missions/api/missions/{mission.s256}").body)
    assert detail["description"] == PLAN and detail["approved_resources"] == [FLIGHTS]
    assert detail["status"] == "active" and detail["revocations"] == []
    target = f"/missions/api/missions/{mission.s256}/suspend"

    def post(headers: list[tuple[str, str]]) -> HttpResponse:
        request = HttpRequest(
            "POST", ce.env.origin + target, [*browser._headers(), *headers], b"{}"
        )
        return asyncio.run(ce.env.asend(request)) if use_async else ce.env.send(request)

    assert post([("Content-Type", "application/x-www-form-urlencoded")]).status == 403
    assert (
        post([("Content-Type", "application/json"), ("Origin", "https://evil.example")]).status
        == 403
    )
    done = post([("Content-Type", "application/json"), ("Origin", ce.env.origin)])
    assert done.status == 200 and json.loads(done.body)["status"] == "suspended"
    missing = browser.get("/missions/api/missions/" + "A" * 43)
    assert missing.status == 404
    assert browser.get(f"/missions/api/missions/{mission.s256}/nope").status == 404
    assert urlencode  # used by the pages' own links
