"""The httpx fetchers against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from aauth_server.errors import SignatureFailure
from aauth_server.keys.discovery import KeyDiscovery
from aauth_server.keys.egress import EgressPolicy
from aauth_server.keys.fetcher import (
    AsyncHttpxFetcher,
    FetchError,
    FetchResponse,
    HttpxFetcher,
)
from aauth_server.keys.jwk import PrivateKey

MAX_BYTES = 1024
SIGNING_KEY = PrivateKey.generate(kid="k1")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    seen: list[tuple[str, str | None, str | None]]
    release: threading.Event

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that gave up (timeout, size limit) leave broken pipes behind; expected here.
        pass


class Handler(BaseHTTPRequestHandler):
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers["Host"], self.headers["Accept"]))
        origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        if self.path == "/.well-known/aauth-agent.json":
            doc = {"issuer": origin, "jwks_uri": f"{origin}/jwks.json"}
            self._send(200, json.dumps(doc).encode(), {"Cache-Control": "max-age=300"})
        elif self.path == "/jwks.json":
            self._send(200, json.dumps({"keys": [SIGNING_KEY.public_jwk()]}).encode())
        elif self.path == "/redirect":
            self._send(302, b"", {"Location": "/jwks.json"})
        elif self.path == "/big":
            self._send(200, b"[" + b"1," * MAX_BYTES + b"1]")
        elif self.path == "/big-unsized":
            # HTTP/1.0 without Content-Length: the size is known only by reading.
            self.send_response(200)
            self.end_headers()
            for _ in range(8):
                self.wfile.write(b" " * (MAX_BYTES // 2))
        elif self.path == "/slow":
            self.server.release.wait(10)
            self._send(200, b"{}")
        else:
            self._send(404, b"not here")


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.seen = []
    httpd.release = threading.Event()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def origin(server: Server, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{server.server_address[1]}"


def dev_policy() -> EgressPolicy:
    return EgressPolicy(dev_loopback=True, max_bytes=MAX_BYTES, timeout=0.5)


Get = Callable[[EgressPolicy, str], FetchResponse]


def sync_get(policy: EgressPolicy, url: str) -> FetchResponse:
    fetcher = HttpxFetcher(policy)
    try:
        return fetcher.get(url)
    finally:
        fetcher.close()


def async_get(policy: EgressPolicy, url: str) -> FetchResponse:
    async def run() -> FetchResponse:
        fetcher = AsyncHttpxFetcher(policy)
        try:
            return await fetcher.get(url)
        finally:
            await fetcher.aclose()

    return asyncio.run(run())


FETCHERS = pytest.mark.parametrize("get", [sync_get, async_get], ids=["sync", "async"])


def refused(get: Get, policy: EgressPolicy, url: str) -> str:
    with pytest.raises(FetchError) as info:
        get(policy, url)
    return info.value.reason


@FETCHERS
def test_fetches_metadata_and_jwks(server: Server, get: Get) -> None:
    base = origin(server)
    response = get(dev_policy(), f"{base}/.well-known/aauth-agent.json")
    assert response.status == 200
    assert response.headers["cache-control"] == "max-age=300"
    assert json.loads(response.body) == {"issuer": base, "jwks_uri": f"{base}/jwks.json"}
    assert server.seen[-1] == (
        "/.well-known/aauth-agent.json",
        f"127.0.0.1:{server.server_address[1]}",
        "application/json",
    )
    jwks = json.loads(get(dev_policy(), f"{base}/jwks.json").body)
    assert jwks["keys"][0]["kid"] == "k1"
    missing = get(dev_policy(), f"{base}/nothing")
    assert (missing.status, missing.body) == (404, b"not here")


@FETCHERS
def test_localhost_connects_to_the_pinned_address_with_its_own_host(
    server: Server, get: Get
) -> None:
    response = get(dev_policy(), f"{origin(server, 'localhost')}/jwks.json")
    assert response.status == 200
    assert server.seen[-1][1] == f"localhost:{server.server_address[1]}"


@FETCHERS
def test_redirect_is_refused(server: Server, get: Get) -> None:
    assert refused(get, dev_policy(), f"{origin(server)}/redirect") == "redirect"


@FETCHERS
@pytest.mark.parametrize("path", ["/big", "/big-unsized"])
def test_oversize_is_refused(server: Server, get: Get, path: str) -> None:
    assert refused(get, dev_policy(), f"{origin(server)}{path}") == "too large"


@FETCHERS
def test_slow_server_times_out(server: Server, get: Get) -> None:
    policy = EgressPolicy(dev_loopback=True, max_bytes=MAX_BYTES, timeout=0.2)
    assert refused(get, policy, f"{origin(server)}/slow") == "timeout"


@FETCHERS
def test_default_policy_refuses_loopback_before_connecting(server: Server, get: Get) -> None:
    before = len(server.seen)
    for host in ("127.0.0.1", "localhost"):
        reason = refused(get, EgressPolicy(), f"{origin(server, host)}/jwks.json")
        assert reason.startswith("egress refused")
    assert len(server.seen) == before


def test_discovery_over_real_http(server: Server) -> None:
    issuer = origin(server)
    fetcher = HttpxFetcher(dev_policy())
    discovery = KeyDiscovery(fetcher, dev_loopback=True)
    try:
        key = discovery.key(issuer, "aauth-agent.json", "k1")
        assert key == SIGNING_KEY.public
        with pytest.raises(SignatureFailure) as info:
            discovery.jwks_key(f"{issuer}/redirect", "k1")
        assert info.value.error == "invalid_key" and "redirect" in info.value.detail
    finally:
        fetcher.close()

    async def run() -> object:
        afetcher = AsyncHttpxFetcher(dev_policy())
        try:
            adiscovery = KeyDiscovery(async_fetcher=afetcher, dev_loopback=True)
            return await adiscovery.akey(issuer, "aauth-agent.json", "k1")
        finally:
            await afetcher.aclose()

    assert asyncio.run(run()) == SIGNING_KEY.public


def test_discovery_default_fetcher_applies_egress(server: Server) -> None:
    # No fetcher given: the default one must still refuse loopback without the dev setting.
    before = len(server.seen)
    discovery = KeyDiscovery()
    with pytest.raises(SignatureFailure) as info:
        discovery.jwks_key(f"https://127.0.0.1:{server.server_address[1]}/jwks.json", "k1")
    assert info.value.error == "invalid_key" and "egress refused" in info.value.detail
    assert len(server.seen) == before
