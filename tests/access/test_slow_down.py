"""Polling the AS's pending URL faster than its ``Retry-After`` (digest 5.5 polling errors):
``429 slow_down`` with ``Retry-After``; a settled outcome is never held back; a parked long
poll is exempt; and the PS's federation backs off by the extra 5 s the error asks for."""

from __future__ import annotations

from typing import Any

from aauth_server.access import AccessRequest, Issue, RequireClaims, Verdict
from tests.access.as_harness import AsWorld, body_of, header, pending_path


def claims_then_issue(request: AccessRequest) -> Verdict:
    if "email" not in request.claims:
        return RequireClaims(["email"])
    return Issue(claims={"email": request.claims["email"]})


def start(aw: AsWorld) -> str:
    response = aw.send(aw.token_request(aw.triple("data.read")))
    assert response.status == 202 and header(response, "retry-after") == "1"
    return pending_path(response)


def poll(aw: AsWorld, path: str, **kw: Any) -> Any:
    return aw.send(aw.signed("GET", path, None, **kw))


def test_a_second_plain_poll_within_retry_after_is_slow_down() -> None:
    aw = AsWorld(policy=claims_then_issue)
    path = start(aw)
    assert poll(aw, path).status == 202
    early = poll(aw, path)
    assert early.status == 429 and body_of(early)["error"] == "slow_down"
    assert header(early, "retry-after") == "1"
    # Once Retry-After has passed the same poll is answered again.
    aw.clock.advance(1)
    again = poll(aw, path)
    assert again.status == 202 and header(again, "aauth-requirement") == "requirement=claims"


def test_prefer_wait_zero_is_a_plain_poll() -> None:
    aw = AsWorld(policy=claims_then_issue)
    path = start(aw)
    assert poll(aw, path, headers=[("Prefer", "wait=0")]).status == 202
    early = poll(aw, path, headers=[("Prefer", "wait=0")])
    assert (early.status, body_of(early)["error"]) == (429, "slow_down")


def test_a_settled_outcome_is_never_held_back() -> None:
    aw = AsWorld(policy=claims_then_issue)
    path = start(aw)
    assert poll(aw, path).status == 202
    answered = aw.send(aw.signed("POST", path, {"email": "a@example.com"}))
    assert answered.status == 202 and header(answered, "retry-after") == "0"
    # "Resume polling at once": the approved request answers within the interval.
    done = poll(aw, path)
    assert done.status == 200 and "auth_token" in body_of(done)


def test_a_parked_long_poll_is_not_paced() -> None:
    aw = AsWorld(policy=claims_then_issue)
    path = start(aw)
    assert poll(aw, path).status == 202  # a plain poll: the interval starts
    # Within the interval, but the poll waited for the change: it gets the token.
    answer = aw.long_poll_answered(path, {"email": "c@d.example"})
    assert answer.status == 200 and "auth_token" in body_of(answer)
