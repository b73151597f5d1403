"""The sync store's direct path: operations made only of prepared statements and inserts run
on the pool's driver connection without SQLAlchemy's ``Connection``; everything else, and
every operation that meets a statement only SQLAlchemy can run, takes the general path with
nothing of the direct attempt left behind.  Checked on SQLite (memory and file) and on a
real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import bindparam, event, insert, or_, select

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


# -- the statement plan: our parameters passed straight through, literal binds merged --------

_c = t.revocations.c
#: A statement with a literal bind of its own ("test") beside ours, and one bound twice.
_WITH_LITERAL = prepared(
    select(_c.jti).where(
        _c.issuer == bindparam("i"), _c.source == "test", _c.token_iss == bindparam("t")
    )
)
_TWICE = prepared(
    select(_c.jti).where(
        _c.issuer == bindparam("i"), or_(_c.jti == bindparam("j"), _c.token_iss == bindparam("j"))
    )
)


@transaction(write=False)
def _planned(ops: RecordOps) -> Work[tuple[list[str], list[str]]]:
    literal = yield Sql(_WITH_LITERAL, {"t": "https://agents.example", "i": ops.issuer})
    twice = yield Sql(_TWICE, {"i": ops.issuer, "j": "p1"})
    return sorted(r["jti"] for r in literal.rows), sorted(r["jti"] for r in twice.rows)


def test_prepared_statements_bind_by_name_with_or_without_literal_binds(store: RecordStore) -> None:
    ops = RecordOps(ISSUER)
    store.run(_revoke(ops, "p1"))
    store.run(ops.revoke("https://agents.example", "p2", exp=2e9, now=1e9, source="other"))
    begun = _connections(store)
    # Twice: the first run plans each statement, the second runs the plan.
    for _ in range(2):
        assert store.run(_planned(ops)) == (["p1"], ["p1"])
    assert begun == []
    plans = {key[0]: plan for key, plan in store._compiled.items()}
    assert plans[id(_WITH_LITERAL)][2] is None  # "test" is merged by SQLAlchemy, per call
    assert plans[id(_TWICE)][2] is not None  # ours only: passed as they are


# -- the token request's one read ---------------------------------------------------------------

AP = "https://agents.example"
AGENT = "aauth:bot@agents.example"


def _facts(ops: RecordOps, since: float = 100.0, now: float = 1e9):  # type: ignore[no-untyped-def]
    return ops.request_facts(
        AP,
        "agent-jti",
        AGENT,
        now=now,
        tokens=(("https://resource.example", "rt-jti"), ("https://ps.example", "pt-jti")),
        since=since,
    )


def test_request_facts_answer_agent_facts_and_revocation_facts_in_one_statement(
    store: RecordStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ops = RecordOps(ISSUER)
    statements: list[object] = []
    execute = store._execute_prepared

    def counted(driver: object, op: Sql) -> object:
        statements.append(op.statement)
        return execute(driver, op)

    monkeypatch.setattr(store, "_execute_prepared", counted)
    facts = store.run(_facts(ops))
    assert len(statements) == 1  # one statement, one snapshot
    assert (facts.revoked, facts.person, facts.tokens_revoked, facts.cut) == (
        False,
        None,
        (False, False),
        False,
    )
    store.run(ops.bind(AP, AGENT, "alice", now=1e9 - 10, ttl=3600))
    store.run(ops.revoke(AP, "agent-jti", exp=2e9, now=1e9))
    store.run(ops.revoke("https://ps.example", "pt-jti", exp=2e9, now=1e9))
    store.run(ops.cut_off(AP, AGENT, at=150.0, expires_at=2e9))
    facts = store.run(_facts(ops))
    assert (facts.revoked, facts.person, facts.tokens_revoked, facts.cut) == (
        True,
        "alice",
        (False, True),
        True,
    )
    # The same answers as the two reads it replaces, for the same questions.
    tokens = list(facts.tokens)
    assert store.run(ops.agent_facts(AP, "agent-jti", AGENT, now=1e9)) == (True, "alice")
    assert facts.revocation_facts(tokens, (AP, AGENT), 100.0) == store.run(
        ops.revocation_facts(tokens, (AP, AGENT), 100.0)
    )
    # A cut-off before the presented token's iat does not cut it; an expired binding is none.
    statements.clear()
    later = store.run(_facts(ops, since=200.0, now=1e9 + 7200))
    assert (later.cut, later.person) == (False, None)
    assert len(statements) == 1
    # Other questions get no answer from it.
    assert facts.revocation_facts(tokens, (AP, AGENT), 101.0) is None
    assert facts.revocation_facts(tokens[::-1], (AP, AGENT), 100.0) is None
    assert facts.revocation_facts(tokens, (AP, "aauth:other@agents.example"), 100.0) is None


# -- kept connections ----------------------------------------------------------------------------


def test_a_committed_connection_is_kept_for_the_next_direct_transaction(
    store: RecordStore,
) -> None:
    ops = RecordOps(ISSUER)
    checkouts: list[object] = []
    event.listen(store.engine.pool, "checkout", lambda *a: checkouts.append(a))
    for n in range(3):
        store.run(_revoke(ops, f"k{n}"))
        assert store.run(ops.is_revoked(AP, f"k{n}")) is True
    assert len(checkouts) <= 1
    assert len(store._idle) == 1
    # A transaction that fails does not keep its connection; the next one gets a good one.
    with pytest.raises(RecordConflict):
        store.run(_insert_twice(ops))
    assert store.run(ops.is_revoked(AP, "dup")) is False


def test_a_kept_connection_the_database_closed_is_replaced_without_an_error(
    tmp_path: Path,
) -> None:
    with database_url("postgresql", tmp_path) as url:
        store = RecordStore(url, migrate=True)
        try:
            ops = RecordOps(ISSUER)
            store.run(_revoke(ops, "s1"))
            assert len(store._idle) == 1
            # The server ends that session (an administrator, a restart, an idle timeout).
            pid = store._idle[0].dbapi_connection.info.backend_pid
            with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            # The next transactions run on a fresh connection; a write commits exactly once.
            assert store.run(_revoke(ops, "s2")) is True
            assert store._idle[0].dbapi_connection.info.backend_pid != pid
            assert store.run(ops.is_revoked(AP, "s1")) is True
            assert store.run(_revoke(ops, "s2")) is False
        finally:
            store.close()


def test_request_facts_read_the_same_through_the_async_face(store: RecordStore) -> None:
    ops = RecordOps(ISSUER)
    store.run(ops.bind(AP, AGENT, "alice", now=1e9 - 10, ttl=3600))
    store.run(ops.revoke("https://resource.example", "rt-jti", exp=2e9, now=1e9))

    async def read() -> object:
        try:
            return await store.arun(_facts(ops))
        finally:
            await store.aclose()

    facts = asyncio.run(read())
    assert facts == store.run(_facts(ops))
    assert (facts.person, facts.tokens_revoked) == ("alice", (True, False))  # type: ignore[attr-defined]


def test_a_forked_child_does_not_use_its_parents_kept_connection(tmp_path: Path) -> None:
    store = RecordStore(f"sqlite:///{tmp_path / 'records.db'}", migrate=True)
    try:
        ops = RecordOps(ISSUER)
        store.run(_revoke(ops, "f1"))
        assert len(store._idle) == 1
        pid = os.fork()
        if pid == 0:  # the child: its own connection, the parent's left alone
            code = 1
            try:
                if store._idle == [] and store.run(ops.is_revoked(AP, "f1")) is True:
                    code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert len(store._idle) == 1
        assert store.run(ops.is_revoked(AP, "f1")) is True
    finally:
        store.close()
