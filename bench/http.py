"""Benchmark: each example resource under its production server, protected vs unprotected.

Starts the example agent provider and the example resources as real servers on 127.0.0.1
(each through ``bench/control_servers.py``, which runs the example app unchanged and adds the
control endpoint ``/floor``, below):

* Starlette: ``example_apps.starlette_resource`` under uvicorn with httptools and uvloop
  (the ``starlette`` extra installs ``uvicorn[standard]``);
* Django (ASGI): ``example_apps.django_resource`` under uvicorn with httptools and uvloop;
* Flask: ``example_apps.flask_resource --server gunicorn`` under gunicorn, one sync worker.

The bench checks that each server really runs that stack (the uvicorn process has httptools'
and uvloop's extension modules loaded; Flask answers with ``Server: gunicorn``).  A load
generator in a separate process sends a bounded number of keep-alive requests (gunicorn's sync
worker closes each connection; the client reconnects) to ``/whoami`` (agent-token protected)
and ``/health`` (unprotected), and to the control ``/floor`` (unprotected; its handler does
one raw Ed25519 verify of ``cryptography`` over a message the size of the request's signature
base, then answers as ``/health``), in alternating phases, and this process reads the
server's CPU time (every thread of the server process and its children,
``/proc/<pid>/task/*/schedstat``, in nanoseconds) before and after each phase.

All three endpoints get the very same request: a signed agent request for ``/whoami``, so the
server parses the same header bytes every time.  The requests of a phase are signed just
before it, with 30 distinct ``created`` values (30 distinct signatures), cycled; the guard
verifies each request's signature every time (no cache is keyed by it) and, as every agent
reuses its agent token, finds that token in its verified-token cache after the first request.

Prints, per framework: requests/s and server CPU per request for each endpoint (medians of
the rounds); the protection overhead (per round: CPU per ``/whoami`` request minus CPU per
``/health`` request; the median); its floor, one Ed25519 verify (the request signature; the
agent token is cached), measured in the server as ``/floor`` minus ``/health`` (per round;
the median), i.e. under the same load, in the same process and through the same framework
path as the protection; and their ratio: 1.0 would mean the protection costs nothing but
that verify.  For reference also the overhead in raw verifies timed in this process (CPU
time of a tight loop on an otherwise idle vCPU), which a server never reaches: between two
requests its caches hold everything else, and the load generator runs on the other vCPU.
Targets (issue 9): <= 1.3 on Starlette and Django ASGI, <= 1.5 on Flask.

Then the same ratio from requests sent one at a time (``--paired`` triples, 600 by default):
this process sends /health, /whoami and /floor in a shuffled order on one connection and
reads the server's CPU around each request alone, the server idle between them; per triple,
/whoami and /floor minus /health; the medians.  A slow spell of the machine falls on the
three requests of a triple alike, so this estimate holds still from run to run where the
phases under load do not (Django's: its ASGI handler hops to a thread for every request's
signals, and its CPU per request moves by more, phase to phase, than the overhead).  It is
another regime, not a second opinion on the first: a server woken for each request meets
its code with colder caches, which costs the protection's Python more than one verify.
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.realpath(os.path.dirname(os.path.abspath(__file__)))
# `python bench/http.py` puts bench/ first on sys.path, where this file would stand in for
# the standard library's `http` package in every later import: take that entry off.
for _entry in [p for p in sys.path if os.path.realpath(p or os.curdir) == _HERE]:
    sys.path.remove(_entry)
sys.path.insert(0, os.path.dirname(_HERE))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import base64  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

FRAMEWORKS = ("starlette", "django", "flask")
TARGETS = {"starlette": 1.3, "django": 1.3, "flask": 1.5}
DISTINCT_SIGNATURES = 30
#: Seconds the one-at-a-time measurement waits before and after each request (see paired()).
SETTLE = 0.0005


# -- the load generator (a separate process: `python bench/http.py --client`) -----------------


async def _connection(
    host: str, port: int, take: Callable[[], bytes | None], statuses: dict[int, int]
) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    try:
        while (request := take()) is not None:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            assert reader is not None
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (h.partition(":") for h in lines[1:] if h)
            }
            if "content-length" in headers:
                await reader.readexactly(int(headers["content-length"]))
            else:  # chunked (Django without CommonMiddleware sets no Content-Length)
                while (size := int((await reader.readuntil(b"\r\n")).strip(), 16)) > 0:
                    await reader.readexactly(size + 2)
                await reader.readuntil(b"\r\n")
            statuses[status] = statuses.get(status, 0) + 1
            if headers.get("connection", "").lower() == "close":
                writer.close()
                writer = None
    finally:
        if writer is not None:
            writer.close()


async def _load(job: dict[str, Any]) -> dict[str, Any]:
    pool = [base64.b64decode(r) for r in job["requests"]]
    remaining = job["count"]
    deadline = time.monotonic() + job["timeout"]
    statuses: dict[int, int] = {}
    sent = 0

    def take() -> bytes | None:
        nonlocal remaining, sent
        if remaining <= 0 or time.monotonic() > deadline:
            return None
        remaining -= 1
        sent += 1
        return pool[sent % len(pool)]

    start = time.perf_counter()
    await asyncio.gather(
        *(_connection(job["host"], job["port"], take, statuses) for _ in range(job["concurrency"]))
    )
    return {"seconds": time.perf_counter() - start, "statuses": statuses}


def client_main() -> int:
    job = json.loads(sys.stdin.read())
    print(json.dumps(asyncio.run(_load(job))))
    return 0


# -- the server's CPU time, from /proc ----------------------------------------------------------


def _tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo.extend(int(child) for child in task.read_text().split())
            except OSError:
                continue  # a thread that ended between listing and reading
    return found


def server_cpu_ns(pid: int) -> int:
    """CPU time of every thread of ``pid`` and its descendants, in nanoseconds."""
    total = 0
    for process in _tree(pid):
        for schedstat in Path(f"/proc/{process}/task").glob("*/schedstat"):
            try:
                total += int(schedstat.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue  # a thread that ended between listing and reading
    return total


def loaded_modules(pid: int) -> str:
    maps = "".join(Path(f"/proc/{p}/maps").read_text() for p in _tree(pid))
    found = [name for name in ("httptools", "uvloop") if f"/{name}/" in maps]
    return ", ".join(found) or "none"


# -- requests -----------------------------------------------------------------------------------


@dataclass
class Agent:
    key: Any
    token: str


def enroll(provider_url: str) -> Agent:
    import httpx

    from aauth_server.keys.jwk import PrivateKey

    key = PrivateKey.generate("Ed25519")
    with httpx.Client(timeout=10, trust_env=False) as client:
        answer = client.post(
            provider_url + "/dev/agent-token", json={"local": "bench", "jwk": dict(key.public.jwk)}
        )
    answer.raise_for_status()
    return Agent(key, answer.json()["agent_token"])


def signed_requests(agent: Agent, origin: str, count: int) -> list[bytes]:
    """``count`` signed ``GET /whoami`` requests (distinct ``created``), as raw HTTP/1.1."""
    from aauth_server.http import HttpRequest
    from aauth_server.signatures.message import sign_request

    host = origin.removeprefix("http://")
    now = int(time.time())
    out = []
    for age in range(count):
        headers = [("Host", host), ("Signature-Key", f'sig=jwt;jwt="{agent.token}"')]
        request = HttpRequest("GET", origin + "/whoami", headers)
        headers += sign_request(request, agent.key, created=now - age)
        headers.append(("Accept", "*/*"))
        out.append(("".join(f"{k}: {v}\r\n" for k, v in headers)).encode("latin-1"))
    return out


def for_path(heads: Sequence[bytes], path: str) -> list[str]:
    return [
        base64.b64encode(f"GET {path} HTTP/1.1\r\n".encode() + head + b"\r\n").decode()
        for head in heads
    ]


# -- one phase, one framework -------------------------------------------------------------------


@dataclass
class Phase:
    cpu_per_request: float
    rate: float


@dataclass
class Results:
    health: list[Phase] = field(default_factory=list)
    whoami: list[Phase] = field(default_factory=list)
    floor: list[Phase] = field(default_factory=list)


def run_phase(
    pid: int, origin: str, requests: list[str], count: int, concurrency: int, timeout: float
) -> Phase:
    host, _, port = origin.removeprefix("http://").rpartition(":")
    job = json.dumps(
        {
            "host": host,
            "port": int(port),
            "requests": requests,
            "count": count,
            "concurrency": concurrency,
            "timeout": timeout,
        }
    )
    before = server_cpu_ns(pid)
    done = subprocess.run(
        [sys.executable, __file__, "--client"],
        input=job,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout + 60,
    )
    after = server_cpu_ns(pid)
    if done.returncode != 0:
        raise SystemExit(f"load generator failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout)
    answered = sum(result["statuses"].values())
    if set(result["statuses"]) != {"200"} or answered == 0:
        raise SystemExit(f"{origin}: unexpected answers {result['statuses']}")
    return Phase((after - before) / 1e9 / answered, answered / result["seconds"])


def paired(pid: int, origin: str, heads: Sequence[bytes], triples: int) -> dict[str, list[float]]:
    """Server CPU seconds of single requests, one at a time on one connection: ``triples``
    times one request to each endpoint, in a shuffled order, the server idle between them.

    Each request's CPU is read around it alone (after a short pause, so work the server does
    after answering, such as Django's request_finished signal, counts for its request), so
    a slow spell of the machine weighs on the three requests of a triple alike."""
    import http.client
    import random

    host, _, port = origin.removeprefix("http://").rpartition(":")
    parsed = [
        [tuple(line.split(": ", 1)) for line in head.decode("latin-1").split("\r\n") if line]
        for head in heads
    ]
    kinds = ["health", "whoami", "floor"]
    order = random.Random(9421)
    cpu: dict[str, list[float]] = {kind: [] for kind in kinds}
    connection: http.client.HTTPConnection | None = None
    try:
        for index in range(triples):
            order.shuffle(kinds)
            for kind in kinds:
                if connection is None:
                    connection = http.client.HTTPConnection(host, int(port), timeout=30)
                time.sleep(SETTLE)
                before = server_cpu_ns(pid)
                connection.putrequest("GET", "/" + kind, skip_host=True, skip_accept_encoding=True)
                for name, value in parsed[index % len(parsed)]:
                    connection.putheader(name, value)
                connection.endheaders()
                answer = connection.getresponse()
                answer.read()
                time.sleep(SETTLE)
                cpu[kind].append((server_cpu_ns(pid) - before) / 1e9)
                if answer.status != 200:
                    raise SystemExit(f"{origin}/{kind}: unexpected answer {answer.status}")
                if answer.will_close:
                    connection.close()
                    connection = None
    finally:
        if connection is not None:
            connection.close()
    return cpu


def raw_verify_seconds(message_size: int, batches: int = 9, per_batch: int = 200) -> float:
    key = Ed25519PrivateKey.generate()
    message = os.urandom(message_size)
    signature = key.sign(message)
    public = key.public_key()
    times = []
    for _ in range(batches):
        # CPU time, as the server's is measured: a busy machine's preemptions count in neither.
        start = time.thread_time()
        for _ in range(per_batch):
            public.verify(signature, message)
        times.append((time.thread_time() - start) / per_batch)
    return statistics.median(times)


def signature_base_size(agent: Agent, origin: str) -> int:
    from aauth_server.http import HttpRequest
    from aauth_server.signatures.message import parse_signature, sign_request, signature_base

    headers = [("Signature-Key", f'sig=jwt;jwt="{agent.token}"')]
    request = HttpRequest("GET", origin + "/whoami", headers)
    request = HttpRequest(
        "GET", request.url, headers + sign_request(request, agent.key, created=int(time.time()))
    )
    return len(signature_base(request, parse_signature(request)))


def check_stack(name: str, pid: int, origin: str) -> str:
    import httpx

    with httpx.Client(timeout=10, trust_env=False) as client:
        server = client.get(origin + "/health").headers.get("server", "")
    if name == "flask":
        if server != "gunicorn":
            raise SystemExit(f"flask is not served by gunicorn (Server: {server!r})")
        return f"gunicorn ({len(_tree(pid)) - 1} worker)"
    modules = loaded_modules(pid)
    if modules != "httptools, uvloop":
        raise SystemExit(f"{name}: uvicorn runs without httptools/uvloop (loaded: {modules})")
    return f"{server} with {modules}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frameworks", nargs="+", choices=FRAMEWORKS, default=list(FRAMEWORKS))
    parser.add_argument("--requests", type=int, default=2000, help="requests per phase")
    parser.add_argument("--rounds", type=int, default=7, help="phases of each endpoint")
    parser.add_argument("--concurrency", type=int, default=4, help="connections")
    parser.add_argument("--timeout", type=float, default=25.0, help="seconds a phase may take")
    parser.add_argument(
        "--paired",
        type=int,
        default=600,
        help="then requests one at a time: this many triples (/health, /whoami, /floor); 0: none",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="also print each round's CPU per request"
    )
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        return client_main()

    from example_apps._procs import AppSpec, running_apps
    from example_apps.demo import PROVIDER

    # Each example app as `python -m example_apps.<name>_resource` runs it, plus /floor.
    control = "bench.control_servers"
    specs = {
        "starlette": AppSpec(
            "starlette", control, ("--framework", "starlette", "--dev", "--trust-any-ps")
        ),
        "django": AppSpec("django", control, ("--framework", "django", "--dev", "--trust-any-ps")),
        "flask": AppSpec(
            "flask",
            control,
            ("--framework", "flask", "--dev", "--trust-any-ps", "--server", "gunicorn"),
        ),
    }
    root = str(Path(__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    )
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"{args.rounds} rounds x {args.requests} requests per endpoint, "
        f"{args.concurrency} connections, medians over the rounds"
    )
    with running_apps([PROVIDER]) as (provider,):
        agent = enroll(provider.url)
        # The control's message: the size of a request's signature base (the port's digits
        # aside, which the servers' ports only learn at start).
        size = signature_base_size(agent, "http://127.0.0.1:65535")
        os.environ["FLOOR_SIZE"] = str(size)
        with running_apps([specs[name] for name in args.frameworks]) as apps:
            for app in apps:
                measure(app.name, app.process.pid, app.url, agent, size, args)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


def measure(name: str, pid: int, origin: str, agent: Agent, size: int, args: Any) -> None:
    print(f"{name:9} server: {check_stack(name, pid, origin)}")
    heads = signed_requests(agent, origin, DISTINCT_SIGNATURES)
    # Warm-up: discovery fetches the provider's metadata and JWKS once; imports settle.
    for path in ("/whoami", "/health", "/floor"):
        run_phase(pid, origin, for_path(heads, path), 50, 1, args.timeout)
    results = Results()
    raws: list[float] = []
    for round_ in range(args.rounds):
        heads = signed_requests(agent, origin, DISTINCT_SIGNATURES)
        kinds = ("health", "whoami", "floor")
        for kind in kinds if round_ % 2 == 0 else kinds[::-1]:
            phase = run_phase(
                pid, origin, for_path(heads, "/" + kind), args.requests, args.concurrency,
                args.timeout,
            )  # fmt: skip
            getattr(results, kind).append(phase)
        raws.append(raw_verify_seconds(size))
        if args.verbose:
            cpu = {kind: getattr(results, kind)[-1].cpu_per_request * 1e6 for kind in kinds}
            print(
                f"{name:9} round {round_ + 1}: "
                + "   ".join(f"/{k} {v:7.1f}" for k, v in cpu.items())
                + " us/request"
            )
    report(name, results, statistics.median(raws), size)
    if args.paired > 0:
        report_paired(name, paired(pid, origin, heads, args.paired))


def report(name: str, results: Results, raw: float, size: int) -> None:
    def med(values: Iterator[float]) -> float:
        return statistics.median(list(values))

    def per_round(kind: str) -> Iterator[float]:
        """CPU per request of ``kind`` minus CPU per ``/health`` request, round by round."""
        pairs = zip(getattr(results, kind), results.health, strict=True)
        return (p.cpu_per_request - h.cpu_per_request for p, h in pairs)

    for kind in ("health", "whoami", "floor"):
        phases: list[Phase] = getattr(results, kind)
        print(
            f"{name:9} /{kind:7}: {med(p.rate for p in phases):8.0f} requests/s   "
            f"server CPU {med(p.cpu_per_request for p in phases) * 1e6:7.1f} us/request"
        )
    overhead, floor = med(per_round("whoami")), med(per_round("floor"))
    print(
        f"{name:9} floor in the server = /floor - /health = {floor * 1e6:.1f} us "
        f"(one Ed25519 verify over {size} bytes, same server, same load)"
    )
    print(
        f"{name:9} protection overhead = /whoami - /health = {overhead * 1e6:.1f} us/request = "
        f"{overhead / floor:.2f} x the floor   (target <= {TARGETS[name]}; 1.0: the request "
        "signature's verify and nothing else)"
    )
    print(
        f"{name:9}   for reference: raw Ed25519 verify in this process (idle tight loop): "
        f"{raw * 1e6:.1f} us; overhead = {overhead / raw:.2f} of those"
    )


def report_paired(name: str, cpu: dict[str, list[float]]) -> None:
    """The same ratio from single requests: per triple, /whoami and /floor minus /health."""
    triples = list(zip(cpu["health"], cpu["whoami"], cpu["floor"], strict=True))
    overhead = statistics.median(w - h for h, w, _ in triples)
    floor = statistics.median(f - h for h, _, f in triples)
    print(
        f"{name:9}   one request at a time ({len(triples)} shuffled triples, the server idle "
        f"between requests; medians): /health {statistics.median(cpu['health']) * 1e6:.1f} us, "
        f"overhead {overhead * 1e6:.1f} us, floor {floor * 1e6:.1f} us = "
        f"{overhead / floor:.2f} x the floor"
    )


if __name__ == "__main__":
    raise SystemExit(main())
