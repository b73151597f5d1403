"""What a hostile key server controls, bounded by the fetchers (issue 8, items 1 and 3).

A raw socket server on 127.0.0.1 answers with exactly the bytes each case needs: bodies
compressed once, twice or with an unknown coding, a gzip bomb, and responses trickled a byte
at a time. The fetchers must cap wire and decoded bytes, keep memory bounded while decoding,
refuse stacked or unknown codings, and end the whole exchange at one deadline.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator

import pytest

from aauth_server.keys.egress import EgressPolicy
from aauth_server.keys.fetcher import AsyncHttpxFetcher, FetchError, FetchResponse, HttpxFetcher

DOC = json.dumps({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "A" * 43}]}).encode()


def _gzip_bomb(decoded: int) -> bytes:
    """gzip of ``decoded`` zero bytes, built a megabyte at a time (about 1 KB per MB)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    parts = [compressor.compress(block) for _ in range(decoded >> 20)]
    parts.append(compressor.flush())
    return b"".join(parts)


BOMB_1GIB = _gzip_bomb(1 << 30)
STACKED_BOMB = gzip.compress(BOMB_1GIB, 9)


def _response(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Connection: close", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


RESPONSES: dict[str, bytes] = {
    "/plain": _response(DOC, "Content-Type: application/json"),
    "/gzip": _response(gzip.compress(DOC), "Content-Encoding: gzip"),
    "/gzip-two-members": _response(
        gzip.compress(DOC[:10]) + gzip.compress(DOC[10:]), "Content-Encoding: gzip"
    ),
    "/deflate": _response(zlib.compress(DOC), "Content-Encoding: deflate"),
    "/deflate-raw": _response(
        (lambda c: c.compress(DOC) + c.flush())(zlib.compressobj(6, zlib.DEFLATED, -15)),
        "Content-Encoding: deflate",
    ),
    "/identity": _response(DOC, "Content-Encoding: identity"),
    "/bomb": _response(BOMB_1GIB, "Content-Encoding: gzip"),
    "/stacked": _response(STACKED_BOMB, "Content-Encoding: gzip, gzip"),
    "/stacked-lines": _response(
        gzip.compress(gzip.compress(DOC)), "Content-Encoding: gzip", "Content-Encoding: gzip"
    ),
    "/brotli": _response(b"\x0b\x02\x80{}\x03", "Content-Encoding: br"),
    "/corrupt": _response(b"\x1f\x8b\x08\x00garbage-not-deflate", "Content-Encoding: gzip"),
    "/truncated": _response(gzip.compress(DOC)[:-12], "Content-Encoding: gzip"),
    "/big": _response(b" " * (300 * 1024)),
}


class RawServer:
    """Answers each connection by path: a canned response, or a byte-at-a-time trickle."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.requests: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, rest = data.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                while len(rest) < length:
                    rest += conn.recv(65536)
                self.requests.append(data[: len(head) + 4] + rest)
                path = head.split(b" ")[1].decode()
                if path == "/slow-headers":
                    # One byte of the status line and headers every 0.1 s: each read arrives
                    # well within any per-read timeout, the whole never does.
                    for byte in b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * 400:
                        if self.stop.is_set():
                            return
                        conn.sendall(bytes([byte]))
                        time.sleep(0.1)
                elif path == "/slow-body":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
                    for _ in range(1000):
                        if self.stop.is_set():
                            return
                        conn.sendall(b" ")
                        time.sleep(0.1)
                elif path == "/echo":
                    body = json.dumps({"request": (data[: len(head) + 4] + rest).decode()})
                    conn.sendall(_response(body.encode()))
                else:
                    conn.sendall(RESPONSES.get(path, _response(b"no", status="404 Not Found")))
            except OSError:
                return

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture(scope="module")
def server() -> Iterator[RawServer]:
    raw = RawServer()
    yield raw
    raw.close()


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


def policy(timeout: float = 5.0) -> EgressPolicy:
    return EgressPolicy(dev_loopback=True, timeout=timeout)


def refusal(get: Get, url: str, timeout: float = 5.0) -> str:
    with pytest.raises(FetchError) as info:
        get(policy(timeout), url)
    return info.value.reason


@FETCHERS
@pytest.mark.parametrize(
    "path", ["/plain", "/gzip", "/gzip-two-members", "/deflate", "/deflate-raw", "/identity"]
)
def test_one_layer_of_a_known_coding_is_decoded(server: RawServer, get: Get, path: str) -> None:
    assert get(policy(), server.url(path)).body == DOC


@FETCHERS
def test_a_gzip_bomb_stops_at_the_decoded_cap_with_bounded_memory(
    server: RawServer, get: Get
) -> None:
    assert len(BOMB_1GIB) < 1_100_000  # about 1 MB on the wire for 1 GiB inside
    # tracemalloc sees every bytes object the decoder makes: the peak is what decoding held.
    tracemalloc.start()
    try:
        assert refusal(get, server.url("/bomb")) == "too large"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, f"decoding held {peak} bytes at its peak"


@FETCHERS
@pytest.mark.parametrize("path", ["/stacked", "/stacked-lines"])
def test_stacked_codings_are_refused_before_decoding(
    server: RawServer, get: Get, path: str
) -> None:
    assert len(STACKED_BOMB) < 4096  # the 1.8 KB on the wire
    assert refusal(get, server.url(path)) == "stacked content codings are refused"


@FETCHERS
def test_unknown_coding_is_refused(server: RawServer, get: Get) -> None:
    assert refusal(get, server.url("/brotli")).startswith("content coding 'br'")


@FETCHERS
@pytest.mark.parametrize("path", ["/corrupt", "/truncated"])
def test_a_body_that_does_not_decode_is_refused(server: RawServer, get: Get, path: str) -> None:
    assert refusal(get, server.url(path)) == "body does not decode"


@FETCHERS
def test_wire_bytes_are_capped(server: RawServer, get: Get) -> None:
    assert refusal(get, server.url("/big")) == "too large"


@FETCHERS
@pytest.mark.parametrize("path", ["/slow-headers", "/slow-body"])
def test_one_deadline_covers_headers_and_body(server: RawServer, get: Get, path: str) -> None:
    started = time.monotonic()
    assert refusal(get, server.url(path), timeout=1.0) == "timeout"
    assert time.monotonic() - started < 1.8


@FETCHERS
def test_the_request_asks_for_codings_it_can_bound(server: RawServer, get: Get) -> None:
    response = get(policy(), server.url("/echo"))
    sent = json.loads(response.body)["request"]
    assert "Accept-Encoding: gzip, deflate\r\n" in sent
    assert "Accept: application/json\r\n" in sent


def test_request_sends_a_method_headers_and_body(server: RawServer) -> None:
    fetcher = HttpxFetcher(policy())
    try:
        response = fetcher.request(
            "POST",
            server.url("/echo"),
            headers=[("Content-Type", "application/json"), ("Host", "evil.example")],
            body=b'{"jti":"x"}',
        )
    finally:
        fetcher.close()
    sent = json.loads(response.body)["request"]
    assert sent.startswith("POST /echo HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}\r\n" in sent and "evil.example" not in sent
    assert "Content-Length: 11\r\n" in sent and sent.endswith('{"jti":"x"}')


def test_egress_refusal_names_no_resolver_answer_to_the_caller() -> None:
    fetcher = HttpxFetcher(EgressPolicy(resolver=lambda host, port: ["10.0.0.7"]))
    try:
        with pytest.raises(FetchError) as info:
            fetcher.get("https://keys.example/jwks.json")
    finally:
        fetcher.close()
    assert info.value.reason == "egress refused"
    assert "10.0.0.7" in info.value.log_detail
