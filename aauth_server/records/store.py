"""The record store: one SQL database, selected by URL, run sync and async.

``sqlite:///path`` is the embedded default (a file; WAL journal, writers begin ``IMMEDIATE``
so two workers never deadlock on a lock upgrade), ``sqlite://`` keeps the database in this
process's memory (tests, one-process development: one connection shared by both faces, the
async face runs it on a worker thread), and ``postgresql+psycopg://user@host/db`` is the
production choice (psycopg 3, sync and async).

:meth:`RecordStore.run` runs a :class:`~aauth_server.records.txn.Txn` on a pooled sync
connection, :meth:`RecordStore.arun` on the async engine of the running event loop.  Both
retry a transaction the database aborted for a serialization failure or a deadlock, and map
the rest onto the storage errors the drivers know: an unreachable database is
:class:`RecordsUnavailable` (``503``), a broken constraint :class:`RecordConflict`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from functools import partial
from operator import itemgetter
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from ..errors import ConfigurationError
from ..steps import Call
from ..storage.base import StorageError, StorageUnavailable
from .txn import PREPARED, InsertIgnore, Op, Rows, Sql, Txn, adrive, drive

T = TypeVar("T")
log = logging.getLogger("aauth_server.records")

#: Attempts at a transaction the database aborted to keep concurrent ones serializable.
ATTEMPTS = 5
#: PostgreSQL SQLSTATEs worth retrying: serialization_failure, deadlock_detected.
_RETRY_STATES = frozenset({"40001", "40P01"})
_WRITE = "aauth_write"


class _Marker:
    """A parameter's stand-in while planning a statement (see ``RecordStore._plan``)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class _Stale(Exception):
    """A kept connection the database had closed (see ``RecordStore._run_direct``)."""


class _NeedsConnection(Exception):
    """A statement :meth:`RecordStore._run_direct` cannot run on the bare driver."""


class RecordsUnavailable(StorageUnavailable):
    """The database did not answer (down, unreachable, locked too long)."""


class RecordConflict(StorageError):
    """A write broke a constraint the operation did not expect to meet."""


class RecordOp(Call):
    """A step that runs one transaction on a record store: the PS yields these beside its
    pending-store steps, and whichever driver runs the steps runs the transaction."""

    __slots__ = ("store", "txn")

    def __init__(self, store: RecordStore, txn: Txn[Any]) -> None:
        self.store = store
        self.txn = txn

    def call(self) -> Any:
        return self.store.run(self.txn)

    async def acall(self) -> Any:
        return await self.store.arun(self.txn)


def _sqlite_events(engine: Engine, *, memory: bool) -> None:
    @event.listens_for(engine, "connect")
    def connect(dbapi_connection: Any, record: Any) -> None:
        # We emit BEGIN ourselves (below): pysqlite's own transaction handling would
        # begin late and deferred.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout = 10000")
        cursor.execute("PRAGMA foreign_keys = ON")
        if not memory:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def begin(connection: Connection) -> None:
        # A writer takes the write lock up front: two deferred transactions that both read
        # and then try to write would otherwise fail at once with "database is locked".
        write = connection.get_execution_options().get(_WRITE)
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        cursor.close()


class RecordStore:
    """One database of records for one or more servers (rows carry their ``issuer``)."""

    def __init__(
        self,
        url: str,
        *,
        migrate: bool = False,
        pool_size: int = 5,
        connect_timeout: float = 5.0,
        echo: bool = False,
    ) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise ConfigurationError(f"records URL {url!r} is not a database URL") from exc
        backend, _, driver = parsed.drivername.partition("+")
        self.url = url
        self.backend = backend
        self.memory = backend == "sqlite" and parsed.database in (None, "", ":memory:")
        self._lock: threading.RLock | None = threading.RLock() if self.memory else None
        self._aengines: dict[asyncio.AbstractEventLoop, AsyncEngine] = {}
        self._inserts: dict[str, Any] = {}
        #: Per (statement, parameter names in call order): its SQL, compiled form and plan.
        self._compiled: dict[tuple[int, tuple[str, ...]], tuple[str, Any, Any]] = {}
        #: Operations that ran a statement the direct path cannot run (by ``Txn.name``).
        self._general: set[str] = set()
        self._closed = False
        #: Driver connections kept checked out between direct transactions (_run_direct).
        self._idle: list[Any] = []
        self._idle_max = 1 if self.memory else pool_size
        if backend == "sqlite":
            if driver not in ("", "pysqlite", "aiosqlite"):
                raise ConfigurationError("records: use sqlite:///path or sqlite:// (in memory)")
            sync_url = parsed.set(drivername="sqlite")
            self._async_url = parsed.set(drivername="sqlite+aiosqlite")
            options: dict[str, Any] = {"echo": echo}
            if self.memory:
                # One connection: an in-memory database lives and dies with it.
                options.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
            else:
                options["connect_args"] = {"timeout": connect_timeout}
            self.engine = create_engine(sync_url, **options)
            _sqlite_events(self.engine, memory=self.memory)
            self._async_options: dict[str, Any] = {
                "echo": echo,
                "connect_args": {"timeout": connect_timeout},
            }
        elif backend == "postgresql":
            if driver != "psycopg":
                raise ConfigurationError("records: PostgreSQL URLs are postgresql+psycopg://...")
            timeout = {"connect_timeout": max(1, round(connect_timeout))}
            pool: dict[str, Any] = {
                "pool_size": pool_size,
                "max_overflow": pool_size,
                "pool_pre_ping": True,
                "pool_timeout": connect_timeout,
            }
            self.engine = create_engine(parsed, echo=echo, connect_args=timeout, **pool)
            self._async_url = parsed
            self._async_options = {"echo": echo, "connect_args": timeout, **pool}
        else:
            raise ConfigurationError(
                f"records: unsupported database {backend!r} (sqlite or postgresql+psycopg)"
            )
        # Whoever disposes the pool (close(), a test) closes the kept ones; a forked child
        # forgets them (they are its parent's sessions).
        event.listen(self.engine, "engine_disposed", lambda engine: self._drop_idle())
        if not self.memory:
            _FILE_OR_SERVER.add(self)
        if migrate:
            from .migrate import upgrade

            upgrade(self)

    def __repr__(self) -> str:
        return f"RecordStore({self.engine.url.render_as_string(hide_password=True)!r})"

    # -- the two drivers ----------------------------------------------------------------------

    def run(self, txn: Txn[T]) -> T:
        """Run ``txn`` in one transaction on a sync connection."""
        if txn.name not in self._general:
            try:
                return self._run_direct(txn)
            except _NeedsConnection:
                # A statement only SQLAlchemy's execution can run: this operation takes
                # the general path from now on (nothing was committed: it rolled back).
                self._general.add(txn.name)
        for attempt in range(ATTEMPTS):
            try:
                with self._serialized(), self.engine.connect() as conn:
                    if txn.write and self.backend == "sqlite":
                        conn.execution_options(**{_WRITE: True})
                    with conn.begin():
                        return drive(txn.work(), lambda op: self._execute(conn, op))
            except DBAPIError as exc:
                if attempt + 1 < ATTEMPTS and _retryable(exc):
                    continue
                raise _mapped(exc, txn) from exc
            except PoolTimeout as exc:
                raise RecordsUnavailable("no database connection free") from exc
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _run_direct(self, txn: Txn[T]) -> T:
        """``txn`` on a pool connection's driver, without SQLAlchemy's ``Connection``: the
        operations on the hot path of a token request (a few statements built once, and
        inserts) pay for their statements, not for the connection's begin/commit machinery,
        which costs more than the statements.  Same transaction semantics as :meth:`run`:
        ``BEGIN IMMEDIATE`` for SQLite writes, ``BEGIN`` for its reads (our connect hook
        turned pysqlite's own handling off), the driver's implicit transaction on
        PostgreSQL; commit at the end, roll back on any failure.  Raises
        :class:`_NeedsConnection` at the first statement that is not prepared, before
        anything is committed.

        A connection that committed is kept for the next direct transaction (up to
        :attr:`_idle_max` of them) instead of going back through the pool's checkin and
        checkout.  The pool's pre-ping does not see a kept connection: one the database
        closed meanwhile fails at its first statement, before anything was committed, and
        the transaction runs again on a connection from the pool."""
        dbapi = self.engine.dialect.loaded_dbapi
        lock = self._lock
        idle = self._idle
        for attempt in range(ATTEMPTS):
            try:
                if lock is not None:
                    lock.acquire()
                try:
                    kept = True
                    try:
                        raw = idle.pop()
                    except IndexError:
                        kept = False
                        raw = self.engine.raw_connection()
                    committing = False
                    try:
                        driver: Any = raw.dbapi_connection
                        if self.backend == "sqlite":
                            driver.execute("BEGIN IMMEDIATE" if txn.write else "BEGIN")
                        result = drive(txn.work(), partial(self._execute_direct, driver))
                        committing = True
                        raw.commit()
                    except BaseException as exc:
                        if kept and not committing and self._disconnected(exc, driver):
                            raw.invalidate()  # closed and checked in: the pool replaces it
                            raise _Stale from exc
                        with suppress(Exception):  # a broken connection: the pool drops it
                            raw.rollback()
                        raw.close()
                        raise
                    if len(idle) < self._idle_max and not self._closed:
                        idle.append(raw)
                    else:
                        raw.close()
                    return result
                finally:
                    if lock is not None:
                        lock.release()
            except _Stale:
                # Nothing was committed.  The database likely dropped every connection (a
                # restart): the other kept ones go back too, and the transaction runs again
                # on a connection from the pool, which pings it first.
                self._drop_idle()
                continue
            except dbapi.Error as exc:
                wrapped = DBAPIError.instance(None, None, exc, dbapi.Error)
                if not isinstance(wrapped, DBAPIError):  # pragma: no cover - a driver error is one
                    raise
                if attempt + 1 < ATTEMPTS and _retryable(wrapped):
                    continue
                raise _mapped(wrapped, txn) from exc
            except DBAPIError as exc:  # the pool's checkout (connect, pre-ping)
                if attempt + 1 < ATTEMPTS and _retryable(exc):
                    continue
                raise _mapped(exc, txn) from exc
            except PoolTimeout as exc:
                raise RecordsUnavailable("no database connection free") from exc
        raise RecordsUnavailable(f"the record database is unavailable ({txn.name})")

    def _disconnected(self, exc: BaseException, driver: Any) -> bool:
        """``exc`` says the connection is gone (the dialect's test, as the pool uses it)."""
        if not isinstance(exc, self.engine.dialect.loaded_dbapi.Error):
            return False
        try:
            return bool(self.engine.dialect.is_disconnect(exc, driver, None))
        except Exception:  # pragma: no cover - the dialect's test itself failed
            return False

    def _drop_idle(self) -> None:
        """Close the kept connections (the pool they came from may be disposed already).
        The in-memory database's one connection is its data: it only goes back."""
        while self._idle:
            try:
                raw = self._idle.pop()
            except IndexError:  # pragma: no cover - another thread took the last one
                return
            with suppress(Exception):
                if self.memory:
                    raw.close()
                else:
                    raw.invalidate()

    def _execute_direct(self, driver: Any, op: Op) -> Rows:
        if isinstance(op, InsertIgnore):
            statement, values = self._statement(op)
            return self._execute_prepared(driver, Sql(statement, values))
        if id(op.statement) in PREPARED:
            return self._execute_prepared(driver, op)
        raise _NeedsConnection

    async def arun(self, txn: Txn[T]) -> T:
        """Run ``txn`` in one transaction on an async connection."""
        if self.memory:
            # The in-memory database is one connection; a worker thread keeps the loop free.
            return await asyncio.to_thread(self.run, txn)
        engine = self._aengine()
        for attempt in range(ATTEMPTS):
            try:
                async with engine.connect() as conn:
                    if txn.write and self.backend == "sqlite":
                        await conn.execution_options(**{_WRITE: True})
                    async with conn.begin():
                        return await adrive(txn.work(), lambda op: self._aexecute(conn, op))
            except DBAPIError as exc:
                if attempt + 1 < ATTEMPTS and _retryable(exc):
                    continue
                raise _mapped(exc, txn) from exc
            except PoolTimeout as exc:
                raise RecordsUnavailable("no database connection free") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def op(self, txn: Txn[Any]) -> RecordOp:
        """``txn`` as a step for :class:`~aauth_server.steps.Driver`."""
        return RecordOp(self, txn)

    # -- statements ---------------------------------------------------------------------------

    def _statement(self, op: Op) -> tuple[Any, Any]:
        if isinstance(op, Sql):
            return op.statement, op.params
        statement = self._inserts.get(op.table.name)
        if statement is None:
            insert = postgresql.insert if self.backend == "postgresql" else sqlite.insert
            # RETURNING says whether a row went in: drivers need not report an insert's
            # rowcount.  Built once per table; the values are parameters.
            key = next(iter(op.table.primary_key.columns))
            statement = insert(op.table).on_conflict_do_nothing().returning(key)
            self._inserts[op.table.name] = statement
        return statement, dict(op.values)

    def _execute(self, conn: Connection, op: Op) -> Rows:
        driver = conn.connection.dbapi_connection
        if isinstance(op, InsertIgnore):
            statement, values = self._statement(op)
            return self._execute_prepared(driver, Sql(statement, values))
        if id(op.statement) in PREPARED:
            return self._execute_prepared(driver, op)
        result = conn.execute(*self._statement(op))
        if result.returns_rows:
            rows = tuple(result.mappings().all())
            return Rows(rows, len(rows))
        return Rows((), result.rowcount)

    def _execute_prepared(self, driver: Any, op: Sql) -> Rows:
        """A statement built once, compiled once, run on the driver's cursor inside the
        connection's transaction: what SQLAlchemy's execution would do for these plain
        statements (no type processing is needed for their str, float, int and bytes), at a
        fraction of its per-call cost on the hot path."""
        params = op.params or {}
        # Keyed by the parameters in the caller's order: an operation passes the same names
        # in the same order on every call, so the sort happens once, when compiling.
        key = (id(op.statement), tuple(params))
        plan = self._compiled.get(key)
        if plan is None:
            plan = self._plan(op.statement, params)
            self._compiled[key] = plan
        sql, compiled, order = plan
        args: Any
        if order is None:
            # The statement holds literal binds of its own (or renamed ones): SQLAlchemy
            # merges them with ours, in the driver's style.
            values = compiled.construct_params(dict(params))
            args = (
                tuple(values[name] for name in compiled.positiontup)
                if compiled.positional
                else values
            )
        elif compiled.positional:
            args = order(params)
        else:
            args = params if type(params) is dict else dict(params)
        cursor = driver.cursor()
        try:
            cursor.execute(sql, args)
            description = cursor.description
            if description is None:
                return Rows((), cursor.rowcount)
            columns = [d[0] for d in description]
            rows = tuple([dict(zip(columns, row, strict=True)) for row in cursor.fetchall()])
            return Rows(rows, len(rows))
        finally:
            cursor.close()

    def _plan(self, statement: Any, params: Mapping[str, Any]) -> tuple[str, Any, Any]:
        """``(sql, compiled, order)`` for ``statement`` run with ``params``' names: ``order``
        picks the parameters in the driver's positional order (``()`` for a named driver
        style, whose parameters pass as they are) when the statement binds exactly our
        parameters, under their own names; None when SQLAlchemy must merge binds (a literal
        bind of the statement, an escaped name), per call."""
        names = sorted(params)
        compiled = statement.compile(dialect=self.engine.dialect, column_keys=names)
        # Each of our parameters stands for itself: what construct_params makes of them shows
        # whether anything else is bound, and under which names.
        markers = {name: _Marker(name) for name in names}
        values = compiled.construct_params(markers)
        order: Any = None
        if all(type(v) is _Marker and values.get(v.name) is v for v in values.values()) and len(
            values
        ) == len(names):
            order = _picker(compiled.positiontup) if compiled.positional else ()
        return compiled.string, compiled, order

    async def _aexecute(self, conn: AsyncConnection, op: Op) -> Rows:
        result = await conn.execute(*self._statement(op))
        if result.returns_rows:
            rows = tuple(result.mappings().all())
            return Rows(rows, len(rows))
        return Rows((), result.rowcount)

    @contextmanager
    def _serialized(self) -> Iterator[None]:
        if self._lock is None:
            yield
            return
        with self._lock:
            yield

    def _aengine(self) -> AsyncEngine:
        if self._closed:
            raise RecordsUnavailable("the record store is closed")
        loop = asyncio.get_running_loop()
        engine = self._aengines.get(loop)
        if engine is None:
            # Pooled connections belong to the loop that opened them: one engine per loop,
            # and the engines of loops that have ended are dropped without touching them.
            for ended in [other for other in self._aengines if other.is_closed()]:
                self._aengines.pop(ended).sync_engine.dispose(close=False)
            engine = create_async_engine(self._async_url, **self._async_options)
            if self.backend == "sqlite":
                _sqlite_events(engine.sync_engine, memory=False)
            self._aengines[loop] = engine
        return engine

    # -- lifecycle ----------------------------------------------------------------------------

    def check(self) -> None:
        """Fail early: the database answers and its schema is the one this code expects
        (``ConfigurationError`` naming the command that migrates it otherwise)."""
        from .migrate import check_schema

        check_schema(self)

    def close(self) -> None:
        """Close the sync pool (and forget async engines of loops that are gone)."""
        self._closed = True
        self._drop_idle()
        for loop, engine in list(self._aengines.items()):
            if loop.is_closed():
                self._aengines.pop(loop)
                engine.sync_engine.dispose(close=False)
        self.engine.dispose()

    async def aclose(self) -> None:
        """Close the async engine of the running loop (call it on the loop that served)."""
        loop = asyncio.get_running_loop()
        engine = self._aengines.pop(loop, None)
        if engine is not None:
            await engine.dispose()

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A sync connection in a transaction (migrations and maintenance)."""
        with self._serialized(), self.engine.begin() as conn:
            yield conn


#: Stores whose kept connections a forked child must not use (see RecordStore.__init__).
_FILE_OR_SERVER: weakref.WeakSet[RecordStore] = weakref.WeakSet()


#: A forked child's inherited kept connections: referenced for good, so that neither the
#: pool (a checkin) nor the driver (closing on collection) ever touches the parent's sessions.
_INHERITED: list[Any] = []


def _forget_kept_connections() -> None:
    for store in list(_FILE_OR_SERVER):
        _INHERITED.extend(store._idle)
        store._idle = []


if hasattr(os, "register_at_fork"):  # pragma: no branch - POSIX
    os.register_at_fork(after_in_child=_forget_kept_connections)


def _picker(names: Sequence[str]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """``params -> tuple(params[name] for name in names)``, in C for two names or more."""
    if len(names) >= 2:
        return itemgetter(*names)
    return lambda params: tuple([params[name] for name in names])


def _retryable(exc: DBAPIError) -> bool:
    state = getattr(exc.orig, "sqlstate", None)
    return isinstance(state, str) and state in _RETRY_STATES


def _mapped(exc: DBAPIError, txn: Txn[Any]) -> StorageError:
    if isinstance(exc, IntegrityError):
        return RecordConflict(f"{txn.name}: {exc.orig}")
    if isinstance(exc, OperationalError | InterfaceError) or exc.connection_invalidated:
        log.warning("records: %s failed: %s", txn.name, exc.orig)
        return RecordsUnavailable(f"the record database is unavailable ({txn.name})")
    return StorageError(f"{txn.name}: {exc}")


def open_record_store(url: str | RecordStore, *, migrate: bool = False) -> RecordStore:
    """A store for ``url`` (a store passes through unchanged)."""
    if isinstance(url, RecordStore):
        return url
    return RecordStore(url, migrate=migrate)


__all__ = [
    "ATTEMPTS",
    "RecordConflict",
    "RecordOp",
    "RecordStore",
    "RecordsUnavailable",
    "open_record_store",
]
