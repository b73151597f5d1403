"""The interaction relay as other stacks send it (issue 9 item 3): a body without
``capabilities`` is an agent relaying a URL it can open itself, so a PS without a channel
answers ``424 interaction_unavailable``; ``403 user_unreachable`` only after the agent
declared, on the request or on record, that it cannot drive an interaction."""

from __future__ import annotations

from typing import Any

import pytest

from aauth_server.http import HttpResponse
from tests.person.ps_harness import PsWorld, Sender, body_of, sender

RELAY = {"type": "interaction", "url": "https://resource.example/interact", "code": "A1B2-C3D4"}


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _world(mode: str, *, bound: bool) -> tuple[PsWorld, Sender]:
    pw = PsWorld()
    if bound:
        pw.bind()
    return pw, sender(pw.app, mode)


def _relay(pw: PsWorld, send: Sender, body: dict[str, Any]) -> HttpResponse:
    return send(pw.post(pw.config.interaction_path, body))


def _error(response: HttpResponse) -> tuple[int, str]:
    return response.status, str(body_of(response)["error"])


@pytest.mark.parametrize("bound", [False, True])
def test_a_relay_without_capabilities_gets_424(mode: str, bound: bool) -> None:
    pw, send = _world(mode, bound=bound)
    assert _error(_relay(pw, send, RELAY)) == (424, "interaction_unavailable")
    question = {"type": "question", "question": "Which calendar?"}
    assert _error(_relay(pw, send, question)) == (424, "interaction_unavailable")


def test_declared_on_the_request(mode: str) -> None:
    pw, send = _world(mode, bound=True)
    assert _error(_relay(pw, send, {**RELAY, "capabilities": []})) == (403, "user_unreachable")
    caps = {**RELAY, "capabilities": ["interaction"]}
    assert _error(_relay(pw, send, caps)) == (424, "interaction_unavailable")


def test_declared_on_record_at_the_token_endpoint(mode: str) -> None:
    pw, send = _world(mode, bound=True)
    # The agent tells the PS it cannot interact (and no page is open: 403 there too).
    refused = send(pw.person_request(capabilities=["clarification"]))
    assert _error(refused) == (403, "user_unreachable")
    assert _error(_relay(pw, send, RELAY)) == (403, "user_unreachable")
    # A later declaration with interaction replaces it.
    started = send(pw.person_request(capabilities=["interaction"]))
    assert started.status == 202, started.body
    assert _error(_relay(pw, send, RELAY)) == (424, "interaction_unavailable")


def test_a_token_request_without_capabilities_leaves_the_record_alone(mode: str) -> None:
    pw, send = _world(mode, bound=True)
    assert _error(send(pw.person_request(capabilities=[]))) == (403, "user_unreachable")
    assert _error(send(pw.person_request(capabilities=None))) == (403, "user_unreachable")
    assert _error(_relay(pw, send, RELAY)) == (403, "user_unreachable")


def test_the_relay_declaration_is_recorded_too(mode: str) -> None:
    pw, send = _world(mode, bound=True)
    assert _error(_relay(pw, send, {**RELAY, "capabilities": ["payment"]})) == (
        403,
        "user_unreachable",
    )
    assert _error(_relay(pw, send, RELAY)) == (403, "user_unreachable")
