"""Choose a backend from a URI or an existing client, limits-style: the scheme names the backend.

Backends are named by import path and loaded on first use, so the ``redis`` package is imported
only by an application that asks for ``redis://``.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any
from urllib.parse import urlsplit

from aauth_server.clock import SYSTEM_CLOCK, Clock
from aauth_server.storage.base import DEFAULT_PREFIX, AsyncPendingStore, PendingStore

log = logging.getLogger("aauth_server.storage")

_BACKENDS: dict[str, tuple[str, str, str]] = {
    # scheme: (module, sync class, async class)
    "memory": ("aauth_server.storage.memory", "MemoryStore", "AsyncMemoryStore"),
    "redis": ("aauth_server.storage.redis", "RedisStore", "AsyncRedisStore"),
    "rediss": ("aauth_server.storage.redis", "RedisStore", "AsyncRedisStore"),
    "redis+unix": ("aauth_server.storage.redis", "RedisStore", "AsyncRedisStore"),
}

_MEMORY_OPTIONS = frozenset({"prefix", "clock", "production", "state"})


def _backend(uri: str, asynchronous: bool) -> tuple[type[Any], str]:
    scheme = urlsplit(uri).scheme.lower()
    if scheme not in _BACKENDS:
        known = ", ".join(f"{s}://" for s in _BACKENDS)
        raise ValueError(f"unknown storage URI scheme {scheme!r}; use one of {known}")
    module, sync_name, async_name = _BACKENDS[scheme]
    cls: type[Any] = getattr(
        importlib.import_module(module), async_name if asynchronous else sync_name
    )
    return cls, scheme


def redis_url(uri: str) -> str:
    """``uri`` as redis-py reads it: redis-py spells a socket path ``unix://``;
    ``redis+unix://`` is the IANA-style name users write."""
    prefix = "redis+unix:"
    return "unix:" + uri[len(prefix) :] if uri[: len(prefix)].lower() == prefix else uri


def _open(uri_or_client: str | Any, asynchronous: bool, options: dict[str, Any]) -> Any:
    if not isinstance(uri_or_client, str):
        from aauth_server.storage import redis as backend

        return backend.wrap_client(uri_or_client, asynchronous=asynchronous, **options)
    cls, scheme = _backend(uri_or_client, asynchronous)
    if scheme == "memory":
        unknown = sorted(set(options) - _MEMORY_OPTIONS)
        if unknown:
            raise TypeError(f"memory:// does not take {', '.join(unknown)}")
        return cls(**options)
    # Accepted everywhere so one configuration works for every backend; only memory warns.
    options.pop("production", None)
    return cls.from_url(redis_url(uri_or_client), **options)


def open_store(uri_or_client: str | Any, **options: Any) -> PendingStore:
    """A sync store for ``memory://``, ``redis://``, ``rediss://``, ``redis+unix:///path`` or an
    existing ``redis.Redis`` client. ``prefix`` (default ``"aauth"``) and ``clock`` apply to every
    backend; ``production=True`` makes ``memory://`` warn; other options go to
    ``redis.Redis.from_url`` (``socket_timeout``, ``client_name``, ...)."""
    store: PendingStore = _open(uri_or_client, False, dict(options))
    return store


def open_async_store(uri_or_client: str | Any, **options: Any) -> AsyncPendingStore:
    """The async twin of ``open_store``; an existing client must be a ``redis.asyncio.Redis``."""
    store: AsyncPendingStore = _open(uri_or_client, True, dict(options))
    return store


def open_store_pair(
    store: str | PendingStore | None,
    async_store: AsyncPendingStore | None = None,
    *,
    clock: Clock = SYSTEM_CLOCK,
    prefix: str = DEFAULT_PREFIX,
) -> tuple[PendingStore, AsyncPendingStore]:
    """The sync and async stores over one backend, as a server configuration names them.

    ``store`` is a URI (default ``memory://``) or a sync store object, which then needs its
    async twin in ``async_store``.  A ``memory://`` pair shares one table, so sync and async
    callers of one process see the same records.  ``prefix`` namespaces the keys of a store
    opened from a URI (servers pass one derived from their issuer); a store object keeps
    the prefix it was built with.
    """
    if store is not None and not isinstance(store, str):
        if async_store is None:
            raise ValueError("a store object needs its async twin in async_store")
        if getattr(store, "prefix", None) == DEFAULT_PREFIX != prefix and not _in_memory(store):
            log.warning(
                "a shared store object with the default key prefix %r: records are not "
                "namespaced per server (build it with prefix=%r, or pass a URI)",
                DEFAULT_PREFIX,
                prefix,
            )
        return store, async_store
    if async_store is not None:
        raise ValueError("async_store goes with a sync store object in store")
    uri = store or "memory://"
    if uri == "memory://":
        from aauth_server.storage.memory import AsyncMemoryStore, MemoryState, MemoryStore

        state = MemoryState()
        return (
            MemoryStore(state, clock=clock, prefix=prefix),
            AsyncMemoryStore(state, clock=clock, prefix=prefix),
        )
    return open_store(uri, prefix=prefix), open_async_store(uri, prefix=prefix)


def _in_memory(store: object) -> bool:
    return type(store).__module__ == "aauth_server.storage.memory"
