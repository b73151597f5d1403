"""Benchmark: one auto-approved auth token at the Person Server vs the public-key work it must do.

Measures, in one run and on this machine:

* ``issue`` - ``PersonServer.handle`` of a three-party auth-token request that the
  ``DefaultPolicy`` approves at once (listed agent and scope, agent already bound to the
  person; memory store; no framework), answering ``200`` with the auth token;
* ``floor`` - the public-key operations such a request cannot do without, with
  ``cryptography`` over the same bytes: **verify the request signature** (the agent's key),
  **verify the resource token** (the resource's key), **verify the presented person token**
  (the PS's own key) and **sign the auth token** (the PS's key): 3 Ed25519 verifies and 1
  sign.  The agent token is not in the floor: an agent sends the same agent token on every
  call and the PS's verifier keeps its verification until ``exp`` (the request signature is
  verified every time), so the steady state does not verify it again.

Prints ``ratio = issue / floor`` for the minimum and the median of interleaved batches
(target from issue 9: <= 1.3), and for reference the old ratio against a floor that also
counted the agent token's verify (4 verifies + 1 sign), which the PS does not do.

Then, in further batches, where the request's time goes: ``PublicKey.verify`` and
``PrivateKey.sign`` are timed inside the requests (the bench fails unless every request
performs exactly the floor's 3 verifies and 1 sign), and the rest of each request, the
parsing, checks, policy, records and minting, is what remains.  So the headline splits into
the crypto as the request runs it (colder caches than in the floor's tight loop) against the
floor, and everything else against the floor.

Steady state, as an agent drives it: the same agent token on every call, a fresh presented
token and a fresh resource token per call (never cached).  Requests are pre-built and
pre-signed: minting them is the agent's and the resource's cost, not the PS's.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

# bench/ itself must not be on the path: bench/http.py would stand in for the standard
# library's http package.  The repository root goes there instead.
sys.path.remove(str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from aauth_server.http import HttpRequest
from aauth_server.keys.jwk import PrivateKey, PublicKey, b64url_decode
from aauth_server.person import DefaultPolicy
from aauth_server.signatures.message import parse_signature, signature_base
from aauth_server.tokens.jwt import decode_unverified
from tests.person.ps_harness import PsWorld


def per_call(fn: Callable[[], object], iterations: int) -> float:
    """Seconds per call over one batch of ``iterations`` calls."""
    start = time.perf_counter()
    for _ in range(iterations):
        fn()
    return (time.perf_counter() - start) / iterations


def build_requests(pw: PsWorld, count: int) -> list[HttpRequest]:
    requests = []
    for _ in range(count):
        presented = pw.person_token()
        requests.append(pw.auth_request(pw.resource_token(presented), presented))
    return requests


def crypto_split(
    handle: Callable[[HttpRequest], object], requests: list[HttpRequest]
) -> tuple[float, float]:
    """Seconds per request: ``(total, in verify and sign)`` over ``requests``.

    Wraps ``PublicKey.verify`` and ``PrivateKey.sign`` (the only crypto the PS's path calls)
    with a clock for the batch; exits when a request does not do 3 verifies and 1 sign, the
    operations the floor counts."""
    verify, sign = PublicKey.verify, PrivateKey.sign
    clock = time.perf_counter_ns
    spent = [0, 0, 0]  # nanoseconds in crypto, verifies, signs

    def timed_verify(self: PublicKey, signature: bytes, data: bytes) -> bool:
        start = clock()
        try:
            return verify(self, signature, data)
        finally:
            spent[0] += clock() - start
            spent[1] += 1

    def timed_sign(self: PrivateKey, data: bytes) -> bytes:
        start = clock()
        try:
            return sign(self, data)
        finally:
            spent[0] += clock() - start
            spent[2] += 1

    PublicKey.verify = timed_verify  # type: ignore[method-assign]
    PrivateKey.sign = timed_sign  # type: ignore[method-assign]
    try:
        start = clock()
        for request in requests:
            handle(request)
        total = clock() - start
    finally:
        PublicKey.verify = verify  # type: ignore[method-assign]
        PrivateKey.sign = sign  # type: ignore[method-assign]
    if spent[1:] != [3 * len(requests), len(requests)]:
        raise SystemExit(
            f"the PS did {spent[1]} verifies and {spent[2]} signs for {len(requests)} "
            "requests: the floor counts 3 verifies and 1 sign per request"
        )
    return total / len(requests) / 1e9, spent[0] / len(requests) / 1e9


def raw(key: PublicKey) -> Ed25519PublicKey:
    """The bare ``cryptography`` key, so the floor carries none of our wrapper's cost."""
    return Ed25519PublicKey.from_public_bytes(b64url_decode(key.jwk["x"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=20, help="calls per batch")
    # 150 batches span ~4 s: the minimum and the median over that many ride out this VM's
    # slow spells of a second or two, in which Python slows more than the crypto.
    parser.add_argument("--repeats", type=int, default=150, help="batches of each kind")
    args = parser.parse_args()

    # Every world's agent has the same id, so a first world names it for the policy.
    agent = PsWorld().world.agent_id
    pw = PsWorld(
        policy=DefaultPolicy(auto_approve_agents=(agent,), auto_approve_scopes=("data.read",))
    )
    pw.bind()

    # Warm-up: discovery fetches the resource's JWKS once; the agent token enters the cache.
    warm = pw.ps.handle(build_requests(pw, 1)[0])
    assert warm is not None and warm.status == 200, warm
    auth_token = json.loads(warm.body)["auth_token"]

    total = args.iterations * args.repeats
    issue_iter: Iterator[HttpRequest] = iter(build_requests(pw, total))
    split_batches = max(1, args.repeats // 5)
    split_requests = build_requests(pw, args.iterations * split_batches)
    sample = build_requests(pw, 1)[0]

    # The floor's inputs: this request's bytes and the keys that verify them.
    body = json.loads(sample.body)
    base = signature_base(sample, parse_signature(sample))
    request_sig = parse_signature(sample).signature
    agent_token = decode_unverified(pw.world.agent_token)
    resource_token = decode_unverified(body["resource_token"])
    presented_token = decode_unverified(body["presented_token"])
    agent_key = raw(pw.world.agent_key.public)
    provider_key = raw(pw.world.provider.key.public)
    resource_key = raw(pw.world.resource_key.public)
    ps_key = raw(pw.world.ps_key.public)
    mint_input = decode_unverified(auth_token).signing_input
    raw_signer = Ed25519PrivateKey.generate()
    gc.collect()
    gc.freeze()

    def issue() -> None:
        response = pw.ps.handle(next(issue_iter))
        if response is None or response.status != 200:
            raise SystemExit(f"the PS did not issue: {response}")

    def floor() -> None:
        agent_key.verify(request_sig, base)  # the request signature
        resource_key.verify(resource_token.signature, resource_token.signing_input)
        ps_key.verify(presented_token.signature, presented_token.signing_input)
        raw_signer.sign(mint_input)  # the auth token

    def old_floor() -> None:
        floor()
        provider_key.verify(agent_token.signature, agent_token.signing_input)

    kinds = {"floor": floor, "issue": issue, "old": old_floor}
    times: dict[str, list[float]] = {name: [] for name in kinds}
    for _ in range(args.repeats):
        for name, fn in kinds.items():
            times[name].append(per_call(fn, args.iterations))

    print(f"{args.repeats} interleaved batches x {args.iterations} calls; min and median per call")
    print(
        "floor = verify the request signature + verify the resource token + verify the "
        "presented token + sign the auth token (3 Ed25519 verifies + 1 sign)"
    )
    for label, pick in (("min", min), ("median", statistics.median)):
        t = {name: pick(values) for name, values in times.items()}
        print(f"-- {label}")
        print(f"  floor: 3 Ed25519 verifies + 1 sign : {t['floor'] * 1e6:8.1f} us")
        print(f"  PS auth token, auto-approved       : {t['issue'] * 1e6:8.1f} us")
        print(f"  {label} ratio = issue / floor = {t['issue'] / t['floor']:.3f}   (target <= 1.3)")
        print(
            f"  for reference: against 4 verifies + 1 sign (also the agent token's, which the "
            f"PS does not do) = {t['issue'] / t['old']:.3f}"
        )

    # Where a request's time goes, in batches of their own (the clocks around each crypto
    # call would otherwise weigh on the headline), interleaved with the floor.
    splits: list[tuple[float, float]] = []
    split_floors: list[float] = []
    for batch in range(split_batches):
        chunk = split_requests[batch * args.iterations : (batch + 1) * args.iterations]
        splits.append(crypto_split(pw.ps.handle, chunk))
        split_floors.append(per_call(floor, args.iterations))
    request = statistics.median(whole for whole, _ in splits)
    crypto = statistics.median(spent for _, spent in splits)
    split_floor = statistics.median(split_floors)
    print(f"-- where the request's time goes (medians of {split_batches} batches)")
    print(f"  the request                       : {request * 1e6:8.1f} us")
    print(
        f"  in its 3 verifies + 1 sign        : {crypto * 1e6:8.1f} us"
        f" = {crypto / split_floor:.3f} x the floor ({split_floor * 1e6:.1f} us)"
    )
    print(
        f"  everything else                   : {(request - crypto) * 1e6:8.1f} us"
        f" = {(request - crypto) / split_floor:.3f} x the floor"
        " (parse, check, policy, records, mint)"
    )
    print(
        "steady state: same agent token every call (its verification cached: the PS skips "
        "it), fresh resource and presented tokens per call"
    )
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
