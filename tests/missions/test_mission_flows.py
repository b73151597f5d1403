"""One mission flow table, run against the PS core (sync and async drivers) and the Starlette-,
Flask- and Django-mounted PS (WSGI and ASGI) through their test clients: every step answers
the same status and the same AAuth error code, and the person's side (consent API) acts on
the PS each adapter built."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.keys.jwk import b64url_decode
from aauth_server.missions import mission_s256
from aauth_server.person import DefaultPolicy, PersonServer
from tests.adapters import (
    harness_person_django,
    harness_person_flask,
    harness_person_starlette,
)
from tests.person.ps_harness import ALICE, PsWorld
from tests.support import PS_ISSUER, RESOURCE

AGENT = "aauth:assistant@agent.example"
OUTSIDE = "https://payments.example"
CODE = re.compile(r'code="([0-9A-Z-]+)"')
CAPS = ["interaction", "clarification"]


@dataclass
class Target:
    name: str
    send: Callable[[PsWorld, HttpRequest], HttpResponse]
    ps: Callable[[PsWorld], PersonServer]


def _core(use_async: bool) -> Target:
    def send(pw: PsWorld, request: HttpRequest) -> HttpResponse:
        if use_async:
            return asyncio.run(pw.app.asend(request))
        return pw.app.send(request)

    return Target("core-async" if use_async else "core-sync", send, lambda pw: pw.ps)


TARGETS = [
    _core(False),
    _core(True),
    Target(
        "starlette",
        lambda pw, r: harness_person_starlette.send(pw.config, r),
        lambda pw: harness_person_starlette.person_server_for(pw.config),
    ),
    Target(
        "flask",
        lambda pw, r: harness_person_flask.send(pw.config, r),
        lambda pw: harness_person_flask.person_server_for(pw.config),
    ),
    Target(
        "django",
        lambda pw, r: harness_person_django.send(pw.config, r),
        lambda pw: harness_person_django.person_server_for(pw.config),
    ),
    Target(
        "django-asgi",
        lambda pw, r: harness_person_django.send(pw.config, r, asgi=True),
        lambda pw: harness_person_django.person_server_for(pw.config),
    ),
]


@dataclass
class Walk:
    pw: PsWorld
    target: Target
    log: list[tuple[str, int, str | None]] = field(default_factory=list)
    s256: str = ""

    @property
    def ps(self) -> PersonServer:
        return self.target.ps(self.pw)

    def send(self, step: str, request: HttpRequest) -> HttpResponse:
        response = self.target.send(self.pw, request)
        body: Any = None
        if response.body and (response.header("content-type") or "").endswith("json"):
            body = json.loads(response.body)
        error = body.get("error") if isinstance(body, dict) else None
        self.log.append((step, response.status, error))
        return response

    def post(self, path: str, body: dict[str, Any]) -> HttpRequest:
        return self.pw.post(path, {"capabilities": CAPS, **body})

    def code_of(self, response: HttpResponse) -> tuple[str, str]:
        assert response.status == 202, response.body
        match = CODE.search(str(response.header("AAuth-Requirement")))
        assert match is not None
        return str(response.header("Location")), match.group(1)

    def poll(self, step: str, location: str, body: dict[str, Any] | None = None) -> HttpResponse:
        self.pw.tick()
        return self.send(step, self.pw.poll(location, body=body))


def walk(target: Target) -> list[tuple[str, int, str | None]]:
    pw = PsWorld(
        policy=DefaultPolicy(mission_scopes=("data.read",)),
        mission_updates="person",
    )
    w = Walk(pw, target)
    ps = w.ps
    cfg = pw.config
    # 1. Proposal: the person approves it (with an edit) on the consent page.
    location, code = w.code_of(
        w.send(
            "propose",
            w.post(
                cfg.mission_path,
                {
                    "description": "# Plan a trip",
                    "tools": [{"name": "WebSearch", "description": "Search"}],
                    "resources": [RESOURCE],
                },
            ),
        )
    )
    view = ps.consent.open(code, ALICE)
    ps.consent.approve(view.pending_id, ALICE, {"description": "# Plan a trip\n\nTwo nights."})
    approval = w.poll("approval", location)
    body = json.loads(approval.body)
    assert mission_s256(b64url_decode(body["mission"])) == body["s256"]
    assert set(body["person_tokens"]) == {RESOURCE}
    w.s256 = s256 = body["s256"]
    person_token = body["person_tokens"][RESOURCE]
    # 2. Inside the mission: granted without asking (person token by the mission, auth
    #    token by the policy's mission scopes).
    w.send("person token inside", pw.person_request(mission_s256=s256))
    w.send("auth token inside", pw.auth_request(pw.resource_token(person_token), person_token))
    # 3. Outside the mission: denied.
    w.send("outside", pw.person_request(OUTSIDE, mission_s256=s256))
    # 4. Permission for an approved tool, an audit record.
    w.send("permission", w.post(cfg.permission_path, {"action": "WebSearch", "mission_s256": s256}))
    w.send("audit", pw.post(cfg.audit_path, {"action": "WebSearch", "mission_s256": s256}))
    # 5. An update the person accepts.
    location, code = w.code_of(
        w.send(
            "update",
            w.post(
                f"{cfg.mission_path}/{s256}", {"action": "update", "description": "Also Osaka."}
            ),
        )
    )
    view = ps.consent.open(code, ALICE)
    ps.consent.approve(view.pending_id, ALICE)
    w.poll("update accepted", location)
    # 6. Suspend: every endpoint naming the mission answers mission_suspended; resume.
    ps.run(ps.missions.suspend_steps(s256, ALICE))
    w.send("suspended person token", pw.person_request(mission_s256=s256))
    w.send("suspended audit", pw.post(cfg.audit_path, {"action": "x", "mission_s256": s256}))
    ps.run(ps.missions.resume_steps(s256, ALICE))
    w.send("resumed", pw.person_request(mission_s256=s256))
    # 7. Completion: a follow-up reaches the agent as a clarification; then accepted.
    location, code = w.code_of(
        w.send(
            "completion",
            w.post(f"{cfg.mission_path}/{s256}", {"action": "completion", "summary": "Booked."}),
        )
    )
    view = ps.consent.open(code, ALICE)
    ps.consent.ask(view.pending_id, ALICE, "The hotel too?")
    asked = w.poll("follow-up", location)
    assert json.loads(asked.body)["clarification"] == "The hotel too?"
    reply = {"action": "clarification_response", "clarification_response": "Yes."}
    w.poll("answer", location, reply)
    ps.consent.approve(view.pending_id, ALICE)
    done = w.poll("completed", location)
    assert json.loads(done.body)["termination_reason"] == "completed"
    w.send("after completion", pw.person_request(mission_s256=s256))
    # 8. The completion shape of before -11, on a second mission.
    claims = {"iss": "https://agent.example", "sub": AGENT}
    pw.clock.advance(1)
    second = ps.missions.approve(
        agent_issuer=claims["iss"], agent=claims["sub"], person=ALICE, description="Second"
    )
    legacy = {
        "type": "completion",
        "summary": "Done.",
        "mission": {"approver": PS_ISSUER, "s256": second.s256},
        "capabilities": CAPS,
    }
    location, code = w.code_of(w.send("legacy completion", pw.post(cfg.interaction_path, legacy)))
    view = ps.consent.open(code, ALICE)
    ps.consent.approve(view.pending_id, ALICE)
    w.poll("legacy completed", location)
    # 9. Errors of the mission URL.
    w.send(
        "unknown mission",
        w.post(f"{cfg.mission_path}/{'A' * 43}", {"action": "update", "description": "x"}),
    )
    w.send("malformed mission", w.post(f"{cfg.mission_path}/nope", {"action": "update"}))
    w.send("no action", w.post(f"{cfg.mission_path}/{second.s256}", {}))
    return w.log


EXPECTED = [
    ("propose", 202, None),
    ("approval", 200, None),
    ("person token inside", 200, None),
    ("auth token inside", 200, None),
    ("outside", 403, "denied"),
    ("permission", 200, None),
    ("audit", 201, None),
    ("update", 202, None),
    ("update accepted", 200, None),
    ("suspended person token", 403, "mission_suspended"),
    ("suspended audit", 403, "mission_suspended"),
    ("resumed", 200, None),
    ("completion", 202, None),
    ("follow-up", 202, None),
    ("answer", 202, None),
    ("completed", 200, None),
    ("after completion", 403, "mission_terminated"),
    ("legacy completion", 202, None),
    ("legacy completed", 200, None),
    ("unknown mission", 404, "mission_not_found"),
    ("malformed mission", 400, "invalid_request"),
    ("no action", 400, "invalid_request"),
]


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_every_adapter_walks_the_same_mission_flow(target: Target) -> None:
    assert walk(target) == EXPECTED
