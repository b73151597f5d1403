"""The Django Person Server mount closes its stores: a real Redis, a real uvicorn, real exits.

Django has no lifespan, so the mount offers one (``PersonServerLifespan`` around the ASGI
handler), ``close_person_server``/``aclose_person_server``, and an ``atexit`` hook.  Each
store here gets a unique Redis ``client_name``, so ``CLIENT LIST`` shows exactly the
connections it holds, and a unique key prefix, deleted afterwards.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis
from aauth_server_django.person import (
    PersonServerLifespan,
    close_person_server,
    get_person_mount,
    use_person_server,
)
from django.core.asgi import get_asgi_application

from aauth_server.fields import parse_aauth_requirement
from aauth_server.http import HttpRequest
from aauth_server.person import PersonServer
from aauth_server.storage import open_async_store, open_store
from aauth_server.storage.base import changes_channel
from tests.adapters import harness_person_django as harness
from tests.adapters.harness_django import configure_django
from tests.person.ps_harness import ALICE, PsWorld
from tests.redis_server import ensure_redis
from tests.storage.conftest import delete_prefix
from tests.support import PS_ISSUER
from tests.threaded_uvicorn import ThreadedUvicorn

configure_django()

REPO = Path(__file__).resolve().parents[3]
DEADLINE = 10.0


class RedisStores:
    """A sync and an async store on the real Redis, named so CLIENT LIST can count them."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = f"aauth-ps-{uuid.uuid4().hex[:12]}"
        self.prefix = f"aauth-test-{uuid.uuid4().hex}"
        options: dict[str, Any] = {
            "prefix": self.prefix,
            "client_name": self.name,
            "socket_timeout": 5,
        }
        self.store = open_store(url, **options)
        self.async_store = open_async_store(url, **options)

    def connections(self) -> int:
        with redis.Redis.from_url(self.url) as admin:
            return sum(1 for client in admin.client_list() if client.get("name") == self.name)

    def subscribers(self) -> int:
        with redis.Redis.from_url(self.url) as admin:
            counts = dict(admin.pubsub_numsub(changes_channel(self.prefix)))
            return int(counts.get(changes_channel(self.prefix).encode(), 0))


@pytest.fixture
def stores() -> Iterator[RedisStores]:
    made = RedisStores(ensure_redis())
    yield made
    made.store.close()
    delete_prefix(made.url, made.prefix)


def _until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


class AsgiServer(ThreadedUvicorn):
    """uvicorn in a thread serving ``PersonServerLifespan(get_asgi_application())``."""

    def __init__(self) -> None:
        super().__init__(PersonServerLifespan(get_asgi_application()))

    def start(self) -> None:
        super().start()
        self.wait_started(DEADLINE)

    def stop(self, timeout: float = DEADLINE) -> None:
        super().stop(timeout)
        assert not self.thread.is_alive()

    def send(self, client: httpx.Client, request: HttpRequest) -> httpx.Response:
        # Host as the agent signed it; the PS's public_origin names the URL it verifies.
        headers = [("Host", "ps.example"), *request.headers]
        target = self.origin + urlsplit(request.url).path
        return client.request(request.method, target, headers=headers, content=request.body)


def test_lifespan_closes_the_stores_on_the_servers_loop(stores: RedisStores) -> None:
    pw = PsWorld(public_origin=PS_ISSUER, store=stores.store, async_store=stores.async_store)
    server = AsgiServer()
    with harness.mounted(pw.config, asgi=True), httpx.Client(timeout=DEADLINE) as client:
        ps = get_person_mount().ps
        assert ps.async_store is stores.async_store
        server.start()  # lifespan.startup checked the store: a connection is open
        assert stores.connections() >= 1

        started = server.send(client, pw.person_request())
        assert started.status_code == 202, started.text
        location = started.headers["Location"]
        code = parse_aauth_requirement(started.headers["AAuth-Requirement"]).params["code"]

        polled: list[httpx.Response] = []
        poll = threading.Thread(
            target=lambda: polled.append(server.send(client, pw.poll(location, wait=20)))
        )
        poll.start()
        # The long poll parks on the change subscription, in the server's loop.
        _until(lambda: stores.async_store.waiting == 1, "the long poll to park")
        assert stores.subscribers() == 1
        ps.consent.open(str(code), ALICE)  # the sync store's write wakes it
        poll.join(DEADLINE)
        [answer] = polled
        assert (answer.status_code, answer.json()) == (202, {"status": "interacting"})
        assert stores.connections() >= 2  # commands and the subscription, sync and async

        server.stop()  # lifespan.shutdown: aclose_person_server() on the server's loop

    assert stores.connections() == 0
    assert stores.subscribers() == 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()  # an unclosed connection or transport would warn as it is collected
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_lifespan_fails_the_start_when_the_store_does_not_answer() -> None:
    dead = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    pw = PsWorld(
        store=open_store(dead, socket_connect_timeout=1),
        async_store=open_async_store(dead, socket_connect_timeout=1),
    )
    ps = PersonServer(pw.config)
    passed_on: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        passed_on.append(scope["type"])

    app = PersonServerLifespan(inner)

    async def run() -> list[dict[str, Any]]:
        events = [{"type": "lifespan.startup"}]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return events.pop(0)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        try:
            await app({"type": "lifespan"}, receive, send)
            await app({"type": "http"}, receive, send)
        finally:
            await ps.async_store.aclose()
        return sent

    use_person_server(ps)
    try:
        [failed] = asyncio.run(run())
    finally:
        use_person_server(None)
        ps.store.close()
    assert failed["type"] == "lifespan.startup.failed"
    assert "unavailable" in failed["message"]
    assert passed_on == ["http"]  # every other scope reaches the wrapped application


def test_close_person_server_closes_a_store_whose_loop_runs_elsewhere(
    stores: RedisStores,
) -> None:
    # An application that never ran the lifespan shuts down from synchronous code while
    # the server's loop still runs: the async store is closed by that loop's own thread.
    pw = PsWorld(store=stores.store, async_store=stores.async_store)
    ps = PersonServer(pw.config)
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    use_person_server(ps)
    try:
        mount = get_person_mount()
        asyncio.run_coroutine_threadsafe(mount.astartup(), loop).result(DEADLINE)
        waited = asyncio.run_coroutine_threadsafe(
            ps.async_store.wait_for_change("probe", "none", 1, 0.01), loop
        )
        assert waited.result(DEADLINE) is None
        ps.store.check()
        assert stores.connections() >= 3 and stores.subscribers() == 1
        close_person_server()
        assert stores.connections() == 0 and stores.subscribers() == 0
        with pytest.raises(RuntimeError, match="aclose"):
            asyncio.run_coroutine_threadsafe(_close_in_loop(), loop).result(DEADLINE)
    finally:
        use_person_server(None)
        loop.call_soon_threadsafe(loop.stop)
        runner.join(DEADLINE)
        loop.close()


async def _close_in_loop() -> None:
    close_person_server()  # refused: it would block the loop it has to wait on


_EXIT_SCRIPT = """
import asyncio, atexit, json, sys
import redis

url, name, prefix, mode = sys.argv[1:5]
loops = []

def observe():
    # Registered before the adapter is imported, so it runs after the adapter's exit hook.
    with redis.Redis.from_url(url) as admin:
        names = [c.get("name") for c in admin.client_list()]
    print(json.dumps({"open": names.count(name)}), flush=True)
    for loop in loops:
        loop.close()

atexit.register(observe)

from tests.adapters.harness_django import configure_django
configure_django()
from aauth_server_django.person import get_person_mount, use_person_server
from aauth_server.person import PersonServer
from aauth_server.storage import open_async_store, open_store
from tests.threaded_uvicorn import ThreadedUvicorn
from tests.person.ps_harness import PsWorld

options = {"prefix": prefix, "client_name": name, "socket_timeout": 5}
pw = PsWorld(store=open_store(url, **options), async_store=open_async_store(url, **options))
use_person_server(PersonServer(pw.config))
mount = get_person_mount()
mount.ps.store.check()

async def serve():
    await mount.astartup()
    await mount.ps.async_store.wait_for_change("probe", "none", 1, 0.01)

if mode == "open-loop":
    loop = asyncio.new_event_loop()
    loops.append(loop)
    loop.run_until_complete(serve())
elif mode == "ended-loop":
    asyncio.run(serve())
print("served", flush=True)
"""


@pytest.mark.parametrize("mode", ["sync-only", "open-loop", "ended-loop"])
def test_the_exit_hook_closes_what_it_can(stores: RedisStores, mode: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "adapters")])}
    result = subprocess.run(
        [
            sys.executable,
            "-X",
            "dev",
            "-c",
            _EXIT_SCRIPT,
            stores.url,
            stores.name,
            stores.prefix,
            mode,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    served, observed = result.stdout.strip().splitlines()
    assert served == "served"
    still_open = json.loads(observed)["open"]
    if mode == "ended-loop":
        # The loop that held the async connections is gone: they cannot be closed any
        # more, and the hook says how to avoid that instead of failing.
        assert still_open >= 1
        assert "PersonServerLifespan" in result.stderr
        assert "Traceback" not in result.stderr
    else:
        assert still_open == 0
        # -X dev shows every ResourceWarning and asyncio debug complaint: none.
        assert result.stderr == ""
