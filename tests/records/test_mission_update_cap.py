"""The cap on a mission's accepted updates, where it is enforced: the statement that takes
the update's number (``RecordOps.add_mission_update(max_updates=...)``), on every backend and
through both faces, and under concurrent writers on a SQLite file and a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from aauth_server.records import ACTIVE, SUSPENDED, TERMINATED, RecordOps, RecordStore, Txn
from aauth_server.records.ops import MissionUpdatesFull
from tests.records.conftest import (
    ISSUER,
    OTHER,
    S256,
    T0,
    Backend,
    Face,
    alices_mission,
    database_url,
    run_in_tasks,
    run_in_threads,
)


def _update(ops: RecordOps, n: int, cap: int | None, s256: str = S256) -> Txn[int | None]:
    return ops.add_mission_update(
        s256,
        blob=f"update {n}".encode(),
        digest=f"d{n}",
        now=T0 + n,
        accepted_by="ps",
        entry={"event": "update_accepted", "n": n},
        max_updates=cap,
    )


def test_a_full_mission_refuses_the_next_update_and_keeps_what_it_has(backend: Backend) -> None:
    async def body(face: Face) -> None:
        ops = face.ops
        await face(alices_mission(ops))
        await face(alices_mission(ops, OTHER))
        for n in (1, 2, 3):
            assert await face(_update(ops, n, 3)) == n
        with pytest.raises(MissionUpdatesFull) as refused:
            await face(_update(ops, 4, 3))
        assert refused.value.limit == 3
        # Nothing of the refused update was written: no row, no number, no log entry.
        row, updates = await face(ops.mission_with_updates(S256))
        assert row is not None and row.update_seq == 3 and row.status == ACTIVE
        assert [u.blob for u in updates] == [b"update 1", b"update 2", b"update 3"]
        assert [e.detail.get("n") for e in await face(ops.log_since(S256))] == [1, 2, 3]
        # The store goes on working after the refusal, and the cap is per mission.
        assert await face(_update(ops, 1, 3, OTHER)) == 1
        # A larger cap (the operator raised it) admits more; no cap admits any number.
        assert await face(_update(ops, 4, 4)) == 4
        assert await face(_update(ops, 5, None)) == 5

    backend.run(body)


def test_not_active_is_told_apart_from_full(backend: Backend) -> None:
    async def body(face: Face) -> None:
        ops = face.ops
        await face(alices_mission(ops))
        assert await face(_update(ops, 1, 1)) == 1
        await face(ops.set_mission_status(S256, SUSPENDED, now=T0 + 5, allowed_from=[ACTIVE]))
        # Full and suspended: the answer is "not active" (None), as without a cap.
        assert await face(_update(ops, 2, 1)) is None
        await face(
            ops.set_mission_status(
                S256, TERMINATED, now=T0 + 6, allowed_from=[SUSPENDED], reason="revoked"
            )
        )
        assert await face(_update(ops, 2, 1)) is None
        assert await face(_update(ops, 2, 10)) is None
        # No such mission: None too, never "full".
        assert await face(_update(ops, 1, 1, OTHER)) is None

    backend.run(body)


# -- concurrency ----------------------------------------------------------------------------------


def _race(
    store: RecordStore, asynchronous: bool, *, writers: int, tries: int, cap: int
) -> list[object]:
    """``writers`` parallel writers, each trying ``tries`` updates against ``cap``; every
    outcome (a number, or the refusal)."""
    ops = RecordOps(ISSUER)
    outcomes: list[object] = []
    if asynchronous:

        async def in_task(n: int) -> None:
            for i in range(tries):
                try:
                    outcomes.append(await store.arun(_update(ops, n * 100 + i, cap)))
                except MissionUpdatesFull as full:
                    outcomes.append(full)

        run_in_tasks(store, writers, in_task)
    else:

        def in_thread(n: int) -> None:
            for i in range(tries):
                try:
                    outcomes.append(store.run(_update(ops, n * 100 + i, cap)))
                except MissionUpdatesFull as full:
                    outcomes.append(full)

        run_in_threads(writers, in_thread)
    return outcomes


def _check_race(store: RecordStore, asynchronous: bool) -> None:
    ops = RecordOps(ISSUER)
    store.run(alices_mission(ops))
    store.run(_update(ops, 0, None))
    # Two parallel updates at cap - 1: exactly one gets in.
    cap = 2
    outcomes = _race(store, asynchronous, writers=2, tries=1, cap=cap)
    assert sorted(o for o in outcomes if isinstance(o, int)) == [2]
    assert sum(isinstance(o, MissionUpdatesFull) for o in outcomes) == 1


def _check_crowd(store: RecordStore, asynchronous: bool) -> None:
    """Eight writers racing from empty to a cap of ten: ten numbers, contiguous, the rest
    refused, and the mission holds exactly ten updates."""
    ops = RecordOps(ISSUER)
    store.run(alices_mission(ops))
    outcomes = _race(store, asynchronous, writers=8, tries=3, cap=10)
    assert sorted(o for o in outcomes if isinstance(o, int)) == list(range(1, 11))
    assert sum(isinstance(o, MissionUpdatesFull) for o in outcomes) == 8 * 3 - 10


Check = Callable[[RecordStore, bool], None]


@pytest.mark.parametrize("check", [_check_race, _check_crowd], ids=["two-at-cap", "eight"])
@pytest.mark.parametrize("asynchronous", [False, True], ids=["threads", "tasks"])
@pytest.mark.parametrize("backend_name", ["sqlite-file", "postgresql"])
def test_concurrent_updates_never_pass_the_cap(
    backend_name: str, asynchronous: bool, check: Check, tmp_path: Path
) -> None:
    with database_url(backend_name, tmp_path) as url:
        pool = {"pool_size": 8} if backend_name == "postgresql" else {}
        store = RecordStore(url, migrate=True, **pool)
        try:
            check(store, asynchronous)
            # What the racers left, read afresh: the updates' numbers match the count.
            reader = RecordStore(url)
            try:
                row, updates = reader.run(RecordOps(ISSUER).mission_with_updates(S256))
                assert row is not None
                assert [u.seq for u in updates] == list(range(1, row.update_seq + 1))
            finally:
                reader.close()
        finally:
            store.close()
