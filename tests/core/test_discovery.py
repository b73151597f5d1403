from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from aauth_server.clock import FixedClock
from aauth_server.errors import SignatureFailure
from aauth_server.identifiers import is_server_identifier
from aauth_server.keys.discovery import KeyDiscovery
from aauth_server.keys.fetcher import (
    AsyncStaticFetcher,
    FetchError,
    FetchResponse,
    StaticFetcher,
)
from aauth_server.keys.jwk import PrivateKey, PublicKey
from tests.vectors import vectors_dir

DERIVED = json.loads((vectors_dir() / "aauth-derived.json").read_text())
SERVER_IDS = json.loads((vectors_dir() / "aauth-go/server-identifier.json").read_text())
T0 = 1_730_217_600.0
AP = "https://agent.example"
AP_META = f"{AP}/.well-known/aauth-agent.json"
AP_JWKS = f"{AP}/.well-known/jwks.json"


def vector_documents() -> dict[str, object]:
    return {**DERIVED["metadata_documents"], **DERIVED["jwks_documents"]}


def setup(
    documents: dict[str, object] | None = None, **options: Any
) -> tuple[KeyDiscovery, StaticFetcher, FixedClock]:
    clock = FixedClock(T0)
    fetcher = StaticFetcher(vector_documents() if documents is None else documents)
    return KeyDiscovery(fetcher, clock=clock, **options), fetcher, clock


def failure(call: Callable[[], object]) -> SignatureFailure:
    with pytest.raises(SignatureFailure) as info:
        call()
    return info.value


def with_headers(doc: object, **headers: str) -> FetchResponse:
    names = {k.replace("_", "-").lower(): v for k, v in headers.items()}
    return FetchResponse(200, names, json.dumps(doc).encode())


@pytest.mark.parametrize("role", ["ap", "ps", "resource"])
def test_vector_keys_resolve_through_metadata(role: str) -> None:
    entry = DERIVED["keys"][role]
    dwk = entry["metadata_url"].rsplit("/", 1)[1]
    discovery, fetcher, _ = setup()
    key = discovery.key(entry["issuer"], dwk, entry["kid"])
    assert key == PublicKey.from_jwk(entry["jwk_public"])
    assert fetcher.calls == [entry["metadata_url"], entry["jwks_uri"]]
    assert discovery.metadata(entry["issuer"], dwk)["jwks_uri"] == entry["jwks_uri"]
    # The hot path answers the very same object without touching the fetcher.
    assert discovery.key(entry["issuer"], dwk, entry["kid"]) is key
    assert len(fetcher.calls) == 2


def test_issuer_missing_and_mismatch() -> None:
    docs = vector_documents()
    docs[AP_META] = {"jwks_uri": AP_JWKS}
    discovery, _, _ = setup(docs)
    assert failure(lambda: discovery.key(AP, "aauth-agent.json", "ap-key-1")).error == (
        "issuer_missing"
    )
    for wrong in ("https://agent.example/", "https://evil.example", "https://Agent.example", 5):
        docs[AP_META] = {"issuer": wrong, "jwks_uri": AP_JWKS}
        discovery, _, _ = setup(docs)
        assert failure(lambda: discovery.metadata(AP, "aauth-agent.json")).error == (
            "issuer_mismatch"
        )


def test_issuer_must_be_a_server_identifier() -> None:
    discovery, fetcher, _ = setup()
    for bad in SERVER_IDS["cases"] + [
        {"input": i, "valid": False} for i in DERIVED["rule_cases"]["server_identifiers"]["invalid"]
    ]:
        if bad["valid"]:
            continue
        caught = failure(partial(discovery.key, bad["input"], "aauth-agent.json", "k"))
        assert caught.error == "invalid_key"
        assert "server identifier" in caught.detail
    assert fetcher.calls == []
    for good in DERIVED["rule_cases"]["server_identifiers"]["valid"]:
        assert is_server_identifier(good)
    for case in SERVER_IDS["cases"]:
        assert is_server_identifier(case["input"]) is case["valid"], case


def test_dev_loopback_identifiers() -> None:
    for value in ("http://127.0.0.1:8000", "http://localhost:65535"):
        assert not is_server_identifier(value)
        assert is_server_identifier(value, dev_loopback=True)
    for value in (
        "http://127.0.0.1",
        "http://localhost:0",
        "http://localhost:65536",
        "http://10.0.0.1:80",
        "http://example.com:80",
        "http://127.0.0.1:80/",
        "https://127.0.0.1:8443",
    ):
        assert not is_server_identifier(value, dev_loopback=True), value
    issuer = "http://127.0.0.1:8000"
    key = PrivateKey.generate(kid="k1")
    docs: dict[str, object] = {
        f"{issuer}/.well-known/aauth-agent.json": {"issuer": issuer, "jwks_uri": f"{issuer}/j"},
        f"{issuer}/j": {"keys": [key.public_jwk()]},
    }
    discovery, _, _ = setup(docs, dev_loopback=True)
    assert discovery.key(issuer, "aauth-agent.json", "k1") == key.public
    strict, _, _ = setup(docs)
    assert failure(lambda: strict.key(issuer, "aauth-agent.json", "k1")).error == "invalid_key"


@pytest.mark.parametrize("dwk", ["../jwks.json", "a/b", "", ".hidden", "x?y=1", "a b"])
def test_dwk_must_be_one_plain_segment(dwk: str) -> None:
    discovery, fetcher, _ = setup()
    assert failure(lambda: discovery.metadata(AP, dwk)).error == "invalid_key"
    assert fetcher.calls == []


@pytest.mark.parametrize("jwks_uri", [None, 7, "http://agent.example/jwks", "/jwks", "ftp://x/y"])
def test_jwks_uri_must_be_an_https_string(jwks_uri: object) -> None:
    docs = vector_documents()
    docs[AP_META] = {"issuer": AP} if jwks_uri is None else {"issuer": AP, "jwks_uri": jwks_uri}
    discovery, _, _ = setup(docs)
    caught = failure(lambda: discovery.key(AP, "aauth-agent.json", "ap-key-1"))
    assert caught.error == "invalid_key" and "jwks_uri" in caught.detail
    assert discovery.metadata(AP, "aauth-agent.json")["issuer"] == AP


@pytest.mark.parametrize(
    ("answer", "cause"),
    [
        (FetchResponse(500, {}, b"{}"), "HTTP status 500"),
        (FetchResponse(404, {}, b"{}"), "HTTP status 404"),
        (FetchResponse(200, {}, b"not json"), "not JSON"),
        (FetchResponse(200, {}, b"\xff\xfe"), "not JSON"),
        (FetchResponse(200, {}, b"[1, 2]"), "not a JSON object"),
        (FetchError("redirect"), "redirect"),
        (FetchError("egress refused: private address"), "egress refused"),
    ],
)
def test_fetch_failures_are_invalid_key(answer: object, cause: str) -> None:
    docs = vector_documents()
    docs[AP_JWKS] = answer
    discovery, _, _ = setup(docs)
    caught = failure(lambda: discovery.key(AP, "aauth-agent.json", "ap-key-1"))
    assert caught.error == "invalid_key"
    assert cause in caught.detail and AP_JWKS in caught.detail


def test_malformed_jwks_is_invalid_key() -> None:
    malformed: list[dict[str, object]] = [{"keys": "nope"}, {"not_keys": []}]
    for doc in malformed:
        docs = vector_documents()
        docs[AP_JWKS] = doc
        discovery, _, _ = setup(docs)
        caught = failure(lambda: discovery.key(AP, "aauth-agent.json", "ap-key-1"))
        assert caught.error == "invalid_key" and "JWKS" in caught.detail


def test_jwks_selection_ignores_unusable_members() -> None:
    wanted = PrivateKey.generate("ES256", kid="good")
    docs = vector_documents()
    docs[AP_JWKS] = {
        "keys": [
            "junk",
            {"kty": "AKP", "alg": "ML-DSA-65", "kid": "pq", "pub": "AAAA"},
            {"kty": "OKP", "kid": 5},
            {"kty": "RSA", "kid": "rsa"},
            wanted.public_jwk(),
            {"kty": "OKP", "crv": "Ed25519", "x": "bad", "kid": "broken", "alg": "Ed25519"},
            {**PrivateKey.generate().public_jwk(), "kid": "twice"},
            {**PrivateKey.generate().public_jwk(), "kid": "twice"},
            {**PrivateKey.generate().public_jwk(), "kid": "eddsa", "alg": "EdDSA"},
        ]
    }
    discovery, _, _ = setup(docs)
    assert discovery.key(AP, "aauth-agent.json", "good") == wanted.public
    errors = {
        kid: failure(partial(discovery.key, AP, "aauth-agent.json", kid)).error
        for kid in ("pq", "rsa", "broken", "twice", "eddsa", "absent")
    }
    assert errors == {
        "pq": "unsupported_algorithm",
        "rsa": "invalid_key",
        "broken": "invalid_key",
        "twice": "invalid_key",
        "eddsa": "unsupported_algorithm",
        "absent": "unknown_key",
    }
    lenient, _, _ = setup(docs, allow_eddsa=True)
    assert lenient.key(AP, "aauth-agent.json", "eddsa").alg == "Ed25519"


def test_unknown_kid_refreshes_once_per_interval() -> None:
    discovery, fetcher, clock = setup()
    discovery.key(AP, "aauth-agent.json", "ap-key-1")
    assert len(fetcher.calls) == 2
    # Fetched moments ago: no refresh, straight to unknown_key.
    assert failure(lambda: discovery.key(AP, "aauth-agent.json", "new")).error == "unknown_key"
    assert len(fetcher.calls) == 2
    clock.advance(61)
    assert failure(lambda: discovery.key(AP, "aauth-agent.json", "new")).error == "unknown_key"
    assert fetcher.calls[2:] == [AP_JWKS]
    for _ in range(5):
        assert failure(lambda: discovery.key(AP, "aauth-agent.json", "x")).error == "unknown_key"
    assert len(fetcher.calls) == 3
    # A rotated-in key is picked up by the next allowed refresh.
    rotated = PrivateKey.generate(kid="new")
    fetcher.documents[AP_JWKS] = {"keys": [rotated.public_jwk()]}
    clock.advance(61)
    assert discovery.key(AP, "aauth-agent.json", "new") == rotated.public
    assert fetcher.calls[3:] == [AP_JWKS]


def test_at_most_one_fetch_per_minute_even_when_uncacheable() -> None:
    docs = vector_documents()
    docs[AP_JWKS] = with_headers(docs[AP_JWKS], cache_control="no-store")
    discovery, fetcher, clock = setup(docs)
    key = discovery.key(AP, "aauth-agent.json", "ap-key-1")
    for _ in range(10):
        clock.advance(5)
        assert discovery.key(AP, "aauth-agent.json", "ap-key-1") == key
    assert fetcher.calls.count(AP_JWKS) == 1
    clock.advance(11)  # 61 s after the fetch
    discovery.key(AP, "aauth-agent.json", "ap-key-1")
    assert fetcher.calls.count(AP_JWKS) == 2


@pytest.mark.parametrize(
    ("headers", "lifetime"),
    [
        ({"cache_control": "public, max-age=600"}, 600),
        ({"cache_control": 'max-age="120"'}, 120),
        ({"cache_control": "max-age=99999999"}, 86400),  # capped at 24 h
        ({"cache_control": "max-age=abc"}, 60),  # unusable: stale at once, min_interval rules
        ({}, 3600),
        ({"expires": "Tue, 29 Oct 2024 16:30:00 GMT"}, 1800),
        (
            {"date": "Tue, 29 Oct 2024 15:00:00 GMT", "expires": "Tue, 29 Oct 2024 15:10:00 GMT"},
            600,
        ),
        ({"expires": "0"}, 60),
        ({"cache_control": "max-age=300", "expires": "Tue, 29 Oct 2024 18:00:00 GMT"}, 300),
    ],
)
def test_cache_lifetime(headers: dict[str, str], lifetime: int) -> None:
    docs = vector_documents()
    docs[AP_JWKS] = with_headers(docs[AP_JWKS], **headers)
    docs[AP_META] = with_headers(docs[AP_META], cache_control="max-age=99999999")
    discovery, fetcher, clock = setup(docs)
    discovery.key(AP, "aauth-agent.json", "ap-key-1")
    clock.advance(lifetime - 1)
    discovery.key(AP, "aauth-agent.json", "ap-key-1")
    assert fetcher.calls.count(AP_JWKS) == 1
    clock.advance(2)
    discovery.key(AP, "aauth-agent.json", "ap-key-1")
    assert fetcher.calls.count(AP_JWKS) == 2


def test_backoff_without_cached_copy() -> None:
    docs = vector_documents()
    docs[AP_JWKS] = FetchError("timeout")
    discovery, fetcher, clock = setup(docs, min_interval=0, backoff_base=1, backoff_max=4)

    def attempt() -> str:
        return failure(lambda: discovery.key(AP, "aauth-agent.json", "ap-key-1")).detail

    expected_waits = [1, 2, 4, 4]
    for wait in expected_waits:
        before = fetcher.calls.count(AP_JWKS)
        assert "timeout" in attempt()
        assert fetcher.calls.count(AP_JWKS) == before + 1
        clock.advance(wait - 0.01)
        assert "backoff" in attempt()  # answered without fetching
        assert fetcher.calls.count(AP_JWKS) == before + 1
        clock.advance(0.01)
    fetcher.documents[AP_JWKS] = DERIVED["jwks_documents"][AP_JWKS]
    assert discovery.key(AP, "aauth-agent.json", "ap-key-1").kid == "ap-key-1"


def test_failure_keeps_serving_cached_copy_with_backoff() -> None:
    discovery, fetcher, clock = setup(backoff_base=60, backoff_max=300)
    key = discovery.key(AP, "aauth-agent.json", "ap-key-1")
    fetcher.documents[AP_JWKS] = FetchResponse(503, {}, b"")
    clock.advance(3601)
    assert discovery.key(AP, "aauth-agent.json", "ap-key-1") == key
    assert fetcher.calls.count(AP_JWKS) == 2
    for wait, fetches in ((59, 2), (2, 3), (119, 3), (2, 4), (239, 4), (2, 5), (301, 6)):
        clock.advance(wait)
        assert discovery.key(AP, "aauth-agent.json", "ap-key-1") == key
        assert fetcher.calls.count(AP_JWKS) == fetches, (wait, fetches)


def test_cached_copy_is_discarded_after_max_age() -> None:
    discovery, fetcher, clock = setup(backoff_base=1, backoff_max=1)
    discovery.key(AP, "aauth-agent.json", "ap-key-1")
    fetcher.documents[AP_JWKS] = FetchError("timeout")
    fetcher.documents[AP_META] = FetchError("timeout")
    clock.advance(86399)
    assert discovery.key(AP, "aauth-agent.json", "ap-key-1").kid == "ap-key-1"
    clock.advance(2)
    assert failure(lambda: discovery.key(AP, "aauth-agent.json", "ap-key-1")).error == (
        "invalid_key"
    )


def test_cache_is_bounded() -> None:
    docs: dict[str, object] = {}
    keys = {}
    for n in range(3):
        issuer = f"https://ap{n}.example"
        keys[issuer] = PrivateKey.generate(kid="k")
        docs[f"{issuer}/.well-known/aauth-agent.json"] = {
            "issuer": issuer,
            "jwks_uri": f"{issuer}/jwks",
        }
        docs[f"{issuer}/jwks"] = {"keys": [keys[issuer].public_jwk()]}
    discovery, fetcher, _ = setup(docs, max_entries=4)
    for issuer, key in keys.items():
        assert discovery.key(issuer, "aauth-agent.json", "k") == key.public
    assert len(discovery._docs) == 4 and len(discovery._hot) == 3
    assert "https://ap0.example/.well-known/aauth-agent.json" not in discovery._docs
    # The flat key table keeps ap0 for now; once it is bounded too, ap0 is fetched again.
    small, fetcher, _ = setup(docs, max_entries=2)
    for issuer in keys:
        small.key(issuer, "aauth-agent.json", "k")
    assert len(small._docs) == 2 and len(small._hot) == 2
    small.key("https://ap0.example", "aauth-agent.json", "k")
    assert fetcher.calls.count("https://ap0.example/jwks") == 2


def test_jwks_scheme_fetches_the_url_directly() -> None:
    discovery, fetcher, _ = setup()
    key = discovery.jwks_key(AP_JWKS, "ap-key-1")
    assert key.kid == "ap-key-1" and fetcher.calls == [AP_JWKS]
    assert discovery.jwks_key(AP_JWKS, "ap-key-1") is key
    assert failure(lambda: discovery.jwks_key(AP_JWKS, "zzz")).error == "unknown_key"
    assert failure(lambda: discovery.jwks_key("http://agent.example/j", "k")).error == (
        "invalid_key"
    )
    assert fetcher.calls == [AP_JWKS]


def test_seed_preloads_without_fetching() -> None:
    discovery, fetcher, _ = setup({})
    discovery.seed(AP_META, DERIVED["metadata_documents"][AP_META])
    discovery.seed(AP_JWKS, DERIVED["jwks_documents"][AP_JWKS])
    assert discovery.key(AP, "aauth-agent.json", "ap-key-1").kid == "ap-key-1"
    assert fetcher.calls == []


class GatedFetcher(AsyncStaticFetcher):
    """Holds every fetch until released, so concurrent callers overlap."""

    def __init__(self, documents: dict[str, object]) -> None:
        super().__init__(documents)
        self.gate = asyncio.Event()

    async def get(self, url: str) -> FetchResponse:
        await self.gate.wait()
        return await super().get(url)


def test_async_path_matches_sync_path() -> None:
    docs = vector_documents()
    docs[AP_META.replace("agent.example", "bad.example")] = {"jwks_uri": "x"}
    probes: list[tuple[str, str, str]] = [
        (AP, "aauth-agent.json", "ap-key-1"),
        ("https://ps.example", "aauth-person.json", "ps-key-1"),
        (AP, "aauth-agent.json", "missing"),
        ("https://bad.example", "aauth-agent.json", "k"),
        ("https://none.example", "aauth-agent.json", "k"),
        ("https://agent.example/", "aauth-agent.json", "k"),
    ]

    def outcome(call: Callable[[], object]) -> object:
        try:
            return call()
        except SignatureFailure as exc:
            return (exc.error, exc.detail)

    sync, sync_fetcher, _ = setup(docs)
    expected = [outcome(partial(sync.key, *p)) for p in probes]

    async def run() -> tuple[list[object], list[str]]:
        fetcher = AsyncStaticFetcher(docs)
        discovery = KeyDiscovery(async_fetcher=fetcher, clock=FixedClock(T0))
        results: list[object] = []
        for p in probes:
            try:
                results.append(await discovery.akey(*p))
            except SignatureFailure as exc:
                results.append((exc.error, exc.detail))
        results.append(await discovery.ajwks_key(AP_JWKS, "ap-key-1"))
        meta = await discovery.ametadata("https://ps.example", "aauth-person.json")
        results.append(meta["issuer"])
        return results, fetcher.calls

    results, calls = asyncio.run(run())
    assert results[: len(probes)] == expected
    assert results[len(probes)] == sync.jwks_key(AP_JWKS, "ap-key-1")
    assert results[-1] == "https://ps.example"
    assert calls == sync_fetcher.calls


def test_async_concurrent_callers_share_one_fetch() -> None:
    async def run() -> tuple[list[PublicKey], list[str]]:
        fetcher = GatedFetcher(vector_documents())
        discovery = KeyDiscovery(async_fetcher=fetcher, clock=FixedClock(T0))
        tasks = [
            asyncio.create_task(discovery.akey(AP, "aauth-agent.json", "ap-key-1"))
            for _ in range(5)
        ]
        await asyncio.sleep(0)
        fetcher.gate.set()
        return list(await asyncio.gather(*tasks)), fetcher.calls

    keys, calls = asyncio.run(run())
    assert len(set(keys)) == 1
    assert calls == [AP_META, AP_JWKS]


def test_async_concurrent_failures_count_once() -> None:
    async def run() -> tuple[list[object], KeyDiscovery]:
        docs = vector_documents()
        docs[AP_JWKS] = FetchError("timeout")
        fetcher = GatedFetcher(docs)
        discovery = KeyDiscovery(async_fetcher=fetcher, clock=FixedClock(T0))
        tasks = [
            asyncio.create_task(discovery.akey(AP, "aauth-agent.json", "ap-key-1"))
            for _ in range(3)
        ]
        await asyncio.sleep(0)
        fetcher.gate.set()
        return list(await asyncio.gather(*tasks, return_exceptions=True)), discovery

    outcomes, discovery = asyncio.run(run())
    assert all(isinstance(o, SignatureFailure) and o.error == "invalid_key" for o in outcomes)
    assert discovery._docs[AP_JWKS].failures == 1
