"""The sync store's direct path: operations made only of prepared statements and inserts run
on the pool's driver connection without SQLAlchemy's ``Connection``; everything else, and
every operation that meets a statement only SQLAlchemy can run, takes the general path with
nothing of the direct attempt left behind.  Checked on SQLite (memory and file) and on a
real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import event, insert, select

from aauth_server.records import RecordOps, RecordStore, Txn
from aauth_server.records import schema as t
from aauth_server.records.store import RecordConflict, RecordsUnavailable
from aauth_server.records.txn import InsertIgnore, Sql, Work, prepared, transaction
from tests.records.conftest import ISSUER, database_url

BACKENDS = ("sqlite-memory", "sqlite-file", "postgresql")


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    with database_url(str(request.param), tmp_path) as url:
        opened = RecordStore(url, migrate=True)
        try:
            yield opened
        finally:
            opened.close()


def _connections(store: RecordStore) -> list[object]:
    """Every SQLAlchemy ``Connection`` begun on the store's engine from now on."""
    begun: list[object] = []
    event.listen(store.engine, "begin", begun.append)
    return begun


def _revoke(ops: RecordOps, jti: str) -> Txn[bool]:
    return ops.revoke("https://agents.example", jti, exp=2e9, now=1e9, source="test")


def test_hot_operations_run_without_a_sqlalchemy_connection(store: RecordStore) -> None:
    ops = RecordOps(ISSUER)
    begun = _connections(store)
    store.run(_revoke(ops, "j1"))
    assert store.run(ops.is_revoked("https://agents.example", "j1")) is True
    revoked, cut = store.run(
        ops.revocation_facts([("https://agents.example", "j1"), ("https://x", "j2")], None, 0)
    )
    assert (revoked, cut) == ([True, False], False)
    assert begun == []  # all of it on the direct path
    assert "revoke" not in store._general and "is_revoked" not in store._general


@transaction()
def _insert_then_general(ops: RecordOps, jti: str) -> Work[int]:
    """A prepared-path insert followed by a statement only SQLAlchemy runs."""
    yield InsertIgnore(
        t.revocations,
        {
            "issuer": ops.issuer,
            "token_iss": "https://agents.example",
            "jti": jti,
            "exp": 2e9,
            "revoked_at": 1e9,
            "source": "test",
        },
    )
    c = t.revocations.c
    rows = yield Sql(select(c.jti).where(c.issuer == ops.issuer, c.jti == jti))
    return len(rows.rows)


def test_an_operation_that_needs_a_connection_runs_once_on_the_general_path(
    store: RecordStore,
) -> None:
    ops = RecordOps(ISSUER)
    begun = _connections(store)
    # The direct attempt inserted the row before it met the general statement; it rolled
    # back, so the general path inserts it again and sees exactly one.
    assert store.run(_insert_then_general(ops, "j3")) == 1
    assert len(begun) == 1
    assert "_insert_then_general" in store._general
    # Remembered: the next call goes straight to the general path.
    assert store.run(_insert_then_general(ops, "j4")) == 1
    assert len(begun) == 2
    assert store.run(ops.is_revoked("https://agents.example", "j3")) is True


#: A plain insert (no ON CONFLICT), built once like the hot statements.
_PLAIN_INSERT = prepared(insert(t.revocations))


@transaction()
def _insert_twice(ops: RecordOps) -> Work[None]:
    values = {
        "issuer": ops.issuer,
        "token_iss": "https://agents.example",
        "jti": "dup",
        "exp": 2e9,
        "revoked_at": 1e9,
        "source": "test",
    }
    yield Sql(_PLAIN_INSERT, values)
    yield Sql(_PLAIN_INSERT, values)


def test_a_constraint_broken_on_the_direct_path_is_a_conflict_and_commits_nothing(
    store: RecordStore,
) -> None:
    ops = RecordOps(ISSUER)
    begun = _connections(store)
    with pytest.raises(RecordConflict):
        store.run(_insert_twice(ops))
    assert begun == []
    assert store.run(ops.is_revoked("https://agents.example", "dup")) is False


def test_a_database_that_went_away_is_unavailable_on_the_direct_path(tmp_path: Path) -> None:
    path = tmp_path / "gone" / "records.db"
    path.parent.mkdir()
    store = RecordStore(f"sqlite:///{path}", migrate=True)
    try:
        ops = RecordOps(ISSUER)
        store.run(_revoke(ops, "j5"))
        store.engine.dispose()
        path.unlink()
        path.parent.rmdir()  # nothing to open any more
        with pytest.raises(RecordsUnavailable):
            store.run(ops.is_revoked("https://agents.example", "j5"))
    finally:
        store.close()
