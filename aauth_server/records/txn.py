"""Record operations written once, as transactions the sync and the async store both run.

An operation is a generator that yields what it needs from the database (:class:`Sql`, a
statement; :class:`InsertIgnore`, an insert that does nothing when the key exists) and gets
back :class:`Rows`.  :class:`Txn` wraps the generator's factory with whether it writes, so
a store can begin the right kind of transaction, and re-create the generator to retry the
whole transaction after a serialization failure.  The store runs the generator inside one
database transaction: everything it yields commits together or not at all.

This is the same split as :mod:`aauth_server.steps`: the logic is written once, the two
drivers (:meth:`RecordStore.run`, :meth:`RecordStore.arun`) only execute statements.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, ParamSpec, TypeVar

from sqlalchemy import Table
from sqlalchemy.sql.base import Executable

T = TypeVar("T")
P = ParamSpec("P")


@dataclass(frozen=True, slots=True)
class Sql:
    """Execute one statement; the answer is its :class:`Rows`."""

    statement: Executable


@dataclass(frozen=True, slots=True)
class InsertIgnore:
    """Insert ``values`` into ``table`` unless a row with the same key exists
    (``ON CONFLICT DO NOTHING``); the answer's ``rowcount`` is 1 when it inserted."""

    table: Table
    values: Mapping[str, Any]


Op = Sql | InsertIgnore


@dataclass(frozen=True, slots=True)
class Rows:
    """A statement's rows (as mappings) and its row count, read in full."""

    rows: tuple[Mapping[Any, Any], ...] = ()
    rowcount: int = 0

    def first(self) -> Mapping[Any, Any] | None:
        return self.rows[0] if self.rows else None

    def scalar(self) -> Any:
        row = self.first()
        return None if row is None else next(iter(row.values()))


Work = Generator[Op, Rows, T]


@dataclass(frozen=True, slots=True)
class Txn(Generic[T]):
    """One transaction: ``work()`` makes a fresh generator for each attempt."""

    work: Callable[[], Work[T]]
    write: bool = True
    name: str = field(default="transaction")


def transaction(*, write: bool = True) -> Callable[[Callable[P, Work[T]]], Callable[P, Txn[T]]]:
    """Turn a generator function into a function returning a :class:`Txn` of it."""

    def decorate(fn: Callable[P, Work[T]]) -> Callable[P, Txn[T]]:
        @functools.wraps(fn)
        def make(*args: P.args, **kwargs: P.kwargs) -> Txn[T]:
            return Txn(lambda: fn(*args, **kwargs), write, fn.__name__)

        return make

    return decorate


def drive(work: Work[T], execute: Callable[[Op], Rows]) -> T:
    """Run ``work`` to its end with a synchronous ``execute``."""
    try:
        op = next(work)
        while True:
            op = work.send(execute(op))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def adrive(work: Work[T], execute: Callable[[Op], Any]) -> T:
    """Run ``work`` to its end with an awaitable ``execute``."""
    try:
        op = next(work)
        while True:
            op = work.send(await execute(op))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


__all__ = [
    "InsertIgnore",
    "Op",
    "Rows",
    "Sql",
    "Txn",
    "Work",
    "adrive",
    "drive",
    "transaction",
]
