"""The verifier's parsed-key cache: bounded by token_cache_size, the oldest key evicted first,
and a new key into a full cache costs O(1) (evicting never iterates the cache, which for a
plain dict scans the holes earlier evictions left: O(cache size) per new key)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from unittest import mock

from aauth_server.clock import FixedClock
from aauth_server.keys.jwk import PrivateKey, PublicKey
from aauth_server.resource import ResourceGuard
from aauth_server.verifier import _KEY_MEMBERS
from tests.scans import ScanCountingOrderedDict
from tests.support import World

NOW = 1_800_000_000
SIZE = 8


def _setup(counting: bool = True) -> tuple[World, ResourceGuard]:
    world = World(clock=FixedClock(NOW))
    guard = ResourceGuard(world.resource_config())
    verifier = guard.verifier
    verifier.config = replace(verifier.config, token_cache_size=SIZE)
    if counting:
        verifier._keys = ScanCountingOrderedDict()
        ScanCountingOrderedDict.scans = 0
    return world, guard


def _check_with_new_key(world: World, guard: ResourceGuard) -> PrivateKey:
    """A request from an agent key the verifier has not seen, with its own agent token."""
    key = PrivateKey.generate("Ed25519")
    token = world.provider.issue(key.public, "assistant")
    guard.check(world.signed("GET", "/api/documents", token=token, key=key))
    return key


def _slot(key: PrivateKey) -> tuple[object, ...]:
    return tuple(map(key.public.jwk.get, _KEY_MEMBERS))


def test_the_key_cache_stays_bounded_and_keeps_the_newest_keys() -> None:
    world, guard = _setup(counting=False)
    # Ordered, so the oldest key goes in O(1) (popitem), not by iterating a plain dict.
    assert isinstance(guard.verifier._keys, OrderedDict)
    keys = []
    for _ in range(4 * SIZE):
        keys.append(_check_with_new_key(world, guard))
        assert len(guard.verifier._keys) <= SIZE
    assert list(guard.verifier._keys) == [_slot(k) for k in keys[-SIZE:]]


def test_a_full_key_cache_evicts_without_iterating_it() -> None:
    world, guard = _setup()
    for _ in range(SIZE):
        _check_with_new_key(world, guard)
    ScanCountingOrderedDict.scans = 0
    for _ in range(3 * SIZE):
        _check_with_new_key(world, guard)
    # Each of these new keys evicted one (was: next(iter(cache)) per eviction).
    assert ScanCountingOrderedDict.scans == 0
    assert len(guard.verifier._keys) == SIZE


def test_a_cached_key_is_not_parsed_again() -> None:
    world, guard = _setup()
    key = PrivateKey.generate("Ed25519")
    parses = []
    for _ in range(3):
        token = world.provider.issue(key.public, "assistant")  # a new token, the same key
        with mock.patch.object(PublicKey, "from_jwk", wraps=PublicKey.from_jwk) as parse:
            guard.check(world.signed("GET", "/api/documents", token=token, key=key))
        parses.append(sum(c.args[0] == dict(key.public.jwk) for c in parse.call_args_list))
    assert parses == [1, 0, 0]
    assert _slot(key) in guard.verifier._keys
