"""Storage contracts: the record type, the sync and async store interfaces, and their errors.

Records are versioned JSON documents with an absolute expiry. Versions make every update a
compare-and-set, so two workers answering the same pending request cannot both win.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

DEFAULT_PREFIX = "aauth"
RETRY_AFTER = 5
"""Seconds a caller is told to wait when the backend is unreachable (the digest's 5 s default)."""


class StorageError(Exception):
    """Base class for every storage failure; no backend exception escapes a store unwrapped."""


class StorageUnavailable(StorageError):
    """The backend is down or timed out; the caller may answer 503 with ``Retry-After``."""

    def __init__(self, detail: str = "storage unavailable", *, retry_after: int = RETRY_AFTER):
        super().__init__(detail)
        self.retry_after = retry_after


class VersionConflict(StorageError):
    """``compare_and_set`` lost the race: the stored version is not the one the caller read."""


class RecordExists(StorageError):
    """``create`` found a live record under the same kind and id."""


class RecordNotFound(StorageError):
    """The record is gone (never created, consumed, deleted or expired)."""


@dataclass(frozen=True, slots=True)
class Record:
    kind: str
    id: str
    version: int
    data: Mapping[str, Any]
    expires_at: float


class PendingStore(Protocol):
    def create(self, kind: str, id: str, data: Mapping[str, Any], ttl: float) -> Record: ...

    def get(self, kind: str, id: str) -> Record | None: ...

    def compare_and_set(
        self,
        kind: str,
        id: str,
        version: int,
        data: Mapping[str, Any],
        ttl: float | None = None,
    ) -> Record: ...

    def consume(self, kind: str, id: str) -> Record | None: ...

    def remember_once(self, key: str, ttl: float) -> bool: ...

    def increment(self, key: str, amount: int, ttl: float) -> int: ...

    def delete(self, kind: str, id: str) -> bool: ...

    def check(self) -> None: ...

    def close(self) -> None: ...


class AsyncPendingStore(Protocol):
    async def create(self, kind: str, id: str, data: Mapping[str, Any], ttl: float) -> Record: ...

    async def get(self, kind: str, id: str) -> Record | None: ...

    async def compare_and_set(
        self,
        kind: str,
        id: str,
        version: int,
        data: Mapping[str, Any],
        ttl: float | None = None,
    ) -> Record: ...

    async def consume(self, kind: str, id: str) -> Record | None: ...

    async def remember_once(self, key: str, ttl: float) -> bool: ...

    async def increment(self, key: str, amount: int, ttl: float) -> int: ...

    async def delete(self, kind: str, id: str) -> bool: ...

    async def check(self) -> None: ...

    async def wait_for_change(
        self, kind: str, id: str, version: int, timeout: float
    ) -> Record | None: ...

    async def aclose(self) -> None: ...


def encode_data(data: Mapping[str, Any]) -> str:
    """Serialise record data as compact JSON; anything JSON cannot hold is refused here.

    Raises TypeError for non-JSON values (bytes, sets, objects) and ValueError for NaN/Infinity,
    so pickle-like surprises never reach a backend.
    """
    if not isinstance(data, Mapping):
        raise TypeError(f"record data must be a mapping, not {type(data).__name__}")
    return json.dumps(data, separators=(",", ":"), allow_nan=False, ensure_ascii=False)


def decode_data(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise StorageError("stored record data is not a JSON object")
    return value


def check_ttl(ttl: float) -> float:
    if not isinstance(ttl, int | float) or isinstance(ttl, bool) or not math.isfinite(ttl):
        raise ValueError("ttl must be a finite number of seconds")
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    return float(ttl)


def ttl_millis(ttl: float) -> int:
    # Round up so a sub-millisecond TTL never becomes 0 (Redis rejects PX 0).
    return max(1, math.ceil(ttl * 1000))


def record_key(prefix: str, kind: str, id: str) -> str:
    # The hash tag around the id puts every kind of one flow in the same Redis Cluster slot.
    return f"{prefix}:{kind}:{{{id}}}"


def once_key(prefix: str, key: str) -> str:
    return f"{prefix}:once:{{{key}}}"


def counter_key(prefix: str, key: str) -> str:
    return f"{prefix}:count:{{{key}}}"


def issuer_prefix(issuer: str, role: str) -> str:
    """The store prefix a server gets by default: its role and its issuer's host[:port],
    so two servers sharing one Redis database never read each other's records (no braces:
    they would change the Redis Cluster hash tag of every key)."""
    host = issuer.partition("://")[2].rstrip("/")
    return f"{DEFAULT_PREFIX}:{role}:{host}".replace("{", "%7B").replace("}", "%7D")


def changes_channel(prefix: str) -> str:
    return f"{prefix}:changes"


def change_subject(kind: str, id: str) -> str:
    return f"{kind}:{id}"


class ChangeWaiters:
    """Events of the tasks waiting on each subject; one notification wakes all of them."""

    def __init__(self) -> None:
        self._events: dict[str, set[asyncio.Event]] = {}
        self._parked = 0

    def add(self, subject: str) -> asyncio.Event:
        event = asyncio.Event()
        self._events.setdefault(subject, set()).add(event)
        return event

    def discard(self, subject: str, event: asyncio.Event) -> None:
        events = self._events.get(subject)
        if events is not None:
            events.discard(event)
            if not events:
                del self._events[subject]

    def notify(self, subject: str) -> None:
        for event in self._events.get(subject, ()):
            event.set()

    def notify_all(self) -> None:
        for events in self._events.values():
            for event in events:
                event.set()

    def __len__(self) -> int:
        return sum(len(events) for events in self._events.values())

    @property
    def parked(self) -> int:
        """Waiters blocked on their event, i.e. past their read; registered ones may still be
        queued for that read behind a burst, and are not idle until it is done."""
        return self._parked

    async def park(self, event: asyncio.Event, timeout: float) -> bool:
        """Block until ``event`` is set (True) or ``timeout`` runs out (False)."""
        self._parked += 1
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        finally:
            self._parked -= 1
        return True


async def wait_for_version(
    waiters: ChangeWaiters,
    subject: str,
    fetch: Callable[[], Awaitable[Record | None]],
    version: int,
    timeout: float,
) -> Record | None:
    """Re-read only when notified, until the version moves, the record goes, or time is up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0.0, timeout)
    # Registered before the first read, so a change landing between read and wait still wakes us.
    event = waiters.add(subject)
    try:
        while True:
            event.clear()
            current = await fetch()
            if current is None or current.version != version:
                return current
            remaining = deadline - loop.time()
            if remaining <= 0:
                return current
            if not await waiters.park(event, remaining):
                return await fetch()
    finally:
        waiters.discard(subject, event)
