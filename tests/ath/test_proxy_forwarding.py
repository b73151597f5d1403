"""The gateway's forwarding against a real HTTP upstream on loopback: bodies stream both ways,
the upstream token replaces the ATH one, hop-by-hop and ATH headers stay behind, and the
deadline and size caps hold (sync and async forwarders)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from aauth_server.ath import ATHError
from aauth_server.ath.proxy import Forwarder, ProxyPlan
from aauth_server.http import HttpRequest
from tests.ath.harness import Agent, Browser, World, gateway_provider


class Upstream:
    """An API on 127.0.0.1: echoes what it got, or answers big, or slowly."""

    def __init__(self) -> None:
        seen = self.seen = []  # type: list[dict[str, Any]]

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                chunked = self.headers.get("Transfer-Encoding") == "chunked"
                body = self._chunked() if chunked else self.rfile.read(length)
                seen.append(
                    {
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "size": len(body),
                    }
                )
                if self.path.startswith("/api/big"):
                    payload = b"x" * (2 * 1024 * 1024)
                elif self.path.startswith("/api/slow"):
                    time.sleep(3)
                    payload = b"late"
                else:
                    payload = json.dumps({"size": len(body)}).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("X-Upstream", "yes")
                self.send_header("Connection", "keep-alive, X-Drop-Me")
                self.send_header("X-Drop-Me", "hop")
                self.end_headers()
                self.wfile.write(payload)

            def _chunked(self) -> bytes:
                out = b""
                while True:
                    size = int(self.rfile.readline().strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        return out
                    out += self.rfile.read(size)
                    self.rfile.readline()

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    served = Upstream()
    yield served
    served.close()


def _world(upstream: Upstream, **limits: Any) -> tuple[World, Agent, str]:
    from dataclasses import replace

    agent = Agent()
    provider = replace(
        gateway_provider("notes"),
        api_base_url=upstream.url + "/api",
        routes={"profile:read": ["GET /profile", "POST /echo", "GET /big", "GET /slow"]},
    )
    world = World(mode="gateway", agents=(agent,), dev_loopback=True, **limits)
    world.config.providers = (provider, gateway_provider("calendar"))
    world.server.scope_maps["notes"] = provider.scope_map()
    world.register(agent, ["profile:read"], provider="notes", redirect_uris=None)
    started = world.authorize(agent, ["profile:read"], provider="notes", user_redirect_uri=None)
    assert world.upstream_consent(started, Browser()).status == 200
    token = world.token(agent, started["ath_session_id"])
    assert token.status == 200, token.body
    return world, agent, json.loads(token.body)["access_token"]


def _plan(
    world: World,
    agent: Agent,
    token: str,
    method: str,
    path: str,
    extra: list[tuple[str, str]] | None = None,
) -> ProxyPlan:
    headers = [
        ("Authorization", f"Bearer {token}"),
        ("X-ATH-Agent-ID", agent.agent_id),
        ("Cookie", "ath_browser=secret"),
        ("Connection", "keep-alive, X-Hop"),
        ("X-Hop", "1"),
        ("X-Custom", "kept"),
        *(extra or []),
    ]
    return world.server.plan_proxy(
        HttpRequest(method, world.base + "/ath/proxy/notes" + path, headers, b"")
    )


def test_sync_forwarding_streams_and_strips(upstream: Upstream) -> None:
    world, agent, token = _world(upstream)
    plan = _plan(world, agent, token, "POST", "/echo?q=1")
    forwarder = Forwarder(world.config)
    chunks = (b"a" * 65536 for _ in range(20))  # 1.25 MiB, streamed (chunked) upstream
    proxied = forwarder.send(plan, chunks)
    body = b"".join(proxied.body)
    forwarder.close()
    assert proxied.status == 201 and json.loads(body) == {"size": 20 * 65536}
    names = {k.lower() for k, _ in proxied.headers}
    assert "x-upstream" in names and "x-drop-me" not in names and "connection" not in names
    seen = upstream.seen[-1]
    assert seen["path"] == "/api/echo?q=1"
    assert (
        seen["headers"]["authorization"] == "Bearer upstream-" + world.upstream.exchanges[-1].code
    )
    assert seen["headers"]["x-custom"] == "kept"
    for stripped in ("x-ath-agent-id", "cookie", "x-hop"):
        assert stripped not in seen["headers"], stripped
    assert token not in json.dumps(seen)
    assert (
        "proxy_request",
        {
            "agent_id": agent.agent_id,
            "user_id": world.events[-1][1]["user_id"],
            "provider_id": "notes",
            "method": "POST",
            "path": "/echo",
        },
    ) in world.events


def test_async_forwarding_streams_both_ways(upstream: Upstream) -> None:
    world, agent, token = _world(upstream)

    async def run() -> tuple[int, bytes]:
        plan = await world.server.aplan_proxy(
            HttpRequest(
                "POST",
                world.base + "/ath/proxy/notes/echo",
                [("Authorization", f"Bearer {token}"), ("X-ATH-Agent-ID", agent.agent_id)],
                b"",
            )
        )

        async def body() -> AsyncIterator[bytes]:
            for _ in range(4):
                yield b"b" * 1000

        forwarder = Forwarder(world.config)
        proxied = await forwarder.asend(plan, body())
        data = b"".join([chunk async for chunk in proxied.body])
        await forwarder.aclose()
        return proxied.status, data

    status, data = asyncio.run(run())
    assert status == 201 and json.loads(data) == {"size": 4000}


def test_request_body_over_the_cap_is_413(upstream: Upstream) -> None:
    world, agent, token = _world(upstream, proxy_max_request=100_000)
    plan = _plan(world, agent, token, "POST", "/echo")
    forwarder = Forwarder(world.config)
    with pytest.raises(ATHError) as refused:
        forwarder.send(plan, (b"c" * 65536 for _ in range(4)))
    forwarder.close()
    assert (refused.value.status, refused.value.code) == (413, "PAYLOAD_TOO_LARGE")


def test_declared_oversize_answer_is_502(upstream: Upstream) -> None:
    world, agent, token = _world(upstream, proxy_max_response=1024 * 1024)
    forwarder = Forwarder(world.config)
    with pytest.raises(ATHError) as refused:
        forwarder.send(_plan(world, agent, token, "GET", "/big"), iter(()))
    forwarder.close()
    assert (refused.value.status, refused.value.code) == (502, "UPSTREAM_ERROR")


def test_slow_upstream_hits_the_deadline(upstream: Upstream) -> None:
    world, agent, token = _world(upstream, proxy_timeout=0.5)
    forwarder = Forwarder(world.config)
    started = time.monotonic()
    with pytest.raises(ATHError) as refused:
        forwarder.send(_plan(world, agent, token, "GET", "/slow"), iter(()))
    forwarder.close()
    assert (refused.value.status, refused.value.code) == (502, "UPSTREAM_ERROR")
    assert time.monotonic() - started < 2.5


def test_unreachable_upstream_is_502() -> None:
    gone = Upstream()
    gone.close()
    world, agent, token = _world(gone)
    forwarder = Forwarder(world.config)
    with pytest.raises(ATHError) as refused:
        forwarder.send(_plan(world, agent, token, "GET", "/profile"), iter(()))
    forwarder.close()
    assert refused.value.code == "UPSTREAM_ERROR"
