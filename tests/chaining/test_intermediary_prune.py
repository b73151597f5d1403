"""The intermediary's pending table: a new pending request drops the expired ones (and their
interaction codes) without scanning every entry and code it keeps, so deferring one more
request costs O(1) amortised, not O(requests pending)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from aauth_server.agent.flow import Interaction
from aauth_server.clock import FixedClock
from aauth_server.fields import parse_aauth_requirement
from aauth_server.http import HttpResponse
from aauth_server.intermediary import ChainedCall, Intermediary, json_response
from tests.chaining.test_intermediary import MID, caller, get
from tests.scans import ScanCountingDict

T0 = 1_900_000_000
LIFETIME = 600


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # let every chained request still waiting finish


def _intermediary(clock: FixedClock, hold: float = 5.0) -> Intermediary:
    return Intermediary(MID, hold=hold, clock=clock, pending_lifetime=LIFETIME)


def _defer(mid: Intermediary, release: threading.Event) -> tuple[str, str]:
    """A request whose downstream asks for an interaction: (pending id, its code)."""

    def work(call: ChainedCall) -> HttpResponse:
        call.flow.interact(Interaction("https://ps.example/consent/request/abc", "DOWN"))
        release.wait(10)
        return json_response({"done": True})

    answer = mid.run(caller(), work)
    assert answer.status == 202
    code = parse_aauth_requirement(answer.header("aauth-requirement") or "").code
    assert code
    return (answer.header("location") or "").rsplit("/", 1)[1], code


def _page_status(mid: Intermediary, code: str) -> int:
    page = mid.handle(get(f"{MID}/aauth/chain/interact?code={code}"))
    assert page is not None
    return page.status


def test_deferring_a_request_does_not_scan_the_pending_table(release: threading.Event) -> None:
    mid = _intermediary(FixedClock(T0))
    mid._pending, mid._codes = ScanCountingDict(), ScanCountingDict()
    ScanCountingDict.scans = 0
    for _ in range(30):
        _defer(mid, release)
    assert ScanCountingDict.scans == 0  # was: every entry and every code, per deferred request
    assert len(mid._pending) == len(mid._codes) == 30
    mid.close()


def test_expired_requests_and_their_codes_go_with_the_next_deferred_one(
    release: threading.Event,
) -> None:
    clock = FixedClock(T0)
    mid = _intermediary(clock)
    first, first_code = _defer(mid, release)
    clock.advance(LIFETIME // 2)
    second, second_code = _defer(mid, release)
    clock.advance(LIFETIME // 2 + 1)  # the first has expired, the second not
    assert mid.poll(first, caller()).status == 404
    assert first in mid._pending  # dropped only when the next request is deferred
    third, _ = _defer(mid, release)
    assert set(mid._pending) == {second, third}
    assert sorted(mid._codes.values()) == sorted([second, third])
    assert _page_status(mid, first_code) == 410
    assert mid.poll(second, caller()).status == 202
    assert _page_status(mid, second_code) == 303
    mid.close()


def test_an_interaction_after_expiry_leaves_no_code_behind(release: threading.Event) -> None:
    clock = FixedClock(T0)
    mid = _intermediary(clock, hold=0.01)
    go, asked = threading.Event(), threading.Event()

    def work(call: ChainedCall) -> HttpResponse:
        go.wait(10)  # the downstream asks for an interaction only after the request expired
        call.flow.interact(Interaction("https://ps.example/consent/request/abc", "DOWN"))
        asked.set()
        release.wait(10)
        return json_response({"done": True})

    late = mid.run(caller(), work)
    assert late.status == 202 and "approval" in (late.header("aauth-requirement") or "")
    entry = mid._pending[(late.header("location") or "").rsplit("/", 1)[1]]
    clock.advance(LIFETIME + 1)
    mid.hold = 5.0
    live, _ = _defer(mid, release)  # drops the expired one
    assert set(mid._pending) == {live}
    go.set()
    assert asked.wait(10)
    assert entry.code is not None and _page_status(mid, entry.code) == 410
    assert list(mid._codes.values()) == [live]
    mid.close()
