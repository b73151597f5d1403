"""Issue 8 items 2, 9 and 13: what an attacker who controls a key document can do to discovery.

Every failure of a fetch or a parse is the digest's ``401`` (``invalid_key``), counts toward
the per-URL backoff (one fetch, however many requests), never tells the client what a name
resolved to, and a cross-origin ``jwks_uri`` needs explicit admission (digest 2.8, 12).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from aauth_server.errors import SignatureFailure
from aauth_server.keys import EgressPolicy, HttpxFetcher, KeyDiscovery, PrivateKey
from aauth_server.keys.fetcher import AsyncStaticFetcher, FetchResponse, StaticFetcher
from aauth_server.resource import ResourceGuard
from aauth_server.tokens.aauth import mint_agent_token
from tests.resource.core_harness import CoreApp
from tests.support import AP_ISSUER, World

AP_META = AP_ISSUER + "/.well-known/aauth-agent.json"
AP_JWKS = AP_ISSUER + "/.well-known/jwks.json"
DEEP = b'{"keys":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
DEEP_METADATA = b'{"issuer":' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def _world_with(url: str, answer: object) -> tuple[World, StaticFetcher, AsyncStaticFetcher]:
    world = World()
    docs = world.documents()
    docs[url] = answer
    return world, StaticFetcher(docs), AsyncStaticFetcher(docs)


def _failure(call: Any) -> SignatureFailure:
    with pytest.raises(SignatureFailure) as caught:
        call()
    return caught.value


@pytest.mark.parametrize(
    ("url", "answer"),
    [
        (AP_JWKS, FetchResponse(200, {"content-type": "application/json"}, DEEP)),
        (AP_META, FetchResponse(200, {"content-type": "application/json"}, DEEP_METADATA)),
        (
            AP_JWKS,
            FetchResponse(
                200, {}, b'{"keys":[{"kid":"ap-1","kty":' + b"[" * 50 + b"]" * 50 + b"}]}"
            ),
        ),
    ],
    ids=["jwks-100000-deep", "metadata-100000-deep", "jwk-member-50-deep"],
)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_deeply_nested_key_documents_are_invalid_key_and_fetched_once(
    url: str, answer: object, mode: str
) -> None:
    world, fetcher, afetcher = _world_with(url, answer)
    app = CoreApp(
        world.resource_config(discovery=KeyDiscovery(fetcher, afetcher, clock=world.clock))
    )
    send = app.send if mode == "sync" else (lambda r: asyncio.run(app.asend(r)))
    for _ in range(15):
        response = send(world.signed())
        assert response.status == 401
        assert response.header("signature-error") == "error=invalid_key"
        assert json.loads(response.body)["error"] == "invalid_key"
    calls = fetcher.calls if mode == "sync" else afetcher.calls
    assert calls.count(url) == 1  # the failure was remembered: backoff, not 15 fetches


@pytest.mark.parametrize(
    "headers",
    [
        {"expires": "Fri, 01 Jan 99999999999999999999 00:00:00 GMT"},  # OverflowError
        {"expires": "Fri, 01 Jan 2030 00:00:00 +99999999999999999999"},  # OverflowError
        {"expires": "Tue, 31 Dec 999999999 23:59:59 GMT", "date": "Thu, 01 Jan 1 00:00:00 GMT"},
        {"cache-control": "max-age=" + "9" * 5000},
        {"cache-control": "max-age=99999999999999999999999"},
    ],
    ids=[
        "year-20-digits",
        "offset-20-digits",
        "year-999999999",
        "max-age-5000-digits",
        "max-age-huge",
    ],
)
def test_absurd_cache_headers_neither_crash_nor_refetch(headers: dict[str, str]) -> None:
    world = World()
    docs = world.documents()
    for url in (AP_META, AP_JWKS):
        docs[url] = FetchResponse(
            200, {"content-type": "application/json", **headers}, json.dumps(docs[url]).encode()
        )
    fetcher = StaticFetcher(docs)
    app = CoreApp(
        world.resource_config(
            discovery=KeyDiscovery(fetcher, AsyncStaticFetcher(docs), clock=world.clock)
        )
    )
    for _ in range(15):
        assert (
            app.send(world.signed()).status == 200
        )  # the documents are good; only the headers are absurd
    assert fetcher.calls.count(AP_META) == 1 and fetcher.calls.count(AP_JWKS) == 1


class _ExplodingFetcher:
    """A fetcher that fails in a way no one planned for."""

    def __init__(self) -> None:
        self.calls = 0

    def get(self, url: str) -> FetchResponse:
        self.calls += 1
        raise RuntimeError("the fetcher broke")


def test_an_unexpected_fetcher_error_is_invalid_key_with_backoff() -> None:
    fetcher = _ExplodingFetcher()
    discovery = KeyDiscovery(fetcher)
    for _ in range(5):
        caught = _failure(lambda: discovery.key(AP_ISSUER, "aauth-agent.json", "k"))
        assert caught.error == "invalid_key" and "broke" not in caught.detail
    assert fetcher.calls == 1


def test_an_unusable_jwk_is_invalid_key() -> None:
    world = World()
    docs = world.documents()
    docs[AP_JWKS] = {
        "keys": [
            {
                "kid": "ap-1",
                "kty": "OKP",
                "crv": "Ed25519",
                "alg": "Ed25519",
                "x": ["not", "a", "string"],
            }
        ]
    }
    discovery = KeyDiscovery(StaticFetcher(docs))
    caught = _failure(lambda: discovery.key(AP_ISSUER, "aauth-agent.json", "ap-1"))
    assert caught.error == "invalid_key"


# -- item 9: no DNS answer in what the client is told ----------------------------------------------


def _https_agent_request(issuer: str) -> tuple[World, Any]:
    world = World()
    key = PrivateKey.generate("Ed25519", kid="k")
    token = mint_agent_token(
        key,
        iss=issuer,
        sub=f"aauth:a@{issuer.removeprefix('https://')}",
        cnf_jwk=world.agent_key.public,
        now=world.now(),
    )
    return world, world.signed(token=token)


@pytest.mark.parametrize(
    ("resolver_answer", "secret"),
    [(["127.0.0.1"], "127.0.0.1"), (["10.1.2.3"], "10.1.2.3"), (["169.254.169.254"], "169.254")],
)
def test_egress_refusals_do_not_reveal_resolved_addresses(
    resolver_answer: list[str], secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    world, request = _https_agent_request("https://vm.example")
    policy = EgressPolicy(resolver=lambda host, port: resolver_answer)
    discovery = KeyDiscovery(HttpxFetcher(policy), clock=world.clock)
    guard = ResourceGuard(world.resource_config(discovery=discovery))
    with caplog.at_level(logging.INFO, logger="aauth_server.keys"):
        caught = _failure(lambda: guard.check(request))
    assert caught.error == "invalid_key"
    assert secret not in caught.detail and "resolves" not in caught.detail
    assert "egress" in caught.detail  # the kind of failure, not its facts
    assert any(secret in record.getMessage() for record in caplog.records)  # kept for the log


def test_resolution_failures_do_not_reveal_resolver_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world, request = _https_agent_request("https://gone.example")

    def resolver(host: str, port: int) -> list[str]:
        raise OSError(-2, "Name or service not known")

    discovery = KeyDiscovery(HttpxFetcher(EgressPolicy(resolver=resolver)), clock=world.clock)
    guard = ResourceGuard(world.resource_config(discovery=discovery))
    with caplog.at_level(logging.INFO, logger="aauth_server.keys"):
        caught = _failure(lambda: guard.check(request))
    assert caught.error == "invalid_key"
    for leak in ("resolve", "Name or service", "gone.example:"):
        assert leak not in caught.detail
    assert any("Name or service not known" in r.getMessage() for r in caplog.records)


# -- item 13: a cross-origin jwks_uri needs explicit admission -------------------------------------


def _cross_origin_docs(world: World) -> dict[str, Any]:
    docs = world.documents()
    docs[AP_META] = {"issuer": AP_ISSUER, "jwks_uri": "https://keys.cdn.example/ap.json"}
    docs["https://keys.cdn.example/ap.json"] = docs.pop(AP_JWKS)
    return docs


def test_cross_origin_jwks_uri_is_refused_by_default() -> None:
    world = World()
    docs = _cross_origin_docs(world)
    fetcher = StaticFetcher(docs)
    app = CoreApp(world.resource_config(discovery=KeyDiscovery(fetcher, clock=world.clock)))
    response = app.send(world.signed())
    assert response.status == 401 and response.header("signature-error") == "error=invalid_key"
    assert "another origin" in json.loads(response.body)["detail"]
    assert "https://keys.cdn.example/ap.json" not in fetcher.calls  # refused before fetching


def test_cross_origin_jwks_uri_is_admitted_by_the_setting() -> None:
    world = World()
    docs = _cross_origin_docs(world)
    config = world.resource_config(allow_cross_origin_jwks=True)
    config.discovery = None
    config.fetcher = StaticFetcher(docs)
    config.async_fetcher = AsyncStaticFetcher(docs)
    assert CoreApp(config).send(world.signed()).status == 200


def test_same_origin_jwks_uri_with_an_explicit_default_port_is_same_origin() -> None:
    world = World()
    docs = world.documents()
    docs[AP_META] = {"issuer": AP_ISSUER, "jwks_uri": AP_ISSUER + ":443/.well-known/jwks.json"}
    docs[AP_ISSUER + ":443/.well-known/jwks.json"] = docs[AP_JWKS]
    app = CoreApp(
        world.resource_config(discovery=KeyDiscovery(StaticFetcher(docs), clock=world.clock))
    )
    assert app.send(world.signed()).status == 200
