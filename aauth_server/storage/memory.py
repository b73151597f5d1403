"""``memory://``: one process, a dict behind a lock. For tests, demos and single-worker servers.

Records are kept as JSON text, exactly as Redis keeps them, so both backends accept and return
the same data and a caller can never mutate a stored record through a returned one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aauth_server.clock import SYSTEM_CLOCK, Clock
from aauth_server.storage.base import (
    DEFAULT_PREFIX,
    ChangeWaiters,
    Record,
    RecordExists,
    RecordNotFound,
    VersionConflict,
    check_ttl,
    counter_key,
    decode_data,
    encode_data,
    once_key,
    record_key,
    wait_for_version,
)

log = logging.getLogger("aauth_server.storage")

_SWEEP_EVERY = 1024
"""Writes between sweeps of expired entries, so keys nobody reads again cannot pile up."""


@dataclass(slots=True)
class _Entry:
    kind: str
    id: str
    version: int
    data: str
    expires_at: float


class MemoryState:
    """The shared table; a sync and an async store over the same state see the same records."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: dict[str, _Entry] = {}
        self.once: dict[str, float] = {}
        self.counters: dict[str, tuple[int, float]] = {}
        self.listeners: list[Callable[[str], None]] = []
        self._writes = 0

    def wrote(self, now: float) -> None:
        """Called with the lock held after every write."""
        self._writes += 1
        if self._writes % _SWEEP_EVERY:
            return
        for key in [k for k, e in self.records.items() if e.expires_at <= now]:
            del self.records[key]
        for key in [k for k, exp in self.once.items() if exp <= now]:
            del self.once[key]
        for key in [k for k, (_, exp) in self.counters.items() if exp <= now]:
            del self.counters[key]

    def notify(self, key: str) -> None:
        for listener in list(self.listeners):
            listener(key)


def _record(entry: _Entry) -> Record:
    return Record(entry.kind, entry.id, entry.version, decode_data(entry.data), entry.expires_at)


class MemoryStore:
    """Synchronous ``PendingStore`` in process memory."""

    def __init__(
        self,
        state: MemoryState | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        clock: Clock = SYSTEM_CLOCK,
        production: bool = False,
    ) -> None:
        if production:
            log.warning(
                "memory:// storage in production: pending requests, replay guards and "
                "long polls are not shared between workers and vanish on restart; use redis://"
            )
        self.state = state if state is not None else MemoryState()
        self.prefix = prefix
        self.clock = clock

    def _live(self, key: str, now: float) -> _Entry | None:
        entry = self.state.records.get(key)
        if entry is not None and entry.expires_at <= now:
            del self.state.records[key]
            return None
        return entry

    def create(self, kind: str, id: str, data: Mapping[str, Any], ttl: float) -> Record:
        text = encode_data(data)
        ttl = check_ttl(ttl)
        key = record_key(self.prefix, kind, id)
        with self.state.lock:
            now = self.clock.now()
            if self._live(key, now) is not None:
                raise RecordExists(f"{kind} {id!r} already exists")
            entry = _Entry(kind, id, 1, text, now + ttl)
            self.state.records[key] = entry
            self.state.wrote(now)
            record = _record(entry)
        self.state.notify(key)
        return record

    def get(self, kind: str, id: str) -> Record | None:
        key = record_key(self.prefix, kind, id)
        state = self.state
        with state.lock:
            # _live, with the clock read only when there is an entry to expire (most reads
            # on the token path are misses: nothing revoked, no cut-off).
            entry = state.records.get(key)
            if entry is None:
                return None
            if entry.expires_at <= self.clock.now():
                del state.records[key]
                return None
            return _record(entry)

    def compare_and_set(
        self,
        kind: str,
        id: str,
        version: int,
        data: Mapping[str, Any],
        ttl: float | None = None,
    ) -> Record:
        text = encode_data(data)
        if ttl is not None:
            ttl = check_ttl(ttl)
        key = record_key(self.prefix, kind, id)
        with self.state.lock:
            now = self.clock.now()
            entry = self._live(key, now)
            if entry is None:
                raise RecordNotFound(f"{kind} {id!r} not found")
            if entry.version != version:
                raise VersionConflict(f"{kind} {id!r} is at version {entry.version}, not {version}")
            expires_at = entry.expires_at if ttl is None else now + ttl
            entry = _Entry(kind, id, version + 1, text, expires_at)
            self.state.records[key] = entry
            self.state.wrote(now)
            record = _record(entry)
        self.state.notify(key)
        return record

    def consume(self, kind: str, id: str) -> Record | None:
        key = record_key(self.prefix, kind, id)
        with self.state.lock:
            entry = self._live(key, self.clock.now())
            if entry is None:
                return None
            del self.state.records[key]
        self.state.notify(key)
        return _record(entry)

    def remember_once(self, key: str, ttl: float) -> bool:
        ttl = check_ttl(ttl)
        full = once_key(self.prefix, key)
        with self.state.lock:
            now = self.clock.now()
            expires_at = self.state.once.get(full)
            if expires_at is not None and expires_at > now:
                return False
            self.state.once[full] = now + ttl
            self.state.wrote(now)
            return True

    def increment(self, key: str, amount: int, ttl: float) -> int:
        ttl = check_ttl(ttl)
        full = counter_key(self.prefix, key)
        with self.state.lock:
            now = self.clock.now()
            value, expires_at = self.state.counters.get(full, (0, now + ttl))
            if expires_at <= now:
                value, expires_at = 0, now + ttl
            value += int(amount)
            self.state.counters[full] = (value, expires_at)
            self.state.wrote(now)
            return value

    def delete(self, kind: str, id: str) -> bool:
        return self.consume(kind, id) is not None

    def check(self) -> None:
        return None

    def close(self) -> None:
        return None


class AsyncMemoryStore:
    """``AsyncPendingStore`` over a ``MemoryState``; waiters wake on an ``asyncio.Event``.

    Writes made through a sync ``MemoryStore`` on another thread wake these waiters too: the
    state's listener hands the notification to the event loop thread-safely.
    """

    def __init__(
        self,
        state: MemoryState | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        clock: Clock = SYSTEM_CLOCK,
        production: bool = False,
    ) -> None:
        self.sync = MemoryStore(state, prefix=prefix, clock=clock, production=production)
        self._waiters = ChangeWaiters()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def state(self) -> MemoryState:
        return self.sync.state

    @property
    def prefix(self) -> str:
        return self.sync.prefix

    def _on_change(self, key: str) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._waiters.notify, key)

    async def create(self, kind: str, id: str, data: Mapping[str, Any], ttl: float) -> Record:
        return self.sync.create(kind, id, data, ttl)

    async def get(self, kind: str, id: str) -> Record | None:
        return self.sync.get(kind, id)

    async def compare_and_set(
        self,
        kind: str,
        id: str,
        version: int,
        data: Mapping[str, Any],
        ttl: float | None = None,
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
        return None

    async def wait_for_change(
        self, kind: str, id: str, version: int, timeout: float
    ) -> Record | None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self.state.listeners.append(self._on_change)
        return await wait_for_version(
            self._waiters,
            record_key(self.sync.prefix, kind, id),
            lambda: self.get(kind, id),
            version,
            timeout,
        )

    async def aclose(self) -> None:
        if self._loop is not None:
            self.state.listeners.remove(self._on_change)
            self._loop = None
