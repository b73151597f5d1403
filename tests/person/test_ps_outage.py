"""The PS through a Redis outage (issue 4, storage Done-when): a pending person-token request
survives the Redis server being killed mid-flow, every answer during the outage is ``503``
with ``Retry-After`` (never ``500``), and after the restart the same request completes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from aauth_server.errors import AAuthError
from aauth_server.fields import parse_aauth_requirement
from aauth_server.http import HttpResponse
from aauth_server.storage.redis import AsyncRedisStore, RedisStore
from aauth_server.tokens.jwt import decode_unverified
from tests.person.ps_harness import ALICE, PsWorld, body_of
from tests.redis_server import RedisProcess

OPTIONS: dict[str, Any] = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}


def _kill(server: RedisProcess) -> None:
    """SIGKILL, not a clean shutdown: only what append-only persistence already wrote survives."""
    client = redis.Redis.from_url(server.url)
    try:
        pid = int(client.info("server")["process_id"])
    finally:
        client.close()
    os.kill(pid, signal.SIGKILL)
    server.stop()  # reaps the dead process so start() can run it again


def _assert_unavailable(response: HttpResponse) -> None:
    assert response.status == 503, (response.status, response.body)
    assert response.header("Retry-After") == "5"
    assert body_of(response)["error"] == "temporarily_unavailable"


def _world(server: RedisProcess) -> PsWorld:
    prefix = "ps-outage-" + uuid.uuid4().hex
    return PsWorld(
        store=RedisStore.from_url(server.url, prefix=prefix, **OPTIONS),
        async_store=AsyncRedisStore.from_url(server.url, prefix=prefix, **OPTIONS),
    )


async def _flow(pw: PsWorld, server: RedisProcess) -> None:
    ps = pw.ps
    store = ps.async_store
    assert isinstance(store, AsyncRedisStore)
    started = await pw.app.asend(pw.person_request())
    assert started.status == 202, started.body
    location = str(started.header("Location"))
    pending_id = urlsplit(location).path.rsplit("/", 1)[1]
    requirement = parse_aauth_requirement(str(started.header("AAuth-Requirement")))
    view = await ps.consent.aopen(str(requirement.code), ALICE)
    assert view.pending_id == pending_id and view.state == "interacting"

    # A long poll is parked on the change notification when the server dies under it.
    parked = asyncio.create_task(pw.app.asend(pw.poll(location, wait=30)))
    while store.waiting == 0:
        await asyncio.sleep(0.01)
    _kill(server)
    loop = asyncio.get_running_loop()
    since = loop.time()
    _assert_unavailable(await asyncio.wait_for(parked, 10))
    assert loop.time() - since < 3  # answered now, not when its 30 s wait runs out

    # Every way in answers 503 while the server is down, sync and async, agent and person.
    _assert_unavailable(await pw.app.asend(pw.poll(location)))
    _assert_unavailable(pw.app.send(pw.poll(location)))
    _assert_unavailable(pw.app.send(pw.poll(location, wait=5)))
    _assert_unavailable(await pw.app.asend(pw.person_request()))
    with pytest.raises(AAuthError) as caught:
        await ps.consent.aapprove(pending_id, ALICE)
    assert caught.value.status == 503
    with pytest.raises(AAuthError) as refused:
        ps.consent.approve(pending_id, ALICE)
    assert refused.value.status == 503

    server.start()
    # The acknowledged request is still there, exactly as it was.
    kept = await ps.consent.aview(pending_id, ALICE)
    assert (kept.pending_id, kept.state) == (pending_id, "interacting")
    # A sync "long poll" cannot park, so it is paced like a plain poll: the first answers at
    # once, a second within Retry-After is told to slow down.
    still = pw.app.send(pw.poll(location, wait=5))
    assert still.status in (202, 429)
    if still.status == 202:
        assert body_of(still)["status"] == "interacting"

    # The person approves while the agent's long poll waits: the poll wakes with the token.
    async def approve_soon() -> None:
        while store.waiting == 0:
            await asyncio.sleep(0.01)
        await ps.consent.aapprove(pending_id, ALICE)

    done, _ = await asyncio.gather(pw.app.asend(pw.poll(location, wait=30)), approve_soon())
    assert done.status == 200, done.body
    issued = json.loads(done.body)
    claims = decode_unverified(issued["person_token"]).payload
    assert claims["sub"] == pw.sub_for(ALICE)
    assert claims["cnf"] == {"jwk": pw.world.agent_key.public.jwk}
    # Delivered exactly once: the next poll finds the request finished.
    assert (await pw.app.asend(pw.poll(location, wait=1))).status == 410


def test_pending_request_survives_a_killed_redis_and_completes_after_restart() -> None:
    with RedisProcess(appendonly=True) as server:
        pw = _world(server)
        try:
            asyncio.run(_run(pw, server))
        finally:
            pw.ps.store.close()


async def _run(pw: PsWorld, server: RedisProcess) -> None:
    try:
        await _flow(pw, server)
    finally:
        await pw.ps.async_store.aclose()
