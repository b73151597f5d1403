"""Hostile key servers against the example servers (issue 8 items 1, 2 and 3).

The attacker controls a token's ``iss`` (any loopback issuer passes the development
egress rules, as any https one does in production) and so the server that answers key
discovery.  Each example resource and Person Server, as a real process:

- fed a JWKS that is 1 GiB of zeros gzipped twice (``Content-Encoding: gzip, gzip``, about
  2 KB on the wire) or once (about 1 MB), answers ``401 invalid_key`` and its resident
  memory grows by less than 100 MB;
- facing a metadata server that sends one header byte every 2 s, answers ``401
  invalid_key`` within the 5 s fetch deadline (plus scheduling slack), and a body that
  trickles likewise;
- facing documents nested 100,000 deep or cache headers no clock can hold, never answers
  5xx and fetches each URL once however many requests name it (per-URL backoff).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.hostile_http import keyservers
from tests.hostile_http.cases import jws
from tests.hostile_http.keyservers import KeyServer
from tests.hostile_http.rawhttp import RawResponse, exchange
from tests.hostile_http.servers import Fleet, Server

DEADLINE = 5.0  # EgressPolicy.timeout: one deadline for connect, headers and body
SLACK = 2.5  # a loaded CI machine schedules late; the old per-read timeout took 40 s
MAX_RSS_GROWTH = 100 * 2**20


def _token(fleet: Fleet, hostile: KeyServer) -> str:
    now = int(time.time())
    claims = {
        "iss": hostile.origin,
        "dwk": "aauth-agent.json",
        "sub": f"aauth:victim@127.0.0.1:{hostile.port}",
        "jti": f"j{time.monotonic_ns()}",
        "iat": now,
        "exp": now + 600,
        "cnf": {"jwk": dict(fleet.agent.key.public.jwk)},
    }
    header = {"typ": "aa-agent+jwt", "alg": "Ed25519", "kid": hostile.key.kid}
    return jws(header, claims, hostile.key)


def _send(fleet: Fleet, server: Server, hostile: KeyServer, deadline: float = 30) -> RawResponse:
    token = _token(fleet, hostile)
    if server.role == "resource":
        request = fleet.agent.sign(server.port, "GET", "/whoami", token=token)
    else:
        body = {"resource": fleet.resources[0].url, "capabilities": ["interaction"]}
        request = fleet.agent.sign(
            server.port, "POST", "/person", body=json.dumps(body).encode(), token=token
        )
    return exchange(server.port, request, deadline=deadline)


def _invalid_key(server: Server, response: RawResponse) -> None:
    assert response.status == 401, (server.name, response.status, response.body[:200])
    assert response.header("signature-error") == "error=invalid_key", server.name
    assert json.loads(response.body)["error"] == "invalid_key"


@pytest.fixture
def hostile() -> Iterator[Callable[[keyservers.Reply], KeyServer]]:
    made: list[KeyServer] = []

    def make(reply: keyservers.Reply) -> KeyServer:
        server = KeyServer("hostile", reply)
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


@pytest.mark.parametrize(
    "bomb",
    [keyservers.gzip_gzip_bomb, keyservers.gzip_bomb, keyservers.metadata_bomb],
    ids=["jwks-gzip-gzip-1GiB", "jwks-gzip-1GiB", "metadata-gzip-gzip-1GiB"],
)
def test_decompression_bombs_keep_memory_bounded(
    hostile_fleet: Fleet,
    hostile: Callable[[keyservers.Reply], KeyServer],
    bomb: Callable[[], keyservers.Reply],
) -> None:
    key_server = hostile(bomb())
    for server in hostile_fleet.all:
        before = server.rss()
        _invalid_key(server, _send(hostile_fleet, server, key_server))
        _invalid_key(server, _send(hostile_fleet, server, key_server))  # the cached failure
        grown = server.rss() - before
        assert grown < MAX_RSS_GROWTH, f"{server.name} grew {grown / 2**20:.0f} MB"
    assert sum(key_server.fetches.values()) <= 2 * len(hostile_fleet.all)


@pytest.mark.parametrize(
    "slow", [keyservers.slow_header, keyservers.slow_body], ids=["slow-header", "slow-body"]
)
def test_a_trickling_key_server_is_cut_off_at_the_deadline(
    hostile_fleet: Fleet,
    hostile: Callable[[keyservers.Reply], KeyServer],
    slow: Callable[[], keyservers.Reply],
) -> None:
    key_server = hostile(slow())
    servers = hostile_fleet.all
    with ThreadPoolExecutor(max_workers=len(servers)) as pool:
        first = list(pool.map(lambda s: _send(hostile_fleet, s, key_server), servers))
    for server, response in zip(servers, first, strict=True):
        _invalid_key(server, response)
        assert response.elapsed < DEADLINE + SLACK, f"{server.name}: {response.elapsed:.1f}s"
    # The failure is remembered: the next request is answered at once, with no new fetch.
    fetched = sum(key_server.fetches.values())
    for server in servers:
        again = _send(hostile_fleet, server, key_server)
        _invalid_key(server, again)
        assert again.elapsed < 2, f"{server.name}: {again.elapsed:.1f}s"
    assert sum(key_server.fetches.values()) == fetched


@pytest.mark.parametrize(
    ("reply", "usable"),
    [
        (keyservers.deep_metadata, False),
        (keyservers.deep_jwks, False),
        (keyservers.absurd_cache_headers, True),
        (keyservers.absurd_expires_everywhere, True),
    ],
    ids=[
        "metadata-100000-deep",
        "jwks-100000-deep",
        "expires-year-99999",
        "expires-year-999999999",
    ],
)
def test_hostile_documents_never_crash_and_are_fetched_once(
    hostile_fleet: Fleet,
    hostile: Callable[[keyservers.Reply], KeyServer],
    reply: Callable[[], keyservers.Reply],
    usable: bool,
) -> None:
    key_server = hostile(reply())
    for server in hostile_fleet.all:
        for _ in range(15):
            response = _send(hostile_fleet, server, key_server)
            assert response.status < 500, (server.name, response.body[:200])
            if usable:
                # Good keys under absurd cache headers: the headers mean "stale", nothing worse.
                assert response.status in (200, 202, 429), (server.name, response.body[:200])
            else:
                _invalid_key(server, response)
    # One fetch per server and URL, not fifteen: every failure counts toward the backoff.
    for path, count in key_server.fetches.items():
        assert count <= len(hostile_fleet.all), (path, count)
