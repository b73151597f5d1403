"""The verifier's verified-token cache: bounded, expired tokens dropped first, a full cache
of live tokens costs a new token O(1) (no scan of every entry per insert), and threads
sharing a verifier never trip over each other's evictions."""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from dataclasses import replace

import pytest

from aauth_server.clock import FixedClock
from aauth_server.keys.jwk import PublicKey
from aauth_server.resource import ResourceGuard
from aauth_server.verifier import VerifierConfig
from tests.scans import ScanCountingOrderedDict
from tests.support import World

NOW = 1_800_000_000
SIZE = 16


def _setup() -> tuple[World, FixedClock, ResourceGuard]:
    clock = FixedClock(NOW)
    world = World(clock=clock)
    guard = ResourceGuard(world.resource_config())
    verifier = guard.verifier
    verifier.config = replace(verifier.config, token_cache_size=SIZE)
    verifier._tokens = ScanCountingOrderedDict()
    ScanCountingOrderedDict.scans = 0
    return world, clock, guard


def _fresh(world: World, lifetime: int = 3600) -> tuple[str, object]:
    token = world.provider.issue(world.agent_key.public, "assistant", lifetime=lifetime)
    return token, world.signed("GET", "/api/documents", token=token)


def test_the_cache_stays_bounded_and_keeps_the_newest_tokens() -> None:
    world, _, guard = _setup()
    tokens = []
    for _ in range(5 * SIZE):
        token, request = _fresh(world)
        guard.check(request)
        tokens.append(token)
        assert len(guard.verifier._tokens) <= SIZE
    assert list(guard.verifier._tokens) == tokens[-SIZE:]
    # The newest token is served from the cache: verify_fast answers without the full path.
    assert guard.verifier.verify_fast(world.signed("GET", "/x", token=tokens[-1])) is not None


def test_a_full_cache_of_live_tokens_is_not_scanned_on_every_insert() -> None:
    world, _, guard = _setup()
    for _ in range(SIZE):
        guard.check(_fresh(world)[1])
    inserts = 4 * SIZE
    for _ in range(inserts):
        guard.check(_fresh(world)[1])
    # One sweep per half a cache of new tokens at most (was: one per insert).
    assert ScanCountingOrderedDict.scans <= inserts // (SIZE // 2)
    assert len(guard.verifier._tokens) == SIZE


def test_expired_tokens_go_before_live_ones() -> None:
    world, clock, guard = _setup()
    live, _ = _fresh(world, lifetime=3600)
    guard.check(world.signed("GET", "/api/documents", token=live))
    for _ in range(SIZE - 1):  # the cache is full, nothing evicted yet
        guard.check(_fresh(world, lifetime=60)[1])
    assert len(guard.verifier._tokens) == SIZE
    clock.advance(120)  # every short-lived token has expired; the first one has not
    for _ in range(SIZE // 2):
        guard.check(_fresh(world, lifetime=3600)[1])
    assert live in guard.verifier._tokens
    assert len(guard.verifier._tokens) == 1 + SIZE // 2


def test_threads_sharing_a_full_cache_never_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    # A threaded server shares one verifier: one thread's sweep or eviction must not meet
    # another's insert mid-iteration (that was a RuntimeError, a 500).  The signatures are
    # not what this test is about: verifying them as valid keeps the threads in the cache.
    world, _, guard = _setup()
    guard.verifier.config = replace(guard.verifier.config, token_cache_size=2)
    guard.verifier._tokens = OrderedDict()
    guard.verifier._since_sweep = 0
    requests = [_fresh(world)[1] for _ in range(800)]
    monkeypatch.setattr(PublicKey, "verify", lambda self, signature, data: True)
    errors: list[str] = []

    def work(chunk: list[object]) -> None:
        for request in chunk:
            try:
                guard.check(request)  # type: ignore[arg-type]
            except Exception as exc:  # any failure is the finding
                errors.append(repr(exc))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows
    try:
        threads = [threading.Thread(target=work, args=(requests[i::8],)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    assert len(guard.verifier._tokens) <= 2


@pytest.mark.parametrize("size", [0, -1, True])
def test_the_cache_size_must_be_a_positive_integer(size: int) -> None:
    with pytest.raises(ValueError, match="token_cache_size must be a positive integer"):
        VerifierConfig(token_cache_size=size)
