"""The standing hostile-input suite: thousands of seeded hostile requests against the example
resources and Person Servers of every framework, as real processes on 127.0.0.1.

No answer may be a 5xx, none may take past its deadline, every AAuth error is
problem+json with an ``error`` the digest (or the README) names, and no server's resident
memory grows by more than 100 MB over the run.  ``--hostile-long`` sends ten times as many.
``HOSTILE_SEED`` replays another seed.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.hostile_http import keyservers
from tests.hostile_http.cases import Case, World, check, generate
from tests.hostile_http.keyservers import KeyServer
from tests.hostile_http.rawhttp import NoAnswer, RawResponse, exchange
from tests.hostile_http.servers import Fleet

MISSION_PREFIXES = ("/mission", "/permission", "/audit")
SEED = int(os.environ.get("HOSTILE_SEED", "20261202"))
COUNT = 3000
MAX_RSS_GROWTH = 100 * 2**20


@pytest.fixture(scope="module")
def key_servers() -> Iterator[dict[str, KeyServer]]:
    """Hostile issuers the generated tokens name (each answers at once: the slow ones have
    tests of their own)."""
    other = KeyServer("cross-origin-target", keyservers.not_json())
    servers = {
        "gzip-gzip-bomb": KeyServer("gzip-gzip-bomb", keyservers.gzip_gzip_bomb()),
        "gzip-bomb": KeyServer("gzip-bomb", keyservers.gzip_bomb()),
        "metadata-bomb": KeyServer("metadata-bomb", keyservers.metadata_bomb()),
        "deep-metadata": KeyServer("deep-metadata", keyservers.deep_metadata()),
        "deep-jwks": KeyServer("deep-jwks", keyservers.deep_jwks()),
        "absurd-cache": KeyServer("absurd-cache", keyservers.absurd_cache_headers()),
        "absurd-expires": KeyServer("absurd-expires", keyservers.absurd_expires_everywhere()),
        "redirect": KeyServer("redirect", keyservers.redirecting()),
        "cross-origin": KeyServer("cross-origin", keyservers.cross_origin(other)),
        "not-json": KeyServer("not-json", keyservers.not_json()),
        "oversized": KeyServer("oversized", keyservers.oversized()),
        "reset": KeyServer("reset", keyservers.reset()),
        "unknown-coding": KeyServer("unknown-coding", keyservers.unknown_coding()),
        "untrusted-ps": KeyServer("untrusted-ps", keyservers.not_json()),
    }
    try:
        yield servers
    finally:
        for server in [*servers.values(), other]:
            server.stop()


def _send(case: Case) -> RawResponse | str:
    try:
        return exchange(case.server.port, case.request, deadline=case.deadline)
    except (NoAnswer, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"


def test_hostile_requests(
    hostile_fleet: Fleet, key_servers: dict[str, KeyServer], request: pytest.FixtureRequest
) -> None:
    count = COUNT * (10 if request.config.getoption("--hostile-long") else 1)
    world = World(hostile_fleet, key_servers, random.Random(SEED))
    cases = generate(world, count)
    assert len(cases) >= 3000
    before = {server.name: server.rss() for server in hostile_fleet.all}
    failures: list[str] = []
    seen: Counter[tuple[str, int]] = Counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        for case, outcome in zip(cases, pool.map(_send, cases), strict=True):
            if isinstance(outcome, str):
                failures.append(
                    f"{case.family} {case.server.name} {case.request.target[:60]}: {outcome}"
                )
                continue
            seen[(case.family, outcome.status)] += 1
            try:
                check(case, outcome)
            except AssertionError as exc:
                failures.append(str(exc))
    dead = [server.name for server in hostile_fleet.all if not server.alive()]
    assert not dead, f"servers died: {dead}"
    assert not failures, f"seed {SEED}: {len(failures)} of {len(cases)} failed:\n" + "\n".join(
        failures[:25]
    )
    grown = {
        server.name: (server.rss() - before[server.name]) // 2**20
        for server in hostile_fleet.all
        if server.rss() - before[server.name] > MAX_RSS_GROWTH
    }
    assert not grown, f"resident memory grew by more than 100 MB (MB): {grown}"
    # The families really reached the code they aim at.
    assert seen[("valid", 200)] > 0
    assert seen[("deep-json", 400)] > 0 and seen[("deep-json-revocation", 400)] > 0
    assert seen[("big-body", 413)] > 0 and seen[("odd-host", 400)] > 0
    # The mission surface: refused bodies (400) and unknown missions (404) both reached.
    assert seen[("mission-hostile", 400)] > 0 and seen[("mission-hostile", 404)] > 0
    mission_routes = [c for c in cases if c.request.target.startswith(MISSION_PREFIXES)]
    assert len({c.family for c in mission_routes}) >= 8, "mission routes in most families"
