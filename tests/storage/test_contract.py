"""The storage contract, run unchanged on memory, fakeredis and a real Redis, sync and async."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import time
from typing import Any

import fakeredis
import pytest

from aauth_server.clock import FixedClock
from aauth_server.storage import (
    MemoryState,
    MemoryStore,
    RecordExists,
    RecordNotFound,
    StorageError,
    VersionConflict,
    open_async_store,
    open_store,
)
from aauth_server.storage.memory import AsyncMemoryStore
from tests.storage.conftest import START, Backend

TRICKY = {
    "big": 123456789012345678901234567890,
    "float": 0.1,
    "empty_list": [],
    "empty_obj": {},
    "text": 'ü "quoted" },{"v":9,"exp":1,',
    "none": None,
    "nested": {"a": [1, {"b": True}]},
}


def test_create_then_get_returns_version_one(backend: Backend) -> None:
    async def body(store: Any) -> None:
        created = await store.create("pending", "p1", {"status": "pending"}, 60)
        assert (created.kind, created.id, created.version) == ("pending", "p1", 1)
        assert created.data == {"status": "pending"}
        got = await store.get("pending", "p1")
        assert got == created
        assert 59 < got.expires_at - time.time() <= 60 or backend.clock is not None
        assert await store.get("pending", "other") is None
        # Kinds are separate namespaces for the same id.
        assert await store.get("held", "p1") is None

    backend.run(body)


def test_duplicate_create_fails_and_keeps_the_original(backend: Backend) -> None:
    async def body(store: Any) -> None:
        await store.create("pending", "p1", {"n": 1}, 60)
        with pytest.raises(RecordExists) as caught:
            await store.create("pending", "p1", {"n": 2}, 60)
        assert isinstance(caught.value, StorageError)
        assert (await store.get("pending", "p1")).data == {"n": 1}

    backend.run(body)


def test_json_values_round_trip_exactly(backend: Backend) -> None:
    async def body(store: Any) -> None:
        created = await store.create("pending", "j", TRICKY, 60)
        assert created.data == TRICKY
        assert (await store.get("pending", "j")).data == TRICKY
        updated = await store.compare_and_set("pending", "j", 1, {**TRICKY, "float": 1e-7})
        assert updated.data == {**TRICKY, "float": 1e-7}
        assert (await store.get("pending", "j")).data == {**TRICKY, "float": 1e-7}
        # A returned record is a copy: changing it changes nothing stored.
        updated.data["nested"]["a"].append("mutated")
        assert (await store.get("pending", "j")).data["nested"] == {"a": [1, {"b": True}]}

    backend.run(body)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"raw": b"bytes"}, TypeError),
        ({"set": {1, 2}}, TypeError),
        ({"obj": object()}, TypeError),
        ({"nan": float("nan")}, ValueError),
        ({"inf": float("inf")}, ValueError),
        (["not", "a", "mapping"], TypeError),
    ],
    ids=["bytes", "set", "object", "nan", "inf", "list"],
)
def test_only_json_objects_are_stored(backend: Backend, data: Any, error: type[Exception]) -> None:
    async def body(store: Any) -> None:
        with pytest.raises(error):
            await store.create("pending", "bad", data, 60)
        assert await store.get("pending", "bad") is None
        await store.create("pending", "ok", {"fine": 1}, 60)
        with pytest.raises(error):
            await store.compare_and_set("pending", "ok", 1, data)
        assert (await store.get("pending", "ok")).version == 1

    backend.run(body)


def test_compare_and_set_bumps_the_version_and_detects_conflicts(backend: Backend) -> None:
    async def body(store: Any) -> None:
        await store.create("pending", "p1", {"status": "pending"}, 60)
        second = await store.compare_and_set("pending", "p1", 1, {"status": "interacting"})
        assert second.version == 2
        assert second.data == {"status": "interacting"}
        with pytest.raises(VersionConflict):
            await store.compare_and_set("pending", "p1", 1, {"status": "lost"})
        third = await store.compare_and_set("pending", "p1", 2, {"status": "done"})
        assert third.version == 3
        assert await store.get("pending", "p1") == third
        with pytest.raises(RecordNotFound):
            await store.compare_and_set("pending", "missing", 1, {})

    backend.run(body)


def test_compare_and_set_race_has_exactly_one_winner(backend: Backend) -> None:
    async def body(store: Any) -> None:
        await store.create("pending", "race", {"n": 0}, 60)
        results = await asyncio.gather(
            *(store.compare_and_set("pending", "race", 1, {"n": i}) for i in range(20)),
            return_exceptions=True,
        )
        winners = [r for r in results if not isinstance(r, BaseException)]
        assert len(winners) == 1
        assert all(isinstance(r, VersionConflict) for r in results if r not in winners)
        assert (await store.get("pending", "race")) == winners[0]

    backend.run(body)


def test_ttl_expiry_and_keeping_or_replacing_the_expiry(backend: Backend) -> None:
    async def body(store: Any) -> None:
        kept = await store.create("pending", "kept", {"n": 1}, 0.3)
        await store.create("pending", "renewed", {"n": 1}, 0.3)
        await store.create("pending", "long", {"n": 1}, 60)
        assert await store.remember_once("nonce", 0.3) is True
        same = await store.compare_and_set("pending", "kept", 1, {"n": 2})
        assert same.expires_at == kept.expires_at
        renewed = await store.compare_and_set("pending", "renewed", 1, {"n": 2}, ttl=60)
        assert renewed.expires_at > kept.expires_at + 50
        await backend.pass_time(0.4)
        assert await store.get("pending", "kept") is None
        assert (await store.get("pending", "renewed")).version == 2
        assert (await store.get("pending", "long")).version == 1
        assert await store.consume("pending", "kept") is None
        with pytest.raises(RecordNotFound):
            await store.compare_and_set("pending", "kept", 2, {"n": 3})
        # The replay window has passed, so the same key is new again; and an expired id is free.
        assert await store.remember_once("nonce", 60) is True
        assert (await store.create("pending", "kept", {"n": 9}, 60)).version == 1

    backend.run(body)


def test_invalid_ttls_are_refused(backend: Backend) -> None:
    async def body(store: Any) -> None:
        for ttl in (0, -1, float("nan"), float("inf")):
            with pytest.raises(ValueError):
                await store.create("pending", "t", {}, ttl)
            with pytest.raises(ValueError):
                await store.remember_once("k", ttl)
        await store.create("pending", "t", {}, 60)
        with pytest.raises(ValueError):
            await store.compare_and_set("pending", "t", 1, {}, ttl=0)

    backend.run(body)


def test_consume_returns_the_record_exactly_once(backend: Backend) -> None:
    async def body(store: Any) -> None:
        await store.create("pending", "c", {"token": "t"}, 60)
        await store.compare_and_set("pending", "c", 1, {"token": "u"})
        first = await store.consume("pending", "c")
        assert first is not None
        assert (first.version, first.data) == (2, {"token": "u"})
        assert await store.consume("pending", "c") is None
        assert await store.get("pending", "c") is None
        await store.create("pending", "many", {}, 60)
        results = await asyncio.gather(*(store.consume("pending", "many") for _ in range(25)))
        assert sum(r is not None for r in results) == 1

    backend.run(body)


def test_remember_once_is_true_only_the_first_time(backend: Backend) -> None:
    async def body(store: Any) -> None:
        assert await store.remember_once("jkt|1700000000|GET|a.example|/x", 60) is True
        assert await store.remember_once("jkt|1700000000|GET|a.example|/x", 60) is False
        assert await store.remember_once("jkt|1700000001|GET|a.example|/x", 60) is True
        results = await asyncio.gather(*(store.remember_once("burst", 60) for _ in range(25)))
        assert results.count(True) == 1

    backend.run(body)


def test_increment_counts_atomically_within_a_fixed_window(backend: Backend) -> None:
    async def body(store: Any) -> None:
        assert await store.increment("codes:alice", 1, 1) == 1
        assert await store.increment("codes:alice", 1, 60) == 2  # the window is not extended
        assert await store.increment("codes:alice", -1, 60) == 1
        assert await store.increment("codes:bob", 1, 60) == 1
        # Thirty callers at once each see a different count: none reads a stale one.
        counts = await asyncio.gather(*(store.increment("burst", 1, 60) for _ in range(30)))
        assert sorted(counts) == list(range(1, 31))
        await backend.pass_time(1.2)
        assert await store.increment("codes:alice", 1, 60) == 1  # a new window

    backend.run(body)


def test_delete(backend: Backend) -> None:
    async def body(store: Any) -> None:
        await store.create("session", "s", {}, 60)
        assert await store.delete("session", "s") is True
        assert await store.delete("session", "s") is False
        assert await store.get("session", "s") is None
        assert await store.delete("session", "never") is False

    backend.run(body)


def test_check_passes_on_a_live_backend(backend: Backend) -> None:
    async def body(store: Any) -> None:
        assert await store.check() is None

    backend.run(body)


def parked(store: Any) -> int:
    """How many wait_for_change calls are parked on ``store``: past their read, blocked on a
    change notification (the Redis stores' ``waiting``; the memory store's waiter count)."""
    waiting = getattr(store, "waiting", None)
    return int(waiting if waiting is not None else store._waiters.parked)


async def until_parked(store: Any, count: int, timeout: float = 5.0) -> None:
    """Return once ``count`` waiters are parked on ``store``; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while parked(store) < count:
        assert loop.time() < deadline, f"{parked(store)} of {count} waiters parked"
        await asyncio.sleep(0.005)


def test_wait_for_change_is_woken_by_another_task(async_backend: Backend) -> None:
    async def body(store: Any) -> None:
        await store.create("pending", "w", {"status": "pending"}, 60)

        async def approve() -> None:
            await until_parked(store, 1)
            await store.compare_and_set("pending", "w", 1, {"status": "approved"})

        loop = asyncio.get_running_loop()
        started = loop.time()
        changed, _ = await asyncio.gather(store.wait_for_change("pending", "w", 1, 10), approve())
        assert changed.version == 2
        assert changed.data == {"status": "approved"}
        assert loop.time() - started < 2  # woken by the change, far before the 10 s timeout

    async_backend.run(body)


def test_wait_for_change_sees_consume_as_gone(async_backend: Backend) -> None:
    async def body(store: Any) -> None:
        await store.create("pending", "g", {}, 60)

        async def take() -> None:
            await until_parked(store, 1)
            await store.consume("pending", "g")

        gone, _ = await asyncio.gather(store.wait_for_change("pending", "g", 1, 10), take())
        assert gone is None

    async_backend.run(body)


def test_wait_for_change_returns_at_once_when_already_different(async_backend: Backend) -> None:
    async def body(store: Any) -> None:
        await store.create("pending", "d", {}, 60)
        await store.compare_and_set("pending", "d", 1, {"x": 1})
        assert (await store.wait_for_change("pending", "d", 1, 10)).version == 2
        assert await store.wait_for_change("pending", "missing", 1, 10) is None

    async_backend.run(body)


def test_wait_for_change_times_out_without_polling(async_backend: Backend) -> None:
    async def body(store: Any) -> None:
        await store.create("pending", "t", {"status": "pending"}, 60)
        await store.create("pending", "neighbour", {}, 60)
        reads = 0
        real_get = store.get

        async def counting_get(kind: str, id: str) -> Any:
            nonlocal reads
            reads += 1
            return await real_get(kind, id)

        store.get = counting_get

        async def disturb() -> None:
            # A change to another record must not wake this waiter (parked by now).
            await until_parked(store, 1)
            await store.compare_and_set("pending", "neighbour", 1, {"x": 1})

        loop = asyncio.get_running_loop()
        started = loop.time()
        same, _ = await asyncio.gather(store.wait_for_change("pending", "t", 1, 0.3), disturb())
        elapsed = loop.time() - started
        assert same.version == 1
        assert same.data == {"status": "pending"}
        assert 0.29 <= elapsed < 2
        assert reads == 2  # one read before waiting, one at the timeout: no polling in between

    async_backend.run(body)


def test_many_waiters_on_one_record_all_wake(async_backend: Backend) -> None:
    async def body(store: Any) -> None:
        await store.create("pending", "m", {}, 60)

        async def change() -> None:
            await until_parked(store, 20)
            await store.compare_and_set("pending", "m", 1, {"x": 1})

        *results, _ = await asyncio.gather(
            *(store.wait_for_change("pending", "m", 1, 10) for _ in range(20)), change()
        )
        assert [r.version for r in results] == [2] * 20

    async_backend.run(body)


# Opening stores ---------------------------------------------------------------------------


def test_unknown_scheme_is_refused() -> None:
    for uri in ("memcached://localhost", "localhost:6379", "mysql://x"):
        with pytest.raises(ValueError, match="unknown storage URI scheme"):
            open_store(uri)
        with pytest.raises(ValueError, match="unknown storage URI scheme"):
            open_async_store(uri)


def test_redis_schemes_map_to_redis_py_connections() -> None:
    import redis.connection

    from aauth_server.storage.redis import RedisStore

    unix = open_store("redis+unix:///tmp/aauth-test.sock?db=3", socket_timeout=0.5)
    assert isinstance(unix, RedisStore)
    pool = unix.client.connection_pool
    assert pool.connection_class is redis.connection.UnixDomainSocketConnection
    kwargs = pool.connection_kwargs
    assert (kwargs["path"], kwargs["db"], kwargs["socket_timeout"]) == (
        "/tmp/aauth-test.sock",
        3,
        0.5,
    )
    unix.close()
    tls = open_store("rediss://127.0.0.1:6390/2", client_name="x")
    assert isinstance(tls, RedisStore)
    assert tls.client.connection_pool.connection_class is redis.connection.SSLConnection
    tls.close()


def test_clients_must_match_the_store_shape() -> None:
    with pytest.raises(TypeError, match=r"redis\.asyncio\.Redis"):
        open_async_store(fakeredis.FakeRedis())
    with pytest.raises(TypeError, match=r"a redis\.Redis client"):
        open_store(fakeredis.FakeAsyncRedis())
    with pytest.raises(TypeError):
        open_store(object())
    with pytest.raises(TypeError, match="socket_timeout"):
        open_store("memory://", socket_timeout=1)


def test_memory_store_warns_in_production(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="aauth_server.storage"):
        open_store("memory://")
        assert caplog.records == []
        open_store("memory://", production=True)
    assert [r.name for r in caplog.records] == ["aauth_server.storage"]
    assert "redis://" in caplog.records[0].getMessage()


def test_prefixes_keep_stores_apart() -> None:
    state = MemoryState()
    one, two = MemoryStore(state, prefix="one"), MemoryStore(state, prefix="two")
    one.create("pending", "x", {"who": "one"}, 60)
    assert two.get("pending", "x") is None
    assert one.remember_once("k", 60) and two.remember_once("k", 60)


def test_memory_store_sweeps_expired_entries_nobody_reads_again() -> None:
    clock = FixedClock(START)
    store = MemoryStore(clock=clock)
    for i in range(600):
        store.remember_once(f"nonce-{i}", 1)
        store.create("pending", f"p{i}", {}, 1)
    clock.advance(2)
    for i in range(1024):
        store.remember_once(f"fresh-{i}", 60)
    assert not any(k.startswith("aauth:once:{nonce-") for k in store.state.once)
    assert store.state.records == {}
    assert len(store.state.once) == 1024


def test_memory_waiter_is_woken_by_a_sync_write_from_another_thread() -> None:
    state = MemoryState()
    writer = MemoryStore(state)

    async def main() -> None:
        store = AsyncMemoryStore(state)
        writer.create("pending", "x", {}, 60)
        thread = threading.Timer(0.05, writer.compare_and_set, ("pending", "x", 1, {"y": 1}))
        thread.start()
        try:
            changed = await store.wait_for_change("pending", "x", 1, 10)
        finally:
            thread.join()
            await store.aclose()
        assert changed is not None
        assert changed.version == 2

    asyncio.run(main())


def test_importing_storage_does_not_import_redis() -> None:
    code = (
        "import sys, aauth_server.storage as s; s.open_store('memory://');"
        "s.open_async_store('memory://'); print('redis' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("redis+unix:///tmp/r.sock?db=2", "unix:///tmp/r.sock?db=2"),
        ("REDIS+UNIX:///tmp/r.sock", "unix:///tmp/r.sock"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("rediss://cache.example:6380", "rediss://cache.example:6380"),
    ],
)
def test_redis_url_is_what_redis_py_reads(given: str, expected: str) -> None:
    from aauth_server.storage.uri import redis_url

    assert redis_url(given) == expected
