"""Benchmark: thousands of ``Prefer: wait`` long polls parked on one uvicorn worker over Redis.

One uvicorn worker (a forked process, framework-free ASGI over ``PersonServer.ahandle``)
serves the Person Server on the real Redis (``ensure_redis()``, a unique key prefix per
round).  For each round this script:

1. binds N agents to N people and opens one pending person-token request per agent,
   through a second PS instance on the same Redis prefix (the benchmark's "admin" side);
2. sends N concurrent signed ``GET {pending URL}`` with ``Prefer: wait=30`` (pre-signed:
   every poll is re-verified by the server, agent token and request signature) and waits
   until the worker reports all N parked;
3. counts the worker's Redis connections in ``CLIENT LIST`` (by the client name its stores
   set), then approves every request through ``Consent.approve`` on the second instance,
   at ``--rate`` approvals per second (0: back to back);
4. records, per poll, the time from its approval (the moment ``approve`` returned, i.e. the
   approval was committed and announced) to the moment its ``200`` arrived at the client.
   A poll whose wait runs out first answers ``202`` and the agent polls again at once, as an
   agent does; its latency is then measured to the answer of that later poll.

Each latency is split at three stamps taken by the worker (``time.monotonic()`` is system-wide):
the announcement reached its subscriber, the waiter woke, the answer was ready; the rest is
the client's.  Event-loop lag and GC pauses of both processes, and how busy the machine was,
are printed beside them, so a tail caused by the load generator or by other load on the VM
shows as such instead of as server latency (``--trace`` writes the raw stamps).

"Parked" means past its first read and blocked on the notification (``AsyncRedisStore.waiting``):
counting polls that were merely registered started the approvals while thousands of first
reads were still queued, and the first second of approvals then waited behind them (p99 0.6 to
2.7 s at 5,000 waiters, all of it in the first ~90 approvals).

It also prints the worker's CPU per poll (to verify and park it; to wake and answer it),
which says what approval rate one worker can sustain on this machine: the default
``--rate 100`` is below it even with the load generator on the same two cores.

A round with N/10 waiters runs first, so the connection counts of both sit side by side.
Targets from issue 4: p99 <= 100 ms; Redis connections independent of the number of waiters.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# bench/ itself must not be on the path: bench/http.py would stand in for the standard
# library's http package.  The repository root goes there instead.
sys.path.remove(str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import redis
import uvicorn

from aauth_server.asgi import async_asgi_app
from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.keys.jwk import PrivateKey
from aauth_server.person import PersonServer, PersonServerConfig
from aauth_server.storage.redis import AsyncRedisStore, RedisStore
from tests.redis_server import ensure_redis, free_port
from tests.support import AP_ISSUER, RESOURCE, World

SERVER_NAME = "aauth-bench-ps"
APPROVER_NAME = "aauth-bench-approver"
WAITING_PATH = "/_bench/waiting"
TRACE_PATH = "/_bench/trace"
SUBJECT_SECRET = b"bench-subject-secret-0123456789abcdef"
#: Polls per httpx client.  httpcore's pool re-examines every connection and every queued
#: request whenever one of them changes, so one pool of N busy connections costs O(N) per
#: response: with 200 polls in one pool the *client* added hundreds of milliseconds.
SHARD = 10


@dataclass
class Agent:
    key: PrivateKey
    token: str
    sub: str
    person: str
    location: str = ""
    pending_id: str = ""
    approved_at: float = 0.0
    answered_at: float = 0.0
    status: int = 0
    polls: int = 0


@dataclass
class Round:
    waiters: int
    parked: int = 0
    park_seconds: float = 0.0
    connections: int = 0
    subscribers: int = 0
    peak_connections: int = 0
    approve_seconds: float = 0.0
    park_cpu: float = 0.0
    repolls: int = 0
    answer_cpu: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    #: Per 200 poll, in ms: approval -> the worker's subscriber got the announcement -> the
    #: waiter's wait returned -> the worker had its answer -> the client had the response.
    phases_ms: list[tuple[float, float, float, float]] = field(default_factory=list)
    worker_stalls: dict[str, float] = field(default_factory=dict)
    client_stalls: dict[str, float] = field(default_factory=dict)
    #: During the approvals, in CPUs: busy on the machine, stolen by the host, and used by
    #: the worker and this process (client and approver); Redis and anything else is the rest.
    machine: tuple[float, float, float] = (0.0, 0.0, 0.0)
    statuses: dict[int, int] = field(default_factory=dict)


class Stalls:
    """Event-loop lag and GC pauses of one process, each stamped with ``time.monotonic()``.

    CLOCK_MONOTONIC is system-wide, so the worker's and the client's stalls line up with the
    approval times: a late answer is then attributed to whichever process was stalled.
    """

    PERIOD = 0.005

    def __init__(self) -> None:
        self.lags: list[tuple[float, float]] = []
        self.pauses: list[tuple[float, float, int]] = []
        self._gc_started = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is not None:
            return
        gc.callbacks.append(self._gc)
        self._task = asyncio.get_running_loop().create_task(self._sample())

    def stop(self) -> None:
        if self._gc in gc.callbacks:
            gc.callbacks.remove(self._gc)
        if self._task is not None:
            self._task.cancel()

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.monotonic()
        else:
            now = time.monotonic()
            self.pauses.append((now, now - self._gc_started, info["generation"]))

    async def _sample(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.PERIOD)
            after = time.monotonic()
            self.lags.append((after, after - before - self.PERIOD))

    def summary(self, start: float, end: float) -> dict[str, float]:
        lags = sorted(lag for at, lag in self.lags if start <= at <= end) or [0.0]
        pauses = [(d, g) for at, d, g in self.pauses if start <= at <= end]
        return {
            "lag_p99_ms": percentile(lags, 0.99) * 1000,
            "lag_max_ms": lags[-1] * 1000,
            "lag_over_50ms": sum(1 for lag in lags if lag > 0.05),
            "gc_count": len(pauses),
            "gc_gen2": sum(1 for _, g in pauses if g == 2),
            "gc_max_ms": max((d for d, _ in pauses), default=0.0) * 1000,
            "gc_total_ms": sum(d for d, _ in pauses) * 1000,
        }


def machine_cpu() -> tuple[float, float, float]:
    """Busy, stolen and total CPU seconds of the whole machine so far (Linux ``/proc/stat``).

    Other processes on the VM (or its host: steal) share the two cores with Redis, the
    worker and the load generator; a round that ran while they were busy says so.
    """
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return 0.0, 0.0, 0.0
    ticks = [int(x) / os.sysconf("SC_CLK_TCK") for x in first[1:9]]
    idle = ticks[3] + ticks[4]
    return sum(ticks) - idle, ticks[7], sum(ticks)


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


#: The PS's cap on Prefer: wait.  Longer than the default approval window (5,000 approvals at
#: 100/s take 50 s) so that every poll is woken by its approval, never re-polls after a timeout.
MAX_WAIT = 120


def records_path(prefix: str) -> Path:
    return Path(tempfile.gettempdir()) / f"{prefix}.records.db"


def ps_config(
    world: World, issuer: str, redis_url: str, prefix: str, name: str, pool: int
) -> PersonServerConfig:
    options: dict[str, Any] = {"prefix": prefix, "client_name": name}
    if pool > 0:
        options["max_connections"] = pool
    return PersonServerConfig(
        issuer=issuer,
        signing_key=world.ps_key,
        subject_secret=SUBJECT_SECRET,
        dev_loopback=True,
        discovery=world.discovery(),
        store=RedisStore.from_url(redis_url, **options),
        async_store=AsyncRedisStore.from_url(redis_url, **options),
        # The worker and the approver share the durable records (bindings) through one file.
        records=f"sqlite:///{records_path(prefix)}",
        records_migrate=True,
        binding_lifetime=3600,
        max_wait=MAX_WAIT,
    )


# -- the worker (a forked process) ----------------------------------------------------------------


class Trace:
    """When each pending request's announcement reached the worker, when its waiter woke,
    and when the worker had its answer: splits a poll's latency between Redis, the worker's
    queue, its work, and the client.  The worker wraps its own store's hooks; nothing in
    the server changes."""

    def __init__(self, store: AsyncRedisStore, pending_prefix: str) -> None:
        self.notified: dict[str, float] = {}
        self.woke: dict[str, float] = {}
        self.answered: dict[str, float] = {}
        self.stalls = Stalls()
        self._prefix = pending_prefix
        waiters = store._waiters
        notify, wait = waiters.notify, store.wait_for_change

        def traced_notify(subject: str) -> None:
            self.notified.setdefault(subject.rpartition(":")[2], time.monotonic())
            notify(subject)

        async def traced_wait(kind: str, id: str, version: int, timeout: float) -> Any:
            try:
                return await wait(kind, id, version, timeout)
            finally:
                self.woke[id] = time.monotonic()

        waiters.notify = traced_notify  # type: ignore[method-assign]
        store.wait_for_change = traced_wait  # type: ignore[method-assign]

    def answer(self, request: HttpRequest, response: HttpResponse) -> None:
        if request.path.startswith(self._prefix) and response.status == 200:
            self.answered[request.path[len(self._prefix) :]] = time.monotonic()

    def json(self) -> dict[str, Any]:
        return {
            "notified": self.notified,
            "woke": self.woke,
            "answered": self.answered,
            "lags": self.stalls.lags,
            "pauses": self.stalls.pauses,
        }


def serve(world: World, port: int, redis_url: str, prefix: str, pool: int, backlog: int) -> None:
    # The fork inherited the load generator's heap (keys, agents, earlier rounds); a real
    # worker has none of it, so keep it out of the worker's full collections.
    gc.freeze()
    issuer = f"http://127.0.0.1:{port}"
    ps = PersonServer(ps_config(world, issuer, redis_url, prefix, SERVER_NAME, pool))
    store = ps.async_store
    assert isinstance(store, AsyncRedisStore)
    trace = Trace(store, ps.config.pending_prefix)

    async def handler(request: HttpRequest) -> HttpResponse:
        if request.path == WAITING_PATH:
            trace.stalls.start()
            return HttpResponse.json(200, {"waiting": store.waiting, "cpu": time.process_time()})
        if request.path == TRACE_PATH:
            return HttpResponse.json(200, trace.json())
        response = await ps.ahandle(request) or HttpResponse(404, [], b"")
        trace.answer(request, response)
        return response

    config = uvicorn.Config(
        async_asgi_app(handler),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        backlog=backlog,
        # uvicorn closes a connection idle for 5 s; a pooled client connection reused by a
        # re-poll 30 s later then fails with "Server disconnected" (158 of 5000 polls did).
        timeout_keep_alive=120,
        timeout_graceful_shutdown=1,
    )
    uvicorn.Server(config).run()


def start_worker(
    world: World, redis_url: str, prefix: str, pool: int, backlog: int
) -> tuple[multiprocessing.process.BaseProcess, int]:
    port = free_port()
    # Forked, so the worker inherits the world's keys and documents without serialising them.
    context = multiprocessing.get_context("fork")
    process = context.Process(
        target=serve, args=(world, port, redis_url, prefix, pool, backlog), daemon=True
    )
    process.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{WAITING_PATH}", timeout=1).status_code == 200:
                return process, port
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.terminate()
    raise SystemExit("the uvicorn worker did not start")


def stop_worker(process: multiprocessing.process.BaseProcess) -> None:
    process.terminate()
    process.join(10)
    if process.is_alive():
        process.kill()
        process.join()


# -- the agents and the approver ------------------------------------------------------------------


def open_requests(world: World, approver: PersonServer, issuer: str, n: int) -> list[Agent]:
    agents = []
    for i in range(n):
        key = PrivateKey.generate("Ed25519")
        local = f"bench{i}"
        agent = Agent(
            key,
            world.provider.issue(key.public, local),
            world.provider.agent_id(local),
            f"person-{i}",
        )
        approver.run(approver.bindings.bind_steps(AP_ISSUER, agent.sub, agent.person, 3600))
        body = json.dumps({"resource": RESOURCE, "capabilities": ["interaction"]}).encode()
        request = world.signed(
            "POST", "/person", body=body, token=agent.token, key=key, origin=issuer
        )
        response = approver.handle(request)
        if response is None or response.status != 202:
            raise SystemExit(f"could not open a pending request: {response}")
        agent.location = str(response.header("Location"))
        agent.pending_id = agent.location.rsplit("/", 1)[1]
        agents.append(agent)
    return agents


def approve_all(approver: PersonServer, agents: list[Agent], rate: float) -> None:
    started = time.monotonic()
    for i, agent in enumerate(agents):
        if rate > 0:
            due = started + i / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        approver.consent.approve(agent.pending_id, agent.person)
        agent.approved_at = time.monotonic()


def connections(admin: redis.Redis) -> tuple[int, int]:
    """The worker's connections in ``CLIENT LIST``, and how many of them are subscribed."""
    mine = [c for c in admin.client_list() if c.get("name") == SERVER_NAME]
    return len(mine), sum(1 for c in mine if int(c.get("sub", 0)) > 0)


# -- one round ------------------------------------------------------------------------------------


def signed_poll(world: World, agent: Agent, issuer: str, wait: int) -> HttpRequest:
    return world.signed(
        "GET",
        agent.location[len(issuer) :],
        headers=[("Prefer", f"wait={wait}")],
        token=agent.token,
        key=agent.key,
        origin=issuer,
    )


async def poll(
    client: httpx.AsyncClient, request: HttpRequest, agent: Agent, again: Callable[[], HttpRequest]
) -> None:
    """Long-poll as an agent does: a ``202`` (the wait ran out first) is polled again at once."""
    while True:
        agent.polls += 1
        try:
            response = await client.request(
                request.method, request.url, headers=[(k, v) for k, v in request.headers]
            )
            agent.status = response.status_code
        except httpx.HTTPError as exc:
            print(f"  poll failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            agent.status = -1
        agent.answered_at = time.monotonic()
        if agent.status != 202:
            return
        request = again()


async def worker_state(client: httpx.AsyncClient, url: str) -> tuple[int, float]:
    """How many polls the worker has parked, and its CPU seconds so far."""
    state = (await client.get(url)).json()
    return int(state["waiting"]), float(state["cpu"])


async def drive(
    world: World,
    agents: list[Agent],
    port: int,
    args: argparse.Namespace,
    result: Round,
    approver: PersonServer,
    admin: redis.Redis,
) -> None:
    n = len(agents)
    issuer = f"http://127.0.0.1:{port}"
    limits = httpx.Limits(max_connections=SHARD, max_keepalive_connections=SHARD)
    timeout = httpx.Timeout(args.wait + 30, connect=60)
    clients = [httpx.AsyncClient(limits=limits, timeout=timeout) for _ in range(0, n, SHARD)]
    probe = httpx.AsyncClient(timeout=10)
    stalls = Stalls()
    stalls.start()
    try:
        signed = [signed_poll(world, agent, issuer, args.wait) for agent in agents]
        state_url = issuer + WAITING_PATH
        _, cpu_before = await worker_state(probe, state_url)
        started = time.monotonic()
        tasks = [
            asyncio.create_task(
                poll(
                    clients[i // SHARD],
                    request,
                    agent,
                    functools.partial(signed_poll, world, agent, issuer, args.wait),
                )
            )
            for i, (request, agent) in enumerate(zip(signed, agents, strict=True))
        ]
        deadline = started + args.wait - 2
        while time.monotonic() < deadline:
            result.parked, cpu_parked = await worker_state(probe, state_url)
            if result.parked >= n:
                break
            await asyncio.sleep(0.1)
        result.park_seconds = time.monotonic() - started
        result.park_cpu = cpu_parked - cpu_before
        result.connections, result.subscribers = connections(admin)
        peak = threading.Event()

        def watch() -> None:
            while not peak.is_set():
                result.peak_connections = max(result.peak_connections, connections(admin)[0])
                peak.wait(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        # Everything the load generator built so far lives until the round ends; frozen, it
        # stays out of its collections (full ones took up to 0.7 s with 5,000 polls), which
        # would otherwise stall this loop and show up as server latency.
        gc.freeze()
        busy_before, steal_before, _ = machine_cpu()
        own_before = time.process_time()
        began = time.monotonic()
        await asyncio.to_thread(approve_all, approver, agents, args.rate)
        result.approve_seconds = time.monotonic() - began
        await asyncio.gather(*tasks)
        peak.set()
        watcher.join()
        ended = time.monotonic()
        busy_after, steal_after, _ = machine_cpu()
        own = time.process_time() - own_before
        _, cpu_after = await worker_state(probe, state_url)
        span = max(ended - began, 1e-9)
        result.machine = (
            (busy_after - busy_before) / span,
            (steal_after - steal_before) / span,
            (own + cpu_after - cpu_parked) / span,
        )
        result.answer_cpu = cpu_after - cpu_parked
        trace = (await probe.get(issuer + TRACE_PATH)).json()
        worker = Stalls()
        worker.lags = [(at, lag) for at, lag in trace["lags"]]
        worker.pauses = [(at, d, g) for at, d, g in trace["pauses"]]
        result.worker_stalls = worker.summary(began, ended)
        result.client_stalls = stalls.summary(began, ended)
        if args.trace:
            raw = {
                "began": began,
                "ended": ended,
                "worker": trace,
                "client": {"lags": stalls.lags, "pauses": stalls.pauses},
                "polls": [(a.pending_id, a.approved_at, a.answered_at, a.status) for a in agents],
            }
            Path(f"{args.trace}-{n}.json").write_text(json.dumps(raw))
        for agent in agents:
            stamps = [trace[k].get(agent.pending_id) for k in ("notified", "woke", "answered")]
            if agent.status == 200 and None not in stamps:
                notified, woke, answered = (float(x) for x in stamps)
                result.phases_ms.append(
                    (
                        (notified - agent.approved_at) * 1000,
                        (woke - notified) * 1000,
                        (answered - woke) * 1000,
                        (agent.answered_at - answered) * 1000,
                    )
                )
    finally:
        gc.unfreeze()
        stalls.stop()
        for client in [*clients, probe]:
            await client.aclose()


def run_round(
    world: World, redis_url: str, n: int, args: argparse.Namespace, admin: redis.Redis
) -> Round:
    prefix = "bench-longpoll-" + uuid.uuid4().hex
    result = Round(n)
    process, port = start_worker(world, redis_url, prefix, args.pool, backlog=max(2048, n + 256))
    issuer = f"http://127.0.0.1:{port}"
    approver = PersonServer(ps_config(world, issuer, redis_url, prefix, APPROVER_NAME, 4))
    try:
        agents = open_requests(world, approver, issuer, n)
        asyncio.run(drive(world, agents, port, args, result, approver, admin))
        for agent in agents:
            result.repolls += agent.polls - 1
            result.statuses[agent.status] = result.statuses.get(agent.status, 0) + 1
            if agent.status == 200:
                result.latencies_ms.append((agent.answered_at - agent.approved_at) * 1000)
    finally:
        stop_worker(process)
        approver.close()
        for leftover in records_path(prefix).parent.glob(records_path(prefix).name + "*"):
            leftover.unlink()
        keys = list(admin.scan_iter(match=prefix + ":*", count=1000))
        for start in range(0, len(keys), 1000):
            admin.delete(*keys[start : start + 1000])
    return result


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def report(result: Round) -> None:
    lat = result.latencies_ms
    statuses = ", ".join(f"{s}: {c}" for s, c in sorted(result.statuses.items()))
    print(
        f"waiters={result.waiters:<6} parked {result.parked}/{result.waiters} "
        f"in {result.park_seconds:.1f} s; approvals took {result.approve_seconds:.1f} s; "
        f"final answers {{{statuses}}}, {result.repolls} polls repeated after their wait ran out"
    )
    n = max(1, result.waiters)
    print(
        f"  worker CPU per poll: {result.park_cpu / n * 1000:.2f} ms to verify and park it, "
        f"{result.answer_cpu / n * 1000:.2f} ms to wake and answer it"
    )
    print(
        f"  redis connections of the worker (CLIENT LIST name={SERVER_NAME}) while "
        f"{result.parked} polls wait: {result.connections} ({result.subscribers} pub/sub); "
        f"peak during approvals: {result.peak_connections}"
    )
    if lat:
        print(
            f"  approval -> response: p50 = {statistics.median(lat):.1f} ms   "
            f"p99 = {percentile(lat, 0.99):.1f} ms   max = {max(lat):.1f} ms"
        )
    if result.phases_ms:
        names = (
            "approval -> worker notified",
            "notified -> waiter woke",
            "woke -> worker answered",
            "answered -> client got it",
        )
        for i, name in enumerate(names):
            values = [phase[i] for phase in result.phases_ms]
            print(
                f"    {name:<30} p50 = {statistics.median(values):7.1f} ms   "
                f"p99 = {percentile(values, 0.99):7.1f} ms   max = {max(values):7.1f} ms"
            )
    busy, steal, ours = result.machine
    print(
        f"  machine while approving: {busy:.2f} of {os.cpu_count()} CPUs busy ({steal:.2f} "
        f"stolen by the host), {ours:.2f} of them the worker and this process"
    )
    for side, stalls in (("worker", result.worker_stalls), ("client", result.client_stalls)):
        if stalls:
            print(
                f"  {side} stalls while approving: event-loop lag "
                f"p99 = {stalls['lag_p99_ms']:.1f} ms, max = {stalls['lag_max_ms']:.1f} ms, "
                f"{stalls['lag_over_50ms']:.0f} samples > 50 ms; "
                f"GC {stalls['gc_count']:.0f} runs ({stalls['gc_gen2']:.0f} full), "
                f"max {stalls['gc_max_ms']:.1f} ms, total {stalls['gc_total_ms']:.0f} ms"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--waiters", type=int, default=5000)
    parser.add_argument(
        "--wait", type=int, default=MAX_WAIT, help=f"Prefer: wait=N (the PS caps at {MAX_WAIT})"
    )
    parser.add_argument(
        "--rate", type=float, default=100, help="approvals per second (0: back to back)"
    )
    parser.add_argument(
        "--pool", type=int, default=16, help="the worker's Redis pool size (0: redis-py default)"
    )
    parser.add_argument("--redis", default=None, help="Redis URL (default: ensure_redis())")
    parser.add_argument(
        "--trace", default=None, help="write each round's raw timings to TRACE-<waiters>.json"
    )
    args = parser.parse_args()

    raise_fd_limit(2 * args.waiters + 1024)
    redis_url = args.redis or ensure_redis()
    admin = redis.Redis.from_url(redis_url)
    world = World()
    small = max(1, args.waiters // 10)
    print(
        f"long polls on one uvicorn worker, Redis {redis_url}, Prefer: wait={args.wait}, "
        f"approvals at {args.rate or 'max'}/s, worker pool {args.pool or 'unbounded'}"
    )
    try:
        results = [run_round(world, redis_url, n, args, admin) for n in (small, args.waiters)]
    finally:
        admin.close()
    for result in results:
        report(result)
    print("targets: p99 <= 100 ms; redis connections independent of the number of waiters")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
