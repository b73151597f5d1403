"""Pending-request storage: versioned JSON records with TTLs, exactly-once consume, a replay
guard, and change notifications for long polls. ``memory://`` for one process, ``redis://`` for
many; ``open_store`` / ``open_async_store`` pick the backend from a URI or a client."""

from __future__ import annotations

from aauth_server.storage.base import (
    AsyncPendingStore,
    PendingStore,
    Record,
    RecordExists,
    RecordNotFound,
    StorageError,
    StorageUnavailable,
    VersionConflict,
)
from aauth_server.storage.memory import AsyncMemoryStore, MemoryState, MemoryStore
from aauth_server.storage.uri import open_async_store, open_store

__all__ = [
    "AsyncMemoryStore",
    "AsyncPendingStore",
    "MemoryState",
    "MemoryStore",
    "PendingStore",
    "Record",
    "RecordExists",
    "RecordNotFound",
    "StorageError",
    "StorageUnavailable",
    "VersionConflict",
    "open_async_store",
    "open_store",
]
