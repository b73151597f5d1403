"""Benchmark: a decision within a mission must not grow with the mission's log.

Measures, in one run and on this machine, ``PersonServer.handle`` of a person-token request
that names a mission (the mission grants it: the resource is one of its approved
resources), answering ``200`` with the person token.  Each such decision reads the mission
and its accepted updates, decides, appends the decision to the mission log, mints the token,
records it as issued and logs the issue: the same work whatever the log holds.

* ``mission, 10 entries``     - a mission whose log holds 10 entries (a fresh one per batch);
* ``mission, 10,000 entries`` - a mission whose log holds 10,000 entries;
* ``baseline, no mission``    - the same request naming no mission: the token work every
  request does (signature verification, binding lookup, policy, minting, the issued-token
  record) without the mission's reads and log appends.

Prints ``ratio = 10,000 / 10`` (target <= 1.2) and each mission figure against the baseline.
Requests are pre-built and pre-signed (signing is the agent's cost).  Timing: interleaved
batches; each figure is the median (and minimum) over the batches.  The records are a SQLite
file in a temporary folder (``--records URL`` for another, e.g. PostgreSQL).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# bench/ off the path (its http.py would stand in for the standard library's), the repo on it.
sys.path.remove(str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert, update

from aauth_server.http import HttpRequest
from aauth_server.missions import Mission
from aauth_server.person import DefaultPolicy
from aauth_server.records import Sql, Work, schema, transaction
from aauth_server.tokens.jwt import decode_unverified
from tests.person.ps_harness import ALICE, PsWorld
from tests.support import RESOURCE

BIG = 10_000
SMALL = 10


@transaction()
def fill_log(issuer: str, s256: str, count: int, now: float) -> Work[None]:
    """``count`` audit entries in one transaction (what ``count`` appends would leave)."""
    rows = [
        {
            "issuer": issuer,
            "s256": s256,
            "seq": seq,
            "at": now,
            "event": "audit",
            "agent": "aauth:assistant@agent.example",
            "resource": RESOURCE,
            "detail": '{"action":"WebSearch"}',
        }
        for seq in range(2, count + 1)  # seq 1 is the approval
    ]
    for start in range(0, len(rows), 1000):
        yield Sql(insert(schema.mission_log).values(rows[start : start + 1000]))
    m = schema.missions.c
    yield Sql(
        update(schema.missions).where(m.issuer == issuer, m.s256 == s256).values(log_seq=count)
    )


class Bench:
    def __init__(self, records: str) -> None:
        # The baseline is approved by the policy, the mission requests by the mission itself.
        policy = DefaultPolicy(auto_approve_agents=("aauth:assistant@agent.example",))
        self.pw = PsWorld(policy=policy, records=records, records_migrate=True)
        self.pw.bind()
        claims = decode_unverified(self.pw.world.agent_token).payload
        self.agent_iss, self.agent = str(claims["iss"]), str(claims["sub"])
        self.big = self.mission(BIG)

    def mission(self, entries: int) -> Mission:
        pw = self.pw
        pw.clock.advance(0.001)  # approved_at to the microsecond: a new mission each time
        mission = pw.ps.missions.approve(
            agent_issuer=self.agent_iss,
            agent=self.agent,
            person=ALICE,
            description="Plan a trip",
            resources=[RESOURCE],
        )
        if entries > 1:
            pw.ps.records.run(fill_log(pw.config.issuer, mission.s256, entries, pw.clock.now()))
        return mission

    def requests(self, s256: str | None, count: int) -> list[HttpRequest]:
        params: dict[str, Any] = {} if s256 is None else {"mission_s256": s256}
        return [self.pw.person_request(**params) for _ in range(count)]

    def batch(self, requests: list[HttpRequest]) -> float:
        handle = self.pw.ps.handle
        start = time.perf_counter()
        for request in requests:
            response = handle(request)
            assert response is not None and response.status == 200, response and response.body
        return (time.perf_counter() - start) / len(requests)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=40, help="decisions per batch")
    parser.add_argument("--repeats", type=int, default=15, help="batches of each kind")
    parser.add_argument("--records", help="records URL (default: a SQLite file, temporary)")
    args = parser.parse_args()
    folder = tempfile.TemporaryDirectory(prefix="aauth-bench-")
    records = args.records or f"sqlite:///{Path(folder.name) / 'records.db'}"
    bench = Bench(records)
    samples: dict[str, list[float]] = {"small": [], "big": [], "base": []}
    runs: dict[str, Callable[[], float]] = {
        "small": lambda: bench.batch(bench.requests(bench.mission(SMALL).s256, args.iterations)),
        "big": lambda: bench.batch(bench.requests(bench.big.s256, args.iterations)),
        "base": lambda: bench.batch(bench.requests(None, args.iterations)),
    }
    for run in runs.values():
        run()  # warm up caches and code paths
    gc.disable()
    try:
        for _ in range(args.repeats):
            for name, run in runs.items():
                samples[name].append(run())
    finally:
        gc.enable()
    big_log = bench.pw.ps.records.run(bench.pw.ps.rec.get_mission(bench.big.s256))
    assert big_log is not None and big_log.log_seq >= BIG

    def us(values: list[float]) -> str:
        return f"median {statistics.median(values) * 1e6:8.1f} us   min {min(values) * 1e6:8.1f} us"

    small, big, base = (statistics.median(samples[k]) for k in ("small", "big", "base"))
    print(f"records: {bench.pw.ps.records!r}; {args.repeats} batches of {args.iterations}")
    print(f"baseline, no mission          : {us(samples['base'])}")
    print(f"mission, {SMALL} entries          : {us(samples['small'])}")
    print(f"mission, {BIG:,} entries      : {us(samples['big'])}   (log now {big_log.log_seq:,})")
    print(f"mission vs baseline           : {small / base:.2f} (10), {big / base:.2f} (10,000)")
    print(f"ratio = 10,000 / 10 entries = {big / small:.3f}   (target <= 1.2)")
    bench.pw.ps.close()
    folder.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
