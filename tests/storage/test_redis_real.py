"""Behaviour only a real redis-server can show: races between threads and tasks on one record,
one shared pub/sub connection for many long polls, and an outage with append-only recovery."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from aauth_server.storage import Record, StorageUnavailable, open_async_store, open_store
from aauth_server.storage.redis import AsyncRedisStore
from tests.redis_server import RedisProcess
from tests.storage.conftest import delete_prefix

CONSUMERS = 50
WAITERS = 1000


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    value = f"aauth-test-{uuid.uuid4().hex}"
    yield value
    delete_prefix(redis_url, value)


def test_threads_race_to_consume_and_exactly_one_wins(redis_url: str, prefix: str) -> None:
    store = open_store(redis_url, prefix=prefix)
    try:
        for round_ in range(3):
            store.create("pending", f"r{round_}", {"round": round_}, 60)
            barrier = threading.Barrier(CONSUMERS)
            results: list[Record | None] = []
            lock = threading.Lock()

            def consume(id: str) -> None:
                barrier.wait()
                got = store.consume("pending", id)
                with lock:
                    results.append(got)

            threads = [
                threading.Thread(target=consume, args=(f"r{round_}",)) for _ in range(CONSUMERS)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            winners = [r for r in results if r is not None]
            assert len(results) == CONSUMERS
            assert [w.data for w in winners] == [{"round": round_}]
    finally:
        store.close()


def test_tasks_race_to_consume_and_exactly_one_wins(redis_url: str, prefix: str) -> None:
    async def main() -> None:
        store = open_async_store(redis_url, prefix=prefix)
        try:
            for round_ in range(3):
                await store.create("pending", f"r{round_}", {"round": round_}, 60)
                results = await asyncio.gather(
                    *(store.consume("pending", f"r{round_}") for _ in range(CONSUMERS))
                )
                assert [r.data for r in results if r is not None] == [{"round": round_}]
        finally:
            await store.aclose()

    asyncio.run(main())


def _subscribers(admin: redis.Redis, name: str) -> int:
    return sum(1 for c in admin.client_list() if c["name"] == name and int(c["sub"]) > 0)


def test_a_thousand_waiters_share_one_pubsub_connection(redis_url: str, prefix: str) -> None:
    name = f"aauth-test-{uuid.uuid4().hex[:12]}"
    admin = redis.Redis.from_url(redis_url)

    async def main() -> None:
        store = open_async_store(redis_url, prefix=prefix, client_name=name)
        assert isinstance(store, AsyncRedisStore)
        try:
            ids = [f"w{i}" for i in range(WAITERS)]
            for chunk in range(0, WAITERS, 100):
                await asyncio.gather(
                    *(store.create("pending", i, {}, 60) for i in ids[chunk:][:100])
                )
            assert _subscribers(admin, name) == 0  # nothing subscribes until someone waits
            waits = [asyncio.create_task(store.wait_for_change("pending", i, 1, 20)) for i in ids]
            deadline = asyncio.get_running_loop().time() + 10
            while store.waiting < WAITERS and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
            assert store.waiting == WAITERS
            while _subscribers(admin, name) == 0 and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
            # `waiting` counts waiters past their first read, parked on the notification.
            assert not any(w.done() for w in waits)
            assert _subscribers(admin, name) == 1
            for chunk in range(0, WAITERS, 100):
                await asyncio.gather(
                    *(store.compare_and_set("pending", i, 1, {"i": i}) for i in ids[chunk:][:100])
                )
            results = await asyncio.wait_for(asyncio.gather(*waits), 10)
            assert [(r.version, r.data) if r else None for r in results] == [
                (2, {"i": i}) for i in ids
            ]
            assert _subscribers(admin, name) == 1
        finally:
            await store.aclose()
        assert _subscribers(admin, name) == 0

    try:
        asyncio.run(main())
    finally:
        admin.close()


def _assert_unavailable(call: Any, budget: float) -> None:
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as caught:
        call()
    assert caught.value.retry_after == 5
    assert caught.value.__cause__ is not None
    assert time.monotonic() - started < budget


def test_outage_raises_unavailable_and_persisted_records_survive_a_restart() -> None:
    with RedisProcess(appendonly=True) as server:
        sync = open_store(server.url, socket_timeout=0.5)
        try:
            sync.create("pending", "kept", {"acknowledged": True}, 600)
            server.stop()
            for call in (
                lambda: sync.create("pending", "new", {}, 60),
                lambda: sync.get("pending", "kept"),
                lambda: sync.compare_and_set("pending", "kept", 1, {}),
                lambda: sync.consume("pending", "kept"),
                lambda: sync.remember_once("nonce", 60),
                lambda: sync.delete("pending", "kept"),
                sync.check,
            ):
                _assert_unavailable(call, budget=1.5)
            server.start()
            sync.check()
            kept = sync.get("pending", "kept")
            assert kept is not None
            assert (kept.version, kept.data) == (1, {"acknowledged": True})
            assert sync.compare_and_set("pending", "kept", 1, {"n": 2}).version == 2
        finally:
            sync.close()


def test_async_outage_fails_waiters_and_operations_then_recovers() -> None:
    async def main(server: RedisProcess) -> None:
        store = open_async_store(server.url, socket_timeout=0.5)
        try:
            await store.create("pending", "kept", {"acknowledged": True}, 600)
            assert isinstance(store, AsyncRedisStore)
            parked = asyncio.create_task(store.wait_for_change("pending", "kept", 1, 30))
            while store.waiting == 0:  # parked on the notification, subscription open
                await asyncio.sleep(0.01)
            server.stop()
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(StorageUnavailable):
                await asyncio.wait_for(parked, 5)
            assert loop.time() - started < 2  # the long poll fails now, not at its 30 s timeout
            for call in (
                lambda: store.create("pending", "new", {}, 60),
                lambda: store.get("pending", "kept"),
                lambda: store.compare_and_set("pending", "kept", 1, {}),
                lambda: store.consume("pending", "kept"),
                lambda: store.remember_once("nonce", 60),
                lambda: store.delete("pending", "kept"),
                lambda: store.wait_for_change("pending", "kept", 1, 5),
                store.check,
            ):
                started = loop.time()
                with pytest.raises(StorageUnavailable) as caught:
                    await call()
                assert caught.value.retry_after == 5
                assert loop.time() - started < 1.5
            server.start()
            await store.check()
            kept = await store.get("pending", "kept")
            assert kept is not None
            assert kept.data == {"acknowledged": True}

            async def change() -> None:
                await asyncio.sleep(0.05)
                await store.compare_and_set("pending", "kept", 1, {"n": 2})

            changed, _ = await asyncio.gather(
                store.wait_for_change("pending", "kept", 1, 10), change()
            )
            assert changed is not None
            assert changed.version == 2
        finally:
            await store.aclose()

    with RedisProcess(appendonly=True) as server:
        asyncio.run(main(server))
