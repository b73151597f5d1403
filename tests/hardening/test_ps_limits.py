"""Issue 8 item 6: an agent cannot fill the Person Server's pending store.

Every agent-supplied string has a documented, configurable length limit (``max_text`` for
justification and clarification answers, ``max_hint`` for hints, 64 for ``device``),
``capabilities`` are capped, an agent holds at most ``max_pending_per_agent`` open requests
(one more: ``429 slow_down`` with ``Retry-After``), and clarification rounds stop at
``clarification_rounds``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from aauth_server.errors import AAuthError
from aauth_server.http import HttpResponse
from tests.person.ps_harness import ALICE, PsWorld, sender

CODE = re.compile(r'code="([^"]+)"')


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _error(response: HttpResponse, status: int, error: str) -> dict[str, Any]:
    assert response.status == status, response.body[:300]
    assert response.header("content-type") == "application/problem+json"
    body: dict[str, Any] = json.loads(response.body)
    assert body["error"] == error
    return body


def _started(response: HttpResponse) -> tuple[str, str]:
    assert response.status == 202, response.body[:300]
    match = CODE.search(response.header("aauth-requirement") or "")
    assert match
    return response.header("location") or "", match.group(1)


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"justification": "j" * 4097}, "justification"),
        ({"justification": "x" * 5 * 2**20}, "justification"),
        ({"login_hint": "h" * 257}, "login_hint"),
        ({"tenant": "t" * 257}, "tenant"),
        ({"domain_hint": "d" * 257}, "domain_hint"),
        ({"device": "d" * 65}, "device"),
    ],
    ids=[
        "justification-4097",
        "justification-5MB",
        "login_hint",
        "tenant",
        "domain_hint",
        "device",
    ],
)
def test_agent_supplied_strings_have_limits(params: dict[str, str], named: str, mode: str) -> None:
    pw = PsWorld()
    send = sender(pw.app, mode)
    body = _error(send(pw.person_request(**params)), 400, "invalid_request")
    assert named in body["detail"]
    # At the limit is fine.
    at_limit = {
        k: v[: {"device": 64, "justification": 4096}.get(k, 256)] for k, v in params.items()
    }
    assert send(pw.person_request(**at_limit)).status == 202


def test_limits_are_configurable() -> None:
    pw = PsWorld(max_text=10, max_hint=5, max_capabilities=1)
    send = pw.app.send
    _error(send(pw.person_request(justification="12345678901")), 400, "invalid_request")
    _error(send(pw.person_request(login_hint="123456")), 400, "invalid_request")
    _error(
        send(pw.person_request(capabilities=["interaction", "clarification"])),
        400,
        "invalid_request",
    )
    assert (
        send(pw.person_request(justification="1234567890", capabilities=["interaction"])).status
        == 202
    )


def test_capabilities_are_capped(mode: str) -> None:
    pw = PsWorld()
    send = sender(pw.app, mode)
    many = ["interaction", *[f"c{i}" for i in range(16)]]
    _error(send(pw.person_request(capabilities=many)), 400, "invalid_request")
    _error(send(pw.person_request(capabilities=["interaction", "c" * 65])), 400, "invalid_request")


def test_open_requests_per_agent_are_capped(mode: str) -> None:
    pw = PsWorld(max_pending_per_agent=3)
    send = sender(pw.app, mode)
    started = [_started(send(pw.person_request())) for _ in range(3)]
    refused = send(pw.person_request())
    _error(refused, 429, "slow_down")
    assert refused.header("retry-after") == str(pw.config.poll_interval)
    # Once the person decides one, the agent may ask again.
    view = pw.ps.consent.open(started[0][1], ALICE)
    pw.ps.consent.deny(view.pending_id, ALICE)
    _started(send(pw.person_request()))
    _error(send(pw.person_request()), 429, "slow_down")
    # Expired requests free their place too.
    pw.tick(pw.config.pending_lifetime + 1)
    _started(send(pw.person_request()))


def test_the_cap_is_per_agent() -> None:
    pw = PsWorld(max_pending_per_agent=1)
    _started(pw.app.send(pw.person_request()))
    _error(pw.app.send(pw.person_request()), 429, "slow_down")
    other = pw.world.provider.issue(pw.world.agent_key.public, "another")
    request = pw.post(
        pw.config.person_token_path,
        {"resource": "https://resource.example", "capabilities": ["interaction"]},
        token=other,
    )
    _started(pw.app.send(request))


def test_the_store_cannot_be_filled_with_large_justifications() -> None:
    """The review's case: 20 requests with 5 MB each.  Now each is refused, and the
    largest record an agent can leave is bounded by the limits."""
    pw = PsWorld()
    for _ in range(20):
        _error(
            pw.app.send(pw.person_request(justification="x" * 5 * 2**20)), 400, "invalid_request"
        )
    stored = [e.data for e in pw.state.records.values()]
    assert sum(len(d) for d in stored) < 64 * 1024


def test_clarification_answers_are_limited_and_rounds_capped(mode: str) -> None:
    pw = PsWorld(clarification_rounds=2)
    send = sender(pw.app, mode)
    location, code = _started(send(pw.person_request()))
    view = pw.ps.consent.open(code, ALICE)
    for round_ in range(2):
        pw.ps.consent.ask(view.pending_id, ALICE, f"Question {round_}?")
        too_long = {"action": "clarification_response", "clarification_response": "a" * 4097}
        _error(send(pw.poll(location, body=too_long)), 400, "invalid_request")
        answer = {"action": "clarification_response", "clarification_response": "a" * 4096}
        assert send(pw.poll(location, body=answer)).status == 202
    with pytest.raises(AAuthError) as refused:
        pw.ps.consent.ask(view.pending_id, ALICE, "A third?")
    assert (refused.value.status, refused.value.error) == (409, "clarification_unavailable")
    assert len(pw.ps.consent.view(view.pending_id, ALICE).clarifications) == 2


def test_open_relays_per_agent_are_capped(mode: str) -> None:
    from aauth_server.person.relay import InteractionRelay

    pw = PsWorld(max_pending_per_agent=2)
    pw.bind()
    pw.ps.presence.touch(ALICE)  # the person's page is open: relays are delivered there
    relay = InteractionRelay(pw.ps)

    def ask(question: str) -> HttpResponse:
        request = pw.post(pw.config.interaction_path, {"type": "question", "question": question})
        if mode == "sync":
            answer = relay.handle(request)
        else:
            import asyncio

            answer = asyncio.run(relay.ahandle(request))
        assert answer is not None
        return answer

    assert ask("one?").status == 202
    assert ask("two?").status == 202
    refused = ask("three?")
    _error(refused, 429, "slow_down")
    assert refused.header("retry-after") == str(pw.config.poll_interval)
    (first, *_) = relay.pending_for(ALICE)
    relay.answer(first.id, ALICE, "yes")  # answered: its place is free again
    assert ask("three?").status == 202
