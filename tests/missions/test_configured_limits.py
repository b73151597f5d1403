"""Every agent-supplied text the mission, permission and audit endpoints and the interaction
relay read is held to the PS's configured limits (``max_text``, ``max_hint``,
``max_capabilities``), not to constants of their own: over the limit is ``400
invalid_request``, and raising the limit admits the same body.  Both drivers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from aauth_server.http import HttpRequest
from tests.missions.test_mission_endpoint import (
    CAPS,
    PLAN,
    TOOLS,
    at_mission,
    owned,
    problem_of,
    propose,
    world,
)
from tests.person.ps_harness import ALICE, PsWorld
from tests.person.test_relay import INTERACTION, QUESTION

DEFAULT = {"max_text": 4096, "max_hint": 256, "max_capabilities": 16}
RAISED = {"max_text": 9000, "max_hint": 600, "max_capabilities": 40}
TEXT = "t" * 4097  # one over the default max_text
HINT = "h" * 257  # one over the default max_hint
MANY = [f"cap{i}" for i in range(17)]  # one over the default max_capabilities

Build = Callable[[PsWorld], HttpRequest]


def _relay(body: dict[str, Any]) -> Build:
    return lambda pw: pw.post(pw.config.interaction_path, {"capabilities": CAPS, **body})


def _at_owned(body: dict[str, Any]) -> Build:
    return lambda pw: at_mission(pw, owned(pw).s256, body)


def _mission_field(path: str, body: dict[str, Any]) -> Build:
    def build(pw: PsWorld) -> HttpRequest:
        s256 = owned(pw).s256
        return pw.post(
            getattr(pw.config, path), {"mission_s256": s256, "capabilities": CAPS, **body}
        )

    return build


CASES: dict[str, tuple[Build, tuple[int, ...]]] = {
    "proposal description": (lambda pw: propose(pw, description=TEXT), (202,)),
    "proposal tool name": (lambda pw: propose(pw, tools=[{"name": HINT}]), (202,)),
    "proposal tool description": (
        lambda pw: propose(pw, tools=[{"name": "Search", "description": TEXT}]),
        (202,),
    ),
    "proposal capabilities": (lambda pw: propose(pw, capabilities=CAPS + MANY), (202,)),
    "update description": (_at_owned({"action": "update", "description": TEXT}), (202,)),
    "update capabilities": (
        _at_owned({"action": "update", "description": PLAN, "capabilities": CAPS + MANY}),
        (202,),
    ),
    "completion summary": (_at_owned({"action": "completion", "summary": TEXT}), (202,)),
    "permission action": (_mission_field("permission_path", {"action": HINT}), (200, 202)),
    "permission description": (
        _mission_field("permission_path", {"action": "book", "description": TEXT}),
        (200, 202),
    ),
    "audit action": (_mission_field("audit_path", {"action": HINT}), (201,)),
    "audit description": (
        _mission_field("audit_path", {"action": "book", "description": TEXT}),
        (201,),
    ),
    "relay description": (_relay({**INTERACTION, "description": TEXT}), (202,)),
    "relay question": (_relay({**QUESTION, "question": TEXT}), (202,)),
    "relay capabilities": (_relay({**INTERACTION, "capabilities": CAPS + MANY}), (202,)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_field_over_the_configured_limit_is_invalid_request(mode: str, case: str) -> None:
    build, _ = CASES[case]
    pw, send = world(mode, **DEFAULT)
    problem_of(send(build(pw)), 400, "invalid_request")


@pytest.mark.parametrize("case", sorted(CASES))
def test_raising_the_configured_limit_admits_the_field(mode: str, case: str) -> None:
    build, admitted = CASES[case]
    pw, send = world(mode, **RAISED)
    pw.ps.presence.touch(ALICE)  # the relay reaches Alice on her page
    response = send(build(pw))
    assert response.status in admitted, (response.status, response.body)


def test_lowering_max_text_lowers_every_description_limit(mode: str) -> None:
    """The mission description's limit is max_text (once 20 000 of its own)."""
    pw, send = world(mode, max_text=100)
    problem_of(send(propose(pw, description="d" * 101)), 400, "invalid_request")
    assert send(propose(pw, description="d" * 100, tools=TOOLS)).status == 202


__all__ = ["mode"]


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)
