"""Polling a pending URL, the same way at the Person Server and the Access Server (digest
5.5): a ``Prefer: wait`` poll parked until the record changes, and ``429 slow_down`` for a
plain poll sooner than the ``Retry-After`` it was given."""

from __future__ import annotations

import time

from .revocation import problem, slow_down
from .steps import Steps, StoreOp, WaitOp
from .storage.base import Record


def park_steps(kind: str, record: Record, limit: float) -> Steps[tuple[Record, bool]]:
    """Wait (at most ``limit`` seconds) for ``record`` to change: ``(the record now, whether
    the poll is still paced)``.  A poll the driver really parked, or that saw a change, is not
    paced; the sync driver cannot park, so its "long polls" are paced like plain ones.  A
    record gone meanwhile is ``410``."""
    started = time.monotonic()
    changed = yield WaitOp(kind, record.id, record.version, limit)
    if changed is None:
        raise problem(410, "gone", "this pending request is finished")
    # Real time, not the injected clock: did the driver actually park this poll?
    waited = time.monotonic() - started >= limit / 2
    return changed, changed.version == record.version and not waited


def pace_steps(key: str, interval: int) -> Steps[None]:
    """The first poll of ``key`` within ``interval`` seconds passes; another is
    ``429 slow_down`` with ``Retry-After: interval`` (the store counts across workers)."""
    first = yield StoreOp("remember_once", (key, interval))
    if not first:
        raise slow_down("poll no sooner than Retry-After allows", interval)
