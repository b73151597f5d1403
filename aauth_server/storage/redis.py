"""``redis://``: stores shared by every worker and process, sync and async.

The ``redis`` package is imported only when a store is built, so importing ``aauth_server``
never needs it. Multi-step updates run as Lua scripts shipped as package data, which Redis
executes atomically; each successful write publishes ``kind:id:version`` on ``{prefix}:changes``
(version 0 = gone) so long polls wake on a notification instead of polling.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from aauth_server.clock import SYSTEM_CLOCK, Clock
from aauth_server.storage.base import (
    DEFAULT_PREFIX,
    ChangeWaiters,
    Record,
    RecordExists,
    RecordNotFound,
    StorageError,
    StorageUnavailable,
    VersionConflict,
    change_subject,
    changes_channel,
    check_ttl,
    counter_key,
    encode_data,
    once_key,
    record_key,
    ttl_millis,
    wait_for_version,
)

if TYPE_CHECKING:
    import redis
    import redis.asyncio
    from redis.asyncio.client import PubSub

log = logging.getLogger("aauth_server.storage")

_SUBSCRIBE_TIMEOUT = 5.0
"""Upper bound on waiting for the SUBSCRIBE confirmation when the client sets no socket timeout."""


@cache
def _lua(name: str) -> str:
    return (resources.files("aauth_server.storage") / "lua" / f"{name}.lua").read_text("utf-8")


@contextmanager
def _translated() -> Iterator[None]:
    """Turn every redis failure into a StorageError, keeping the cause chained."""
    import redis.exceptions as rx

    try:
        yield
    except (rx.AuthenticationError, rx.AuthorizationError) as exc:
        # Wrong credentials do not heal by retrying, so they are not "unavailable".
        raise StorageError(f"redis refused the credentials: {exc}") from exc
    except (rx.ConnectionError, rx.TimeoutError, rx.ReadOnlyError, OSError) as exc:
        raise StorageUnavailable(f"redis unavailable: {exc}") from exc
    except rx.RedisError as exc:
        raise StorageError(f"redis error: {exc}") from exc


def _pool_limit(client: Any) -> int | None:
    """The pool's connection cap: redis-py raises "Too many connections" past it instead of
    waiting, so the stores queue their own commands to stay under it."""
    limit = getattr(client.connection_pool, "max_connections", None)
    return limit if isinstance(limit, int) and 0 < limit < 2**31 else None


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _encode(version: int, expires_at: float, data_json: str) -> str:
    # "v" and "exp" lead, in this exact form, because compare_and_set.lua reads them as text.
    return f'{{"v":{version},"exp":{expires_at!r},"data":{data_json}}}'


def _decode(kind: str, id: str, value: Any) -> Record:
    try:
        doc = json.loads(_text(value))
        data = doc["data"]
        if not isinstance(data, dict):
            raise TypeError("data is not an object")
        return Record(kind, id, int(doc["v"]), data, float(doc["exp"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise StorageError(f"malformed record for {kind} {id!r}") from exc


def _cas_outcome(kind: str, id: str, version: int, reply: Any) -> Record:
    status = int(reply[0])
    if status == 1:
        return _decode(kind, id, reply[1])
    if status == 0:
        raise VersionConflict(f"{kind} {id!r} is at version {int(reply[1])}, not {version}")
    raise RecordNotFound(f"{kind} {id!r} not found")


#: Connections a store opens at most when the caller does not say (``max_connections``).
DEFAULT_MAX_CONNECTIONS = 32


def _bounded_retry_options(options: dict[str, Any], *, asynchronous: bool) -> dict[str, Any]:
    """Defaults that keep a store bounded under load and quick to fail in an outage.

    redis-py's pools are unbounded by default, so a burst of requests (thousands of polls
    arriving at once) would open as many connections as are in flight; the store queues
    its own commands under this limit instead.  redis-py also retries a refused connection
    ten times with backoff, which turns an outage into a multi-second hang; one immediate
    retry still heals a connection the server dropped (for example after a restart).
    """
    options = {"max_connections": DEFAULT_MAX_CONNECTIONS, **options}
    if "retry" in options:
        return options
    from redis.backoff import NoBackoff

    if asynchronous:
        from redis.asyncio.retry import Retry as AsyncRetry

        return {**options, "retry": AsyncRetry(NoBackoff(), 1)}
    from redis.retry import Retry

    return {**options, "retry": Retry(NoBackoff(), 1)}


class _Layout:
    """Key names and script arguments shared by the sync and async stores."""

    def __init__(self, prefix: str, clock: Clock) -> None:
        self.prefix = prefix
        self.clock = clock
        self.channel = changes_channel(prefix)

    def key(self, kind: str, id: str) -> str:
        return record_key(self.prefix, kind, id)

    def new_value(self, data: Mapping[str, Any], ttl: float) -> tuple[str, int]:
        text = encode_data(data)
        ttl = check_ttl(ttl)
        return _encode(1, self.clock.now() + ttl, text), ttl_millis(ttl)

    def cas_args(
        self, kind: str, id: str, version: int, data: Mapping[str, Any], ttl: float | None
    ) -> list[str]:
        text = encode_data(data)
        if ttl is None:
            exp, px = "", ""
        else:
            ttl = check_ttl(ttl)
            exp, px = repr(self.clock.now() + ttl), str(ttl_millis(ttl))
        return [str(int(version)), text, exp, px, self.channel, change_subject(kind, id)]

    def consume_args(self, kind: str, id: str) -> list[str]:
        return [self.channel, change_subject(kind, id)]


class RedisStore:
    """Synchronous ``PendingStore`` on a ``redis.Redis`` client."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        clock: Clock = SYSTEM_CLOCK,
        owns_client: bool = False,
    ) -> None:
        self.client = client
        self.layout = _Layout(prefix, clock)
        self._owns_client = owns_client
        self._cas = client.register_script(_lua("compare_and_set"))
        self._consume = client.register_script(_lua("consume"))
        self._increment = client.register_script(_lua("increment"))
        limit = _pool_limit(client)
        self._gate = threading.BoundedSemaphore(limit) if limit else None

    @property
    def prefix(self) -> str:
        """The key prefix: every record, guard and counter of this store lives under it."""
        return self.layout.prefix

    @contextmanager
    def _command(self) -> Iterator[None]:
        with _translated():
            if self._gate is None:
                yield
                return
            with self._gate:
                yield

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        clock: Clock = SYSTEM_CLOCK,
        **options: Any,
    ) -> RedisStore:
        import redis

        client = redis.Redis.from_url(url, **_bounded_retry_options(options, asynchronous=False))
        return cls(client, prefix=prefix, clock=clock, owns_client=True)

    def create(self, kind: str, id: str, data: Mapping[str, Any], ttl: float) -> Record:
        value, px = self.layout.new_value(data, ttl)
        with self._command():
            stored = self.client.set(self.layout.key(kind, id), value, px=px, nx=True)
        if not stored:
            raise RecordExists(f"{kind} {id!r} already exists")
        return _decode(kind, id, value)

    def get(self, kind: str, id: str) -> Record | None:
        with self._command():
            value = self.client.get(self.layout.key(kind, id))
        return None if value is None else _decode(kind, id, value)

    def compare_and_set(
        self,
        kind: str,
        id: str,
        version: int,
        data: Mapping[str, Any],
        ttl: float | None = None,
    ) -> Record:
        args = self.layout.cas_args(kind, id, version, data, ttl)
        with self._command():
            reply = self._cas(keys=[self.layout.key(kind, id)], args=args)
        return _cas_outcome(kind, id, version, reply)

    def consume(self, kind: str, id: str) -> Record | None:
        with self._command():
            value = self._consume(
                keys=[self.layout.key(kind, id)], args=self.layout.consume_args(kind, id)
            )
        return None if value is None else _decode(kind, id, value)

    def remember_once(self, key: str, ttl: float) -> bool:
        px = ttl_millis(check_ttl(ttl))
        with self._command():
            return bool(self.client.set(once_key(self.layout.prefix, key), b"1", px=px, nx=True))

    def increment(self, key: str, amount: int, ttl: float) -> int:
        px = ttl_millis(check_ttl(ttl))
        with self._command():
            value = self._increment(
                keys=[counter_key(self.layout.prefix, key)], args=[int(amount), px]
            )
        return int(value)

    def delete(self, kind: str, id: str) -> bool:
        return self.consume(kind, id) is not None

    def check(self) -> None:
        with self._command():
            self.client.ping()

    def close(self) -> None:
        if self._owns_client:
            with _translated():
                self.client.close()


class AsyncRedisStore:
    """``AsyncPendingStore`` on a ``redis.asyncio.Redis`` client.

    Long polls share one pub/sub connection per store, opened on the first wait: the reader task
    wakes only the waiters of the announced record. When that connection drops or resubscribes,
    every waiter re-reads, since announcements made meanwhile are lost.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        clock: Clock = SYSTEM_CLOCK,
        owns_client: bool = False,
    ) -> None:
        self.client = client
        self.layout = _Layout(prefix, clock)
        self._owns_client = owns_client
        self._cas = client.register_script(_lua("compare_and_set"))
        self._consume = client.register_script(_lua("consume"))
        self._increment = client.register_script(_lua("increment"))
        self._waiters = ChangeWaiters()
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._starting: asyncio.Lock | None = None
        limit = _pool_limit(client)
        # One connection stays free for the change subscription.
        self._gate = asyncio.Semaphore(max(1, limit - 1)) if limit else None

    @property
    def prefix(self) -> str:
        """The key prefix: every record, guard and counter of this store lives under it."""
        return self.layout.prefix

    @asynccontextmanager
    async def _command(self) -> AsyncIterator[None]:
        with _translated():
            if self._gate is None:
                yield
                return
            async with self._gate:
                yield

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        clock: Clock = SYSTEM_CLOCK,
        **options: Any,
    ) -> AsyncRedisStore:
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(
            url, **_bounded_retry_options(options, asynchronous=True)
        )
        return cls(client, prefix=prefix, clock=clock, owns_client=True)

    async def create(self, kind: str, id: str, data: Mapping[str, Any], ttl: float) -> Record:
        value, px = self.layout.new_value(data, ttl)
        async with self._command():
            stored = await self.client.set(self.layout.key(kind, id), value, px=px, nx=True)
        if not stored:
            raise RecordExists(f"{kind} {id!r} already exists")
        return _decode(kind, id, value)

    async def get(self, kind: str, id: str) -> Record | None:
        async with self._command():
            value = await self.client.get(self.layout.key(kind, id))
        return None if value is None else _decode(kind, id, value)

    async def compare_and_set(
        self,
        kind: str,
        id: str,
        version: int,
        data: Mapping[str, Any],
        ttl: float | None = None,
    ) -> Record:
        args = self.layout.cas_args(kind, id, version, data, ttl)
        async with self._command():
            reply = await self._cas(keys=[self.layout.key(kind, id)], args=args)
        return _cas_outcome(kind, id, version, reply)

    async def consume(self, kind: str, id: str) -> Record | None:
        async with self._command():
            value = await self._consume(
                keys=[self.layout.key(kind, id)], args=self.layout.consume_args(kind, id)
            )
        return None if value is None else _decode(kind, id, value)

    async def remember_once(self, key: str, ttl: float) -> bool:
        px = ttl_millis(check_ttl(ttl))
        async with self._command():
            stored = await self.client.set(once_key(self.layout.prefix, key), b"1", px=px, nx=True)
        return bool(stored)

    async def increment(self, key: str, amount: int, ttl: float) -> int:
        px = ttl_millis(check_ttl(ttl))
        async with self._command():
            value = await self._increment(
                keys=[counter_key(self.layout.prefix, key)], args=[int(amount), px]
            )
        return int(value)

    async def delete(self, kind: str, id: str) -> bool:
        return await self.consume(kind, id) is not None

    async def check(self) -> None:
        async with self._command():
            await self.client.ping()

    async def wait_for_change(
        self, kind: str, id: str, version: int, timeout: float
    ) -> Record | None:
        async def fetch() -> Record | None:
            await self._subscribed()
            return await self.get(kind, id)

        return await wait_for_version(
            self._waiters, change_subject(kind, id), fetch, version, timeout
        )

    @property
    def waiting(self) -> int:
        """How many wait_for_change calls are parked on this store (for metrics and tests):
        past their read and blocked on a change notification."""
        return self._waiters.parked

    def _listening(self) -> bool:
        ready, reader = self._ready, self._reader
        return (
            ready is not None
            and ready.done()
            and ready.exception() is None
            and reader is not None
            and not reader.done()
        )

    async def _subscribed(self) -> None:
        if self._listening():
            return
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if not self._listening():
                await self._start_subscriber()

    async def _start_subscriber(self) -> None:
        await self._stop_subscriber()
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        pubsub = self.client.pubsub()
        self._pubsub, self._ready = pubsub, ready
        timeout = self.client.connection_pool.connection_kwargs.get("socket_timeout")
        try:
            with _translated():
                await pubsub.subscribe(self.layout.channel)
            self._reader = asyncio.create_task(self._read(pubsub, ready))
            await asyncio.wait_for(asyncio.shield(ready), timeout or _SUBSCRIBE_TIMEOUT)
        except TimeoutError as exc:
            await self._stop_subscriber()
            raise StorageUnavailable("redis did not confirm the subscription") from exc
        except StorageError:
            await self._stop_subscriber()
            raise

    async def _read(self, pubsub: PubSub, ready: asyncio.Future[None]) -> None:
        try:
            while True:
                with _translated():
                    message = await pubsub.get_message(timeout=None)
                if message is None:
                    continue
                if message["type"] == "subscribe":
                    if ready.done():
                        # A silent reconnect: announcements during the gap are lost.
                        self._waiters.notify_all()
                    else:
                        ready.set_result(None)
                elif message["type"] == "message":
                    subject, _, _version = _text(message["data"]).rpartition(":")
                    self._waiters.notify(subject)
        except Exception as exc:
            # Any end of the reader, not only a lost connection, must wake the waiters: they
            # re-read, and their next read opens a new subscription (or reports the outage).
            log.warning("change subscription lost: %s", exc)
            if not ready.done():
                failure = exc if isinstance(exc, StorageError) else StorageError(str(exc))
                failure.__cause__ = failure.__cause__ or exc
                ready.set_exception(failure)
            self._waiters.notify_all()

    async def _stop_subscriber(self) -> None:
        reader, pubsub = self._reader, self._pubsub
        self._reader = self._pubsub = self._ready = None
        if reader is not None:
            reader.cancel()
            try:
                await reader
            except asyncio.CancelledError:
                pass
        if pubsub is not None:
            try:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            except Exception as exc:  # closing a dead connection must not mask the real error
                log.debug("closing the change subscription failed: %s", exc)

    async def aclose(self) -> None:
        await self._stop_subscriber()
        if self._owns_client:
            with _translated():
                await self.client.aclose()


def wrap_client(
    client: Any,
    *,
    asynchronous: bool,
    prefix: str = DEFAULT_PREFIX,
    clock: Clock = SYSTEM_CLOCK,
    production: bool = False,
) -> RedisStore | AsyncRedisStore:
    """A store on a client the application already configured; the application closes it."""
    try:
        import redis
        import redis.asyncio
    except ImportError as exc:
        raise TypeError(f"expected a storage URI or a redis client, got {client!r}") from exc
    if asynchronous and isinstance(client, redis.asyncio.Redis):
        return AsyncRedisStore(client, prefix=prefix, clock=clock)
    if not asynchronous and isinstance(client, redis.Redis):
        return RedisStore(client, prefix=prefix, clock=clock)
    wanted = "redis.asyncio.Redis" if asynchronous else "redis.Redis"
    raise TypeError(f"expected a storage URI or a {wanted} client, got {type(client).__name__}")
