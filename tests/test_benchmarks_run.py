"""Smoke tests: each benchmark runs to completion with tiny parameters and prints its figure
lines.  No timing is asserted (the figures of a loaded CI machine mean nothing); what must
hold is that the benchmarks still run against the current code and report what they claim."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.redis_server import ensure_redis

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _run(script: str, *args: str, timeout: float = 120) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_token_endpoint_benchmark_prints_its_ratio() -> None:
    out = _run("token_endpoint.py", "--iterations", "2", "--repeats", "2")
    # The floor names each operation it counts: 3 verifies and the sign, not the agent token.
    assert "floor = verify the request signature + verify the resource token + verify the " in out
    for estimator in ("min", "median"):
        assert re.search(
            rf"{estimator} ratio = issue / floor = [\d.]+ {{3}}\(target <= 1\.3\)", out
        )
    assert len(re.findall(r"floor: 3 Ed25519 verifies \+ 1 sign :\s+[\d.]+ us", out)) == 2, out
    assert len(re.findall(r"PS auth token, auto-approved\s+:\s+[\d.]+ us", out)) == 2, out
    # The split counts the crypto the requests really did (the bench exits unless it is the
    # floor's 3 verifies and 1 sign per request) and names the rest.
    assert re.search(r"in its 3 verifies \+ 1 sign\s+:\s+[\d.]+ us = [\d.]+ x the floor", out), out
    assert re.search(r"everything else\s+:\s+[\d.]+ us = [\d.]+ x the floor \(parse", out), out


def test_verify_benchmark_prints_min_and_median_ratios() -> None:
    out = _run("verify.py", "--iterations", "2", "--repeats", "3")
    for estimator in ("min", "median"):
        assert re.search(
            rf"{estimator} cold_ratio = cold / \(token verify \+ request verify\) = [\d.]+ "
            r"+\(target <= 1\.3 on the median\)",
            out,
        ), out
        assert re.search(rf"{estimator} warm_ratio = warm / request verify = [\d.]+", out), out
    assert len(re.findall(r"verify the agent token \(Ed25519, \d+ bytes\): +[\d.]+ us", out)) == 2


def test_http_benchmark_serves_every_framework_and_prints_its_ratios() -> None:
    out = _run(
        "http.py", "--requests", "40", "--rounds", "1", "--verbose", "--paired", "5", timeout=300
    )
    assert "starlette server: uvicorn with httptools, uvloop" in out, out
    assert "django    server: uvicorn with httptools, uvloop" in out, out
    assert "flask     server: gunicorn (1 worker)" in out, out
    for name, target in (("starlette", "1.3"), ("django", "1.3"), ("flask", "1.5")):
        for path in ("health", "whoami", "floor"):
            assert re.search(
                rf"{name} +/{path} +: +\d+ requests/s +server CPU +[\d.]+ us/request", out
            ), out
        assert re.search(
            rf"{name} +round 1: /health +[\d.]+ +/whoami +[\d.]+ +/floor +[\d.]+ us/request", out
        ), out
        # The floor is measured in the server: the control endpoint minus /health.
        assert re.search(
            rf"{name} +floor in the server = /floor - /health = -?[\d.]+ us \(one Ed25519 "
            r"verify over \d+ bytes, same server, same load\)",
            out,
        ), out
        assert re.search(
            rf"{name} +protection overhead = /whoami - /health = -?[\d.]+ us/request = "
            rf"-?[\d.]+ x the floor +\(target <= {re.escape(target)};",
            out,
        ), out
        # The same ratio from requests one at a time, 5 shuffled triples.
        assert re.search(
            rf"{name} +one request at a time \(5 shuffled triples, the server idle between "
            r"requests; medians\): /health [\d.]+ us, overhead -?[\d.]+ us, floor -?[\d.]+ us = "
            r"-?[\d.]+ x the floor",
            out,
        ), out
        assert re.search(
            rf"{name} +for reference: raw Ed25519 verify in this process \(idle tight loop\): "
            r"[\d.]+ us; overhead = -?[\d.]+ of those",
            out,
        ), out


def test_http_control_server_adds_only_the_floor_endpoint() -> None:
    # The control runs the example app itself: /floor answers as /health does, and the
    # protected endpoint still refuses an unsigned request.
    from example_apps._procs import AppSpec, running_apps

    spec = AppSpec(
        "starlette",
        "bench.control_servers",
        ("--framework", "starlette", "--dev", "--trust-any-ps"),
    )
    with running_apps([spec]) as (app,):
        import httpx

        with httpx.Client(base_url=app.url, trust_env=False, timeout=10) as client:
            health, floor = client.get("/health"), client.get("/floor")
            assert floor.status_code == health.status_code == 200
            assert floor.json() == health.json() == {"status": "ok"}
            assert client.get("/whoami").status_code == 401


def test_mission_decision_benchmark_prints_its_ratio() -> None:
    out = _run("mission_decision.py", "--iterations", "2", "--repeats", "2")
    assert re.search(r"baseline, no mission\s+:\s+median\s+[\d.]+ us", out), out
    assert re.search(r"mission, 10,000 entries\s+:\s+median\s+[\d.]+ us", out), out
    assert re.search(r"ratio = 10,000 / 10 entries = [\d.]+ {3}\(target <= 1\.2\)", out), out


def test_long_poll_benchmark_answers_every_poll_and_prints_its_figures() -> None:
    out = _run(
        "long_poll.py", "--waiters", "20", "--rate", "0", "--redis", ensure_redis(), timeout=180
    )
    for waiters in (2, 20):
        line = re.search(
            rf"waiters={waiters} +parked (\d+)/{waiters} .*final answers \{{(.*)\}}", out
        )
        assert line is not None, out
        assert line.group(1) == str(waiters)
        assert line.group(2) == f"200: {waiters}", out
    connections = re.findall(r"while \d+ polls wait: (\d+) \((\d+) pub/sub\)", out)
    assert len(connections) == 2, out
    # One shared subscription per worker, never one per waiter.
    assert all(int(total) >= 1 and sub == "1" for total, sub in connections), out
    assert len(re.findall(r"p50 = [\d.]+ ms +p99 = [\d.]+ ms", out)) == 2, out
    assert "targets: p99 <= 100 ms" in out
