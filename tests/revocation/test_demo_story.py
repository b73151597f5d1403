"""``make demo``'s cascade story (issue 11 item 6) on the suite's Redis: the agent token
revoked at the PS, the resource refusing the auth token with ``revoked_jwt``."""

from __future__ import annotations

import subprocess
import sys

from tests.redis_server import ensure_redis


def test_the_cascade_story() -> None:
    url = ensure_redis()
    result = subprocess.run(
        [sys.executable, "-m", "example_apps.demo", "--store", url, "--story", "cascade"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    for step in ("data", "revoked", "auth-token-refused", "person-token-refused"):
        assert f"[cascade] PASS {step}:" in out, out
    assert "[cascade] PASS agent-token-refused:" in out
    assert "Signature-Error: error=revoked_jwt" in out
    assert "FAIL" not in out
