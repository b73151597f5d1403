"""Benchmark: an ATH-token-validated API call vs the same call unprotected, in one run.

Two Starlette endpoints answer the same JSON: ``GET /api/products`` behind
``@ath.require(scopes=["products:read"])`` (Bearer parsing, the token's SHA-256, one
pending-store read, expiry/revocation/``X-ATH-Agent-ID`` checks, the scope -> (method, path)
map) and ``GET /open/products`` without it.  Measured two ways, interleaved batch by batch so
machine load hits both alike:

* ``http`` - over a real socket: uvicorn on 127.0.0.1 and a keep-alive httpx client, the call
  as an agent makes it;
* ``asgi`` - the app called in process (no socket, no HTTP parsing), the framework-only ratio
  and so the strictest view of what validation costs.

Prints, for each, the per-call time of both (median and minimum over the batches) and
``ratio = protected / unprotected`` for both estimators.  Target: the ``http`` ratio <= 1.2
(the ``asgi`` ratio divides by a call that does almost nothing, so it is shown for reference
with the microseconds validation adds).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

# bench/ off the path (its http.py would stand in for the standard library's), the repo on it.
sys.path.remove(str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "adapters"))

import httpx
import uvicorn
from aauth_server_starlette.ath import ATH
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from example_apps._procs import free_port
from tests.ath.harness import Agent, World

BODY = b'{"products":[{"id":"apple","price":3.2},{"id":"bread","price":4.5}]}'


def build() -> tuple[Starlette, str, str]:
    agent = Agent()
    world = World(agents=(agent,))
    token = world.grant(agent, ["products:read"])["access_token"]
    ath = ATH(world.server)

    @ath.require(scopes=["products:read"])
    async def protected(request: Request) -> Response:
        return Response(BODY, media_type="application/json")

    async def unprotected(request: Request) -> Response:
        return Response(BODY, media_type="application/json")

    app = Starlette(
        routes=[
            Route("/api/products", protected),
            Route("/open/products", unprotected),
        ]
    )
    return app, token, agent.agent_id


def asgi_caller(
    app: Starlette, path: str, headers: list[tuple[bytes, bytes]]
) -> Callable[[], Awaitable[None]]:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"shop.example"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("shop.example", 443),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def call() -> None:
        await app(dict(scope), receive, send)
        if statuses.pop() != 200:
            raise SystemExit(f"{path} did not answer 200")

    return call


async def asgi_batch(call: Callable[[], Awaitable[None]], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await call()
    return (time.perf_counter() - start) / n


def http_batch(client: httpx.Client, url: str, headers: dict[str, str], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        response = client.get(url, headers=headers)
        if response.status_code != 200:
            raise SystemExit(f"{url} answered {response.status_code}: {response.text}")
    return (time.perf_counter() - start) / n


def report(name: str, protected: list[float], unprotected: list[float], note: str) -> None:
    for label, pick in (("median", statistics.median), ("min", min)):
        p, u = pick(protected), pick(unprotected)
        print(
            f"{name:<4} {label:<6}: protected {p * 1e6:8.1f} us   unprotected {u * 1e6:8.1f} us"
            f"   ratio = {p / u:.3f}   ({note})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=200, help="calls per batch")
    parser.add_argument("--repeats", type=int, default=30, help="batches of each kind")
    args = parser.parse_args()
    app, token, agent_id = build()
    auth = {"Authorization": f"Bearer {token}", "X-ATH-Agent-ID": agent_id}
    raw_auth = [(k.lower().encode(), v.encode()) for k, v in auth.items()]
    gc.collect()
    gc.freeze()

    protected_call = asgi_caller(app, "/api/products", raw_auth)
    open_call = asgi_caller(app, "/open/products", raw_auth)
    loop = asyncio.new_event_loop()
    asgi_p: list[float] = []
    asgi_u: list[float] = []
    loop.run_until_complete(asgi_batch(protected_call, args.iterations))  # warm up
    for _ in range(args.repeats):
        asgi_p.append(loop.run_until_complete(asgi_batch(protected_call, args.iterations)))
        asgi_u.append(loop.run_until_complete(asgi_batch(open_call, args.iterations)))
    loop.close()

    # uvicorn binds its own socket (it sets TCP_NODELAY on what it accepts; a socket handed
    # in pre-bound would pay a delayed-ACK stall of ~40 ms per call on loopback).
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise SystemExit("uvicorn did not start")
        time.sleep(0.01)
    http_p: list[float] = []
    http_u: list[float] = []
    try:
        with httpx.Client(trust_env=False, timeout=10) as client:
            base = f"http://127.0.0.1:{port}"
            http_batch(client, base + "/api/products", auth, args.iterations)  # warm up
            for _ in range(args.repeats):
                http_p.append(http_batch(client, base + "/api/products", auth, args.iterations))
                http_u.append(http_batch(client, base + "/open/products", auth, args.iterations))
    finally:
        server.should_exit = True
        thread.join(10)

    print(f"{args.repeats} interleaved batches x {args.iterations} calls of each kind")
    report("http", http_p, http_u, "target <= 1.2")
    report("asgi", asgi_p, asgi_u, "in process, no socket: for reference")
    extra = statistics.median(asgi_p) - statistics.median(asgi_u)
    print(f"validation adds {extra * 1e6:.1f} us per call (median, in process)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
