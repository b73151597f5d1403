"""The PS serves the interaction endpoint and relay URLs through its own handle()."""

from __future__ import annotations

import json

from tests.person.ps_harness import PsWorld


def test_interaction_endpoint_is_routed_by_the_person_server() -> None:
    ps = PsWorld()
    body = {
        "type": "interaction",
        "url": "https://resource.example/interact",
        "code": "ABCD-2345",
        "capabilities": ["interaction"],
    }
    response = ps.app.send(ps.post("/interaction", body))
    # An unbound agent cannot be relayed: non-terminal 424, the agent directs the user itself.
    assert response.status == 424
    assert json.loads(response.body)["error"] == "interaction_unavailable"
    assert ("POST", "/interaction") in ps.ps.routes()
    assert ("GET", "/relay/") in ps.ps.routes()


def test_interaction_without_capability_is_user_unreachable() -> None:
    ps = PsWorld()
    body = {"type": "question", "question": "Which calendar?", "capabilities": []}
    response = ps.app.send(ps.post("/interaction", body))
    assert response.status == 403
    assert json.loads(response.body)["error"] == "user_unreachable"


def test_interaction_without_a_capabilities_member_is_interaction_unavailable() -> None:
    # Nothing declared: the agent can still reach its user itself (issue 9 item 3).
    ps = PsWorld()
    body = {"type": "question", "question": "Which calendar?"}
    response = ps.app.send(ps.post("/interaction", body))
    assert response.status == 424
    assert json.loads(response.body)["error"] == "interaction_unavailable"
