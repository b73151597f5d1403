"""The record store's contract: every operation, on SQLite (memory and file) and on a real
PostgreSQL, through the sync and the async face."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from aauth_server.records import (
    ACTIVE,
    SUSPENDED,
    TERMINATED,
    IssuedToken,
    RecordOps,
    RecordStore,
)
from tests.records.conftest import (
    AGENT,
    AP,
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


async def _mission(face: Face, s256: str = S256, **kw: object) -> None:
    row, created = await face(
        face.ops.create_mission(
            s256=s256,
            blob=kw.pop("blob", b'{"agent":"x"}'),  # type: ignore[arg-type]
            agent_issuer=AP,
            agent=AGENT,
            person=str(kw.pop("person", "alice")),
            approved_at=float(kw.pop("approved_at", T0)),  # type: ignore[arg-type]
            expires_at=kw.pop("expires_at", None),  # type: ignore[arg-type]
            first_entry={"event": "approved", "actor": "alice"},
        )
    )
    assert created and row.s256 == s256


def test_a_mission_keeps_its_bytes_and_owner(backend: Backend) -> None:
    blob = '{"description":"Ünïcode \\u0000 and bytes"}'.encode() + b"\xff\x00"

    async def body(face: Face) -> None:
        await _mission(face, blob=blob, expires_at=T0 + 60)
        row = await face(face.ops.get_mission(S256))
        assert row is not None
        assert row.blob == blob and isinstance(row.blob, bytes)
        assert (row.agent_issuer, row.agent, row.person) == (AP, AGENT, "alice")
        assert (row.status, row.termination_reason) == (ACTIVE, None)
        assert (row.approved_at, row.expires_at, row.log_seq) == (T0, T0 + 60, 1)
        # The same mission again is the same row, logged once.
        again, created = await face(
            face.ops.create_mission(
                s256=S256,
                blob=b"other",
                agent_issuer=AP,
                agent=AGENT,
                person="alice",
                approved_at=T0 + 1,
                expires_at=None,
                first_entry={"event": "approved"},
            )
        )
        assert not created and again.blob == blob and again.log_seq == 1
        assert await face(face.ops.get_mission(OTHER)) is None

    backend.run(body)


def test_status_moves_only_from_allowed_states_and_logs_with_the_move(backend: Backend) -> None:
    async def body(face: Face) -> None:
        await _mission(face)
        ops = face.ops
        row, moved = await face(
            ops.set_mission_status(
                S256, SUSPENDED, now=T0 + 1, allowed_from=[ACTIVE], entry={"event": "suspended"}
            )
        )
        assert moved and row is not None and (row.status, row.status_at) == (SUSPENDED, T0 + 1)
        row, moved = await face(
            ops.set_mission_status(S256, SUSPENDED, now=T0 + 2, allowed_from=[ACTIVE])
        )
        assert not moved and row is not None and row.status_at == T0 + 1
        row, moved = await face(
            ops.set_mission_status(
                S256,
                TERMINATED,
                now=T0 + 3,
                allowed_from=[ACTIVE, SUSPENDED],
                reason="revoked",
                entry={"event": "terminated", "reason": "revoked"},
            )
        )
        assert moved and row is not None and row.termination_reason == "revoked"
        row, moved = await face(
            ops.set_mission_status(S256, ACTIVE, now=T0 + 4, allowed_from=[SUSPENDED])
        )
        assert not moved and row is not None and row.status == TERMINATED
        events = [e.event for e in await face(ops.log_since(S256))]
        assert events == ["approved", "suspended", "terminated"]
        with pytest.raises(ValueError):
            await face(ops.set_mission_status(S256, "paused", now=T0, allowed_from=[ACTIVE]))
        missing, moved = await face(
            ops.set_mission_status(OTHER, SUSPENDED, now=T0, allowed_from=[ACTIVE])
        )
        assert missing is None and not moved

    backend.run(body)


def test_updates_keep_their_bytes_in_order_while_active(backend: Backend) -> None:
    async def body(face: Face) -> None:
        await _mission(face)
        ops = face.ops
        for n in (1, 2):
            seq = await face(
                ops.add_mission_update(
                    S256,
                    blob=f"update {n}".encode(),
                    digest=f"d{n}",
                    now=T0 + n,
                    accepted_by="alice",
                    entry={"event": "update_accepted"},
                )
            )
            assert seq == n
        row, updates = await face(ops.mission_with_updates(S256))
        assert row is not None and row.update_seq == 2
        assert [(u.seq, u.blob, u.digest, u.accepted_by) for u in updates] == [
            (1, b"update 1", "d1", "alice"),
            (2, b"update 2", "d2", "alice"),
        ]
        assert await face(ops.mission_updates(S256)) == updates
        await face(
            ops.set_mission_status(S256, TERMINATED, now=T0 + 9, allowed_from=[ACTIVE], reason="x")
        )
        late = ops.add_mission_update(S256, blob=b"late", digest="d", now=T0, accepted_by="p")
        assert await face(late) is None
        assert len(await face(ops.mission_updates(S256))) == 2

    backend.run(body)


def test_the_log_appends_in_order_and_reads_newest_first(backend: Backend) -> None:
    async def body(face: Face) -> None:
        await _mission(face)
        ops = face.ops
        for n in range(2, 8):
            entry = {
                "event": "decision",
                "agent": AGENT,
                "resource": f"https://r{n % 2}.example",
                "scope": ["a", "b"],
                "decision": "granted" if n % 3 else "denied",
                "reason": None if n % 3 else "outside mission scope",
                "actor": "mission",
                "n": n,
                "nested": {"k": [1, 2]},
            }
            assert await face(ops.append_log(S256, entry, now=T0 + n)) == n
        page = await face(ops.log_page(S256, limit=3))
        assert [e.seq for e in page] == [7, 6, 5]
        older = await face(ops.log_page(S256, before=page[-1].seq, limit=3))
        assert [e.seq for e in older] == [4, 3, 2]
        entry = older[0].as_dict()
        assert entry == {
            "seq": 4,
            "at": T0 + 4,
            "event": "decision",
            "agent": AGENT,
            "resource": "https://r0.example",
            "scope": ["a", "b"],
            "decision": "granted",
            "actor": "mission",
            "n": 4,
            "nested": {"k": [1, 2]},
        }
        denied = await face(ops.log_page(S256, decision="denied"))
        assert [e.seq for e in denied] == [6, 3] and denied[0].reason == "outside mission scope"
        assert await face(ops.log_count(S256)) == 7
        assert await face(ops.log_count(S256, resource="https://r1.example")) == 3
        assert await face(ops.log_count(S256, event=["approved", "decision"])) == 7
        assert [e.seq for e in await face(ops.log_since(S256, after=5))] == [6, 7]
        with pytest.raises(ValueError):
            await face(ops.log_count(S256, detail="x"))
        with pytest.raises(ValueError):
            await face(ops.append_log(S256, {"n": 1}, now=T0))
        assert await face(ops.append_log(OTHER, {"event": "x"}, now=T0)) is None

    backend.run(body)


def test_missions_of_a_person_newest_first(backend: Backend) -> None:
    async def body(face: Face) -> None:
        for n in range(4):
            await _mission(face, s256=chr(ord("C") + n) * 43, approved_at=T0 + n)
        await _mission(face, s256="Z" * 43, person="bob")
        mine = await face(face.ops.missions_of("alice", limit=3))
        assert [m.approved_at for m in mine] == [T0 + 3, T0 + 2, T0 + 1]
        rest = await face(face.ops.missions_of("alice", before=mine[-1].approved_at))
        assert [m.approved_at for m in rest] == [T0]

    backend.run(body)


def test_bindings_are_one_to_one_until_they_expire(backend: Backend) -> None:
    async def body(face: Face) -> None:
        ops = face.ops
        assert await face(ops.bind(AP, AGENT, "alice", now=T0, ttl=100))
        assert await face(ops.bind(AP, AGENT, "alice", now=T0 + 1, ttl=100))
        assert not await face(ops.bind(AP, AGENT, "bob", now=T0 + 2, ttl=100))
        assert await face(ops.bound_person(AP, AGENT, now=T0 + 50)) == "alice"
        assert await face(ops.bound_person(AP, "aauth:other@agent.example", now=T0)) is None
        assert await face(ops.bound_person(AP, AGENT, now=T0 + 100)) is None
        assert await face(ops.bind(AP, AGENT, "bob", now=T0 + 100, ttl=100))
        assert await face(ops.bound_person(AP, AGENT, now=T0 + 101)) == "bob"
        assert await face(ops.unbind(AP, AGENT))
        assert await face(ops.bound_person(AP, AGENT, now=T0 + 101)) is None

    backend.run(body)


def test_issued_tokens_are_found_by_what_a_cascade_needs(backend: Backend) -> None:
    def token(jti: str, **kw: object) -> IssuedToken:
        base: dict[str, object] = {
            "jti": jti,
            "type": "auth",
            "aud": "https://api.example",
            "iat": T0,
            "exp": T0 + 3600,
            "agent_issuer": AP,
            "agent": AGENT,
            "agent_jti": "agent-jti",
            "person": "alice",
            "sub": "directed",
            "mission": S256,
            "scope": "data.read",
        }
        base.update(kw)
        return IssuedToken(**base)  # type: ignore[arg-type]

    async def body(face: Face) -> None:
        ops = face.ops
        full = token(
            "t1",
            upstream_iss="https://ps.example",
            upstream_jti="up",
            presented_iss="https://ps.example",
            presented_jti="pt",
            presented_to="https://as.example",
        )
        assert await face(ops.record_issued(full))
        assert not await face(ops.record_issued(full))  # once
        await face(ops.record_issued(token("t2", type="person", exp=T0 + 10)))
        await face(ops.record_issued(token("t3", mission=None)))
        assert await face(ops.issued("t1")) == full
        live = await face(ops.issued_where(mission=S256, unexpired_at=T0 + 20))
        assert [t.jti for t in live] == ["t1"]
        assert {t.jti for t in await face(ops.issued_where(mission=S256))} == {"t1", "t2"}
        found = await face(ops.issued_where(presented_iss="https://ps.example", presented_jti="pt"))
        assert [t.jti for t in found] == ["t1"]
        assert [t.jti for t in await face(ops.issued_where(upstream_jti="up"))] == ["t1"]
        assert await face(ops.mark_revoked(["t1", "t2"], now=T0 + 5)) == 2
        assert await face(ops.mark_revoked(["t1"], now=T0 + 6)) == 0
        assert await face(ops.mark_revoked([], now=T0 + 6)) == 0
        revoked = await face(ops.issued("t1"))
        assert revoked is not None and revoked.revoked_at == T0 + 5
        with pytest.raises(ValueError):
            await face(ops.issued_where(nonsense="x"))

    backend.run(body)


def test_revocations_cutoffs_and_seen_tokens(backend: Backend) -> None:
    async def body(face: Face) -> None:
        ops = face.ops
        assert await face(ops.revoke(AP, "j1", exp=T0 + 60, now=T0, source="caller"))
        assert not await face(ops.revoke(AP, "j1", exp=T0 + 60, now=T0 + 1))
        assert await face(ops.is_revoked(AP, "j1"))
        assert not await face(ops.is_revoked(AP, "j2"))
        assert not await face(ops.is_revoked("https://other.example", "j1"))
        await face(ops.cut_off(AP, AGENT, at=T0 + 10, expires_at=T0 + 100))
        assert await face(ops.cut_off_since(AP, AGENT, T0 + 10))
        assert not await face(ops.cut_off_since(AP, AGENT, T0 + 11))
        await face(ops.cut_off(AP, AGENT, at=T0 + 5, expires_at=T0 + 50))  # earlier: kept later
        assert await face(ops.cut_off_since(AP, AGENT, T0 + 10))
        await face(ops.cut_off(AP, AGENT, at=T0 + 20, expires_at=T0 + 200))
        assert await face(ops.cut_off_since(AP, AGENT, T0 + 20))
        assert await face(ops.remember_seen(AP, "j1", sub=AGENT, exp=T0 + 60))
        assert not await face(ops.remember_seen(AP, "j1", sub="other", exp=T0 + 60))
        assert await face(ops.seen_sub(AP, "j1")) == AGENT
        assert await face(ops.seen_sub(AP, "j9")) is None
        removed = await face(ops.prune(now=T0 + 60 + 301))
        assert removed == 2  # the revocation and the seen token; the cut-off lives on
        assert not await face(ops.is_revoked(AP, "j1"))
        assert await face(ops.cut_off_since(AP, AGENT, T0 + 20))

    backend.run(body)


def test_the_outbox_leases_retries_and_finishes(backend: Backend) -> None:
    async def body(face: Face) -> None:
        ops = face.ops
        items = [
            {"recipient": "https://a.example", "jti": "j1", "exp": T0 + 600, "mission": S256},
            {"recipient": "https://b.example", "jti": "j1", "exp": T0 + 600, "mission": S256},
            {"recipient": "https://a.example", "jti": "j2", "exp": T0 + 600},
        ]
        assert await face(ops.enqueue(items, now=T0)) == 3
        assert await face(ops.enqueue(items[:1], now=T0)) == 0  # once per recipient and jti
        assert await face(ops.next_due()) == T0
        claimed = await face(ops.claim_due(now=T0, lease=30, limit=2))
        assert [(i.recipient, i.jti, i.attempts) for i in claimed] == [
            ("https://a.example", "j1", 1),
            ("https://b.example", "j1", 1),
        ]
        rest = await face(ops.claim_due(now=T0, lease=30))
        assert [i.jti for i in rest] == ["j2"]
        assert await face(ops.claim_due(now=T0 + 1, lease=30)) == []  # all leased
        first, second = claimed
        assert await face(ops.finish(first.id, status="revoked", now=T0 + 2))
        assert not await face(ops.finish(first.id, status="revoked", now=T0 + 3))
        assert await face(
            ops.retry_later(second.id, next_at=T0 + 10, detail="503", poll_url="https://b/p")
        )
        assert await face(ops.claim_due(now=T0 + 5, lease=30)) == []
        again = await face(ops.claim_due(now=T0 + 10, lease=30))
        assert [(i.id, i.attempts, i.poll_url) for i in again] == [(second.id, 2, "https://b/p")]
        # The third one's worker died: its lease runs out and another worker takes it over.
        retaken = await face(ops.claim_due(now=T0 + 31, lease=30))
        assert [i.jti for i in retaken] == ["j2"]
        await face(ops.finish(second.id, status="unavailable", now=T0 + 40, detail="gave up"))
        with pytest.raises(ValueError):
            await face(ops.finish(second.id, status="pending", now=T0))
        mine = await face(ops.outbox_items(mission=S256))
        assert [(i.recipient, i.status) for i in mine] == [
            ("https://a.example", "revoked"),
            ("https://b.example", "unavailable"),
        ]
        # Revoking again re-attempts what failed, not what succeeded.
        assert await face(ops.enqueue(items[:2], now=T0 + 50)) == 1
        assert [i.status for i in await face(ops.outbox_items(mission=S256))] == [
            "revoked",
            "pending",
        ]

    backend.run(body)


def test_rows_are_namespaced_by_issuer(backend: Backend) -> None:
    async def body(face: Face) -> None:
        other = face.other("https://as.example")
        await _mission(face)
        await face(face.ops.bind(AP, AGENT, "alice", now=T0, ttl=100))
        await face(face.ops.revoke(AP, "j1", exp=T0 + 60, now=T0))
        await face(face.ops.enqueue([{"recipient": "r", "jti": "j", "exp": T0 + 9}], now=T0))
        assert await other(other.ops.get_mission(S256)) is None
        assert await other(other.ops.append_log(S256, {"event": "x"}, now=T0)) is None
        assert await other(other.ops.bound_person(AP, AGENT, now=T0)) is None
        assert not await other(other.ops.is_revoked(AP, "j1"))
        assert await other(other.ops.claim_due(now=T0, lease=5)) == []
        # The same keys under another issuer are another row.
        assert await other(other.ops.bind(AP, AGENT, "bob", now=T0, ttl=100))
        assert await face(face.ops.bound_person(AP, AGENT, now=T0)) == "alice"

    backend.run(body)


def test_records_survive_a_new_store(backend_name: str, tmp_path: Path) -> None:
    if backend_name == "sqlite-memory":
        backend_name = "sqlite-file"  # memory has nothing to survive with; test the file twice
    with database_url(backend_name, tmp_path) as url:
        ops = RecordOps(ISSUER)
        first = RecordStore(url, migrate=True)
        first.run(alices_mission(ops))
        first.run(ops.append_log(S256, {"event": "note"}, now=T0))
        first.run(ops.revoke(AP, "j1", exp=T0 + 60, now=T0))
        first.close()
        second = RecordStore(url)
        second.check()
        row = second.run(ops.get_mission(S256))
        assert row is not None and row.blob == b"blob" and row.log_seq == 1
        assert second.run(ops.is_revoked(AP, "j1"))
        second.close()


# -- concurrency ----------------------------------------------------------------------------------


def _concurrent_appends(store: RecordStore, asynchronous: bool) -> None:
    ops = RecordOps(ISSUER)
    store.run(alices_mission(ops, blob=b"b"))
    writers, each = 8, 25
    if asynchronous:

        async def in_task(n: int) -> None:
            for i in range(each):
                await store.arun(ops.append_log(S256, {"event": "note", "n": n, "i": i}, now=T0))

        run_in_tasks(store, writers, in_task)
    else:

        def in_thread(n: int) -> None:
            for i in range(each):
                store.run(ops.append_log(S256, {"event": "note", "n": n, "i": i}, now=T0))

        run_in_threads(writers, in_thread)
    entries = store.run(ops.log_since(S256, limit=10_000))
    assert [e.seq for e in entries] == list(range(1, writers * each + 1))  # contiguous, ordered
    seen = {(e.detail["n"], e.detail["i"]) for e in entries}
    assert seen == {(n, i) for n in range(writers) for i in range(each)}  # none lost
    for n in range(writers):  # each writer's own entries in the order it wrote them
        mine = [e.detail["i"] for e in entries if e.detail["n"] == n]
        assert mine == list(range(each))
    row = store.run(ops.get_mission(S256))
    assert row is not None and row.log_seq == writers * each


@pytest.mark.parametrize("asynchronous", [False, True], ids=["threads", "tasks"])
def test_eight_concurrent_writers_on_postgresql(asynchronous: bool) -> None:
    with database_url("postgresql", Path(".")) as url:
        store = RecordStore(url, migrate=True, pool_size=8)
        try:
            _concurrent_appends(store, asynchronous)
        finally:
            store.close()


@pytest.mark.parametrize("asynchronous", [False, True], ids=["threads", "tasks"])
def test_eight_concurrent_writers_on_a_sqlite_file(asynchronous: bool, tmp_path: Path) -> None:
    store = RecordStore(f"sqlite:///{tmp_path / 'r.db'}", migrate=True)
    try:
        _concurrent_appends(store, asynchronous)
    finally:
        store.close()


def test_concurrent_claims_never_hand_out_one_message_twice() -> None:
    with database_url("postgresql", Path(".")) as url:
        store = RecordStore(url, migrate=True, pool_size=8)
        ops = RecordOps(ISSUER)
        try:
            items = [{"recipient": "r", "jti": f"j{n}", "exp": T0 + 600} for n in range(40)]
            store.run(ops.enqueue(items, now=T0))
            got: list[list[str]] = []

            def worker() -> None:
                mine: list[str] = []
                while batch := store.run(ops.claim_due(now=T0, lease=60, limit=3)):
                    mine += [i.jti for i in batch]
                got.append(mine)

            threads = [threading.Thread(target=worker) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            claimed = [j for mine in got for j in mine]
            assert sorted(claimed) == sorted(i["jti"] for i in items)  # each exactly once
        finally:
            store.close()
