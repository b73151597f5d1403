"""aauth_server.polling, the pacing shared by the PS and AS pending URLs, driven by hand:
what it asks the driver for and what it makes of each answer."""

from __future__ import annotations

import time
from typing import Any

import pytest

from aauth_server.errors import AAuthError
from aauth_server.polling import pace_steps, park_steps
from aauth_server.steps import StoreOp, WaitOp
from aauth_server.storage.base import Record

RECORD = Record("as-pending", "p1", 3, {"state": "pending"}, 0.0)


def drive(steps: Any, answer: Any, *, delay: float = 0.0) -> Any:
    need = next(steps)
    time.sleep(delay)
    try:
        steps.send(answer(need))
    except StopIteration as done:
        return need, done.value
    raise AssertionError("the steps asked for more than one thing")


def test_park_waits_on_the_record_and_a_change_is_not_paced() -> None:
    changed = Record("as-pending", "p1", 4, {"state": "approved"}, 0.0)
    need, (record, paced) = drive(park_steps("as-pending", RECORD, 5), lambda _: changed)
    assert isinstance(need, WaitOp)
    assert (need.kind, need.id, need.version, need.timeout) == ("as-pending", "p1", 3, 5)
    assert record is changed and paced is False


def test_park_that_returned_unchanged_at_once_is_paced() -> None:
    # The sync driver cannot park: the same version back at once is a plain poll.
    _, (record, paced) = drive(park_steps("as-pending", RECORD, 5), lambda _: RECORD)
    assert record is RECORD and paced is True


def test_park_that_really_waited_is_not_paced() -> None:
    _, (_, paced) = drive(park_steps("as-pending", RECORD, 0.1), lambda _: RECORD, delay=0.06)
    assert paced is False


def test_park_on_a_record_gone_is_410() -> None:
    with pytest.raises(AAuthError) as raised:
        drive(park_steps("as-pending", RECORD, 5), lambda _: None)
    assert (raised.value.status, raised.value.error) == (410, "gone")


def test_pace_lets_the_first_poll_through_and_slows_the_next() -> None:
    need, value = drive(pace_steps("ps-poll:p1", 2), lambda _: True)
    assert isinstance(need, StoreOp)
    assert (need.op, need.args) == ("remember_once", ("ps-poll:p1", 2))
    assert value is None
    with pytest.raises(AAuthError) as raised:
        drive(pace_steps("ps-poll:p1", 2), lambda _: False)
    error = raised.value
    assert (error.status, error.error) == (429, "slow_down")
    assert ("Retry-After", "2") in error.to_response().headers
