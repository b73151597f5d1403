"""The records contract runs on every backend (SQLite in memory, a SQLite file, a real
PostgreSQL in a database made for the test) and through both faces (``run``, ``arun``).

A test body is an ``async def`` taking a :class:`Face`; ``await face(txn)`` runs the
transaction through the face under test, so one body checks both drivers.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from aauth_server.records import RecordOps, RecordStore, Txn
from aauth_server.records.rows import MissionRow
from tests.postgres_server import fresh_database

T = TypeVar("T")
ISSUER = "https://ps.example"
#: The mission fixtures the contract tests share: a time, two mission digests, an agent.
T0 = 1_900_000_000.0
S256 = "A" * 43
OTHER = "B" * 43
AGENT = "aauth:assistant@agent.example"
AP = "https://agent.example"
BACKENDS = ("sqlite-memory", "sqlite-file", "postgresql")


@contextmanager
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite-memory":
        yield "sqlite://"
    elif backend == "sqlite-file":
        yield f"sqlite:///{tmp_path / 'records.db'}"
    else:
        with fresh_database() as url:
            yield url


@dataclass
class Face:
    """One store, one issuer's operations, and the face (sync or async) under test."""

    store: RecordStore
    ops: RecordOps
    asynchronous: bool

    async def __call__(self, txn: Txn[T]) -> T:
        if self.asynchronous:
            return await self.store.arun(txn)
        return self.store.run(txn)

    def other(self, issuer: str) -> Face:
        return Face(self.store, RecordOps(issuer), self.asynchronous)


Body = Callable[[Face], Awaitable[None]]


@dataclass
class Backend:
    name: str
    url: str
    asynchronous: bool

    def open(self, **kw: Any) -> RecordStore:
        return RecordStore(self.url, **kw)

    def run(self, body: Body, store: RecordStore | None = None) -> None:
        own = store is None
        opened = store or self.open(migrate=True)

        async def main() -> None:
            try:
                await body(Face(opened, RecordOps(ISSUER), self.asynchronous))
            finally:
                await opened.aclose()

        try:
            asyncio.run(main())
        finally:
            if own:
                opened.close()


def alices_mission(
    ops: RecordOps, s256: str = S256, blob: bytes = b"blob"
) -> Txn[tuple[MissionRow, bool]]:
    """Create an active mission of AGENT's for alice, approved at T0, with no expiry."""
    return ops.create_mission(
        s256=s256,
        blob=blob,
        agent_issuer=AP,
        agent=AGENT,
        person="alice",
        approved_at=T0,
        expires_at=None,
    )


def run_in_threads(count: int, writer: Callable[[int], None]) -> None:
    """``writer(0)`` .. ``writer(count - 1)`` in threads released together; an exception in
    any of them fails the caller."""
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def run(n: int) -> None:
        try:
            start.wait()
            writer(n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


def run_in_tasks(store: RecordStore, count: int, writer: Callable[[int], Awaitable[None]]) -> None:
    """``writer(0)`` .. ``writer(count - 1)`` as tasks of one event loop, after which the
    store's async engine (bound to that loop) is closed."""

    async def main() -> None:
        try:
            await asyncio.gather(*(writer(n) for n in range(count)))
        finally:
            await store.aclose()

    asyncio.run(main())


@pytest.fixture(params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["sync", "async"])
def face_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def backend(backend_name: str, face_name: str, tmp_path: Path) -> Iterator[Backend]:
    with database_url(backend_name, tmp_path) as url:
        yield Backend(backend_name, url, face_name == "async")
