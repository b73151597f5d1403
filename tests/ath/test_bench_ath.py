"""bench/ath.py still runs against the current code and prints the figures it claims (no
timing is asserted: a loaded CI machine's numbers mean nothing)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "ath.py"


def test_ath_benchmark_prints_both_ratios() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--iterations", "3", "--repeats", "2"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    for kind in ("http", "asgi"):
        for estimator in ("median", "min"):
            line = (
                rf"{kind} {estimator} *: protected +[\d.]+ us"
                r" +unprotected +[\d.]+ us +ratio = [\d.]+"
            )
            assert re.search(line, out), out
    assert "(target <= 1.2)" in out
    assert re.search(r"validation adds -?[\d.]+ us per call", out), out
