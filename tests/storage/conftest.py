"""One set of fixtures for the storage contract: every backend, sync and async.

A test body is an ``async def`` taking a store with awaitable methods; sync stores are driven
through ``SyncAsAsync`` so the same body checks both shapes. Real-Redis stores get a unique key
prefix and their keys are deleted afterwards, so a shared Redis is never flushed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import fakeredis
import pytest
import redis

from aauth_server.clock import FixedClock
from aauth_server.storage import PendingStore, Record, open_async_store, open_store
from tests.redis_server import ensure_redis

START = 1_700_000_000.0


class SyncAsAsync:
    """Awaitable view of a sync store (no waiting: that is an async-only feature)."""

    def __init__(self, store: PendingStore) -> None:
        self.sync = store

    async def create(self, kind: str, id: str, data: Mapping[str, Any], ttl: float) -> Record:
        return self.sync.create(kind, id, data, ttl)

    async def get(self, kind: str, id: str) -> Record | None:
        return self.sync.get(kind, id)

    async def compare_and_set(
        self, kind: str, id: str, version: int, data: Mapping[str, Any], ttl: float | None = None
    ) -> Record:
        return self.sync.compare_and_set(kind, id, version, data, ttl)

    async def consume(self, kind: str, id: str) -> Record | None:
        return self.sync.consume(kind, id)

    async def remember_once(self, key: str, ttl: float) -> bool:
        return self.sync.remember_once(key, ttl)

    async def increment(self, key: str, amount: int, ttl: float) -> int:
        return self.sync.increment(key, amount, ttl)

    async def delete(self, kind: str, id: str) -> bool:
        return self.sync.delete(kind, id)

    async def check(self) -> None:
        self.sync.check()

    async def aclose(self) -> None:
        self.sync.close()


Body = Callable[[Any], Awaitable[None]]


@dataclass
class Backend:
    name: str
    asynchronous: bool
    opener: Callable[[], Any]
    clock: FixedClock | None = None
    prefix: str = field(default_factory=lambda: f"aauth-test-{uuid.uuid4().hex}")

    def run(self, body: Body) -> None:
        async def main() -> None:
            opened = self.opener()
            store = opened if self.asynchronous else SyncAsAsync(opened)
            try:
                await body(store)
            finally:
                await store.aclose()

        asyncio.run(main())

    async def pass_time(self, seconds: float) -> None:
        """Memory stores read an injected clock; Redis expires keys on its own clock."""
        if self.clock is not None:
            self.clock.advance(seconds)
        else:
            await asyncio.sleep(seconds)


def _memory(asynchronous: bool) -> Backend:
    clock = FixedClock(START)
    opener = open_async_store if asynchronous else open_store
    return Backend("memory", asynchronous, lambda: opener("memory://", clock=clock), clock)


def _fakeredis(asynchronous: bool) -> Backend:
    server = fakeredis.FakeServer()

    def opener() -> Any:
        if asynchronous:
            return open_async_store(fakeredis.FakeAsyncRedis(server=server), prefix=made.prefix)
        return open_store(fakeredis.FakeRedis(server=server), prefix=made.prefix)

    made = Backend("fakeredis", asynchronous, opener)
    return made


def _real_redis(asynchronous: bool) -> Backend:
    url = ensure_redis()

    def opener() -> Any:
        opener = open_async_store if asynchronous else open_store
        return opener(url, prefix=made.prefix, socket_timeout=5)

    made = Backend("redis", asynchronous, opener)
    return made


def delete_prefix(url: str, prefix: str) -> None:
    with redis.Redis.from_url(url) as admin:
        keys = list(admin.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            admin.delete(*keys)


MAKERS = {"memory": _memory, "fakeredis": _fakeredis, "redis": _real_redis}


def _make(request: pytest.FixtureRequest, name: str, asynchronous: bool) -> Iterator[Backend]:
    backend = MAKERS[name](asynchronous)
    yield backend
    if name == "redis":
        delete_prefix(ensure_redis(), backend.prefix)


@pytest.fixture(
    params=[(name, mode) for name in MAKERS for mode in (False, True)],
    ids=lambda p: f"{p[0]}-{'async' if p[1] else 'sync'}",
)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    name, asynchronous = request.param
    yield from _make(request, name, asynchronous)


@pytest.fixture(params=list(MAKERS), ids=lambda p: f"{p}-async")
def async_backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    yield from _make(request, request.param, True)


@pytest.fixture
def redis_url() -> str:
    return ensure_redis()
