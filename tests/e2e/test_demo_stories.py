"""``make demo``'s stories beyond the foundation (issue 9 item 7): the resource's own deferred
delivery and the Flask- and Django-mounted Person Servers, on a real Redis (the suite's
own, never 6379) whose keys the demo removes afterwards; labels say who answers what."""

from __future__ import annotations

import subprocess
import sys

import redis

from example_apps.demo import StoreChoice, choose_store
from tests.redis_server import ensure_redis

STORIES = ("--story", "deferred", "--story", "ps-mounts")


def _commands(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.info("stats")["total_commands_processed"])
    finally:
        client.close()


def test_deferred_and_ps_mounts_on_redis() -> None:
    url = ensure_redis()
    before = _commands(url)
    result = subprocess.run(
        [sys.executable, "-m", "example_apps.demo", "--store", url, *STORIES],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert out.startswith(f"Store: Redis at {url}: ")
    for step in ("deferred-held", "deferred-auth-token", "deferred-delivered"):
        assert f"[deferred] PASS {step}:" in out, out
    for framework in ("flask", "django"):
        for step in ("202", "token"):
            assert f"[ps-mounts] PASS {framework}-ps-{step}:" in out, out
    assert "FAIL" not in out
    # The labels tell the PS's 202 from the resource holding the call.
    assert "the resource holds the call: 202 and its own pending URL (deferred=True)" in out
    assert "the PS answers 202 to the auth_token request: the person must approve" in out
    assert "the resource runs the held call now and answers with its result" in out
    # The servers kept their state in this Redis, and the demo removed every key it made.
    prefix = out.split("keys under ", 1)[1].split("-*", 1)[0]
    assert _commands(url) - before > 100
    client = redis.Redis.from_url(url)
    try:
        assert list(client.scan_iter(match=prefix + "-*")) == []
    finally:
        client.close()


def test_the_store_choice_says_which() -> None:
    assert choose_store("memory://") == StoreChoice("memory://")
    chosen = choose_store(ensure_redis())
    assert chosen.prefix is not None and chosen.prefix.startswith("aauth-demo-")
    assert chosen.args("ps") == ("--store", chosen.uri, "--store-prefix", chosen.prefix + "-ps")
    assert "memory" in StoreChoice("memory://").label
