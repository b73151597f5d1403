"""Hostile key servers on 127.0.0.1: what an attacker who controls a token's ``iss`` serves.

Each :class:`KeyServer` is an issuer ``http://127.0.0.1:PORT`` (admitted by the servers'
development setting) answering the metadata and JWKS fetches of key discovery with one
hostile behaviour: decompression bombs, a metadata server that trickles its header bytes,
documents nested 100,000 deep, absurd cache headers, redirects, a cross-origin
``jwks_uri``.  Raw sockets, so the bytes and their timing are exactly the attacker's.
"""

from __future__ import annotations

import gzip
import json
import socket
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from functools import cache

from aauth_server.keys import PrivateKey

MiB = 1 << 20
METADATA_PATHS = ("/.well-known/aauth-agent.json", "/.well-known/aauth-person.json")
JWKS_PATH = "/jwks.json"


@cache
def gzip_of_zeros(mebibytes: int = 1024) -> bytes:
    """One gzip member holding ``mebibytes`` MiB of zeros (1 GiB: about 1 MB on the wire).

    Built from one compressed MiB repeated after full flushes (each restarts the history,
    so every repeat compresses to the same bytes): a second, not minutes of CPU.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = compressor.compress(b"\0" * MiB) + compressor.flush(zlib.Z_FULL_FLUSH)
    end = zlib.compressobj(9, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)
    crc = 0
    zeros = b"\0" * MiB
    for _ in range(mebibytes):
        crc = zlib.crc32(zeros, crc)
    size = (mebibytes * MiB) & 0xFFFFFFFF
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + segment * mebibytes + end + struct.pack("<II", crc, size)


def nested(depth: int) -> bytes:
    return b'{"issuer":' + b"[" * depth + b"]" * depth + b"}"


Reply = Callable[[socket.socket, "KeyServer", str], None]


class KeyServer:
    """An issuer on loopback; ``behaviour(path)`` decides what each fetch gets."""

    def __init__(self, name: str, reply: Reply, *, key: PrivateKey | None = None) -> None:
        self.name = name
        self.reply = reply
        self.key = key or PrivateKey.generate("Ed25519", kid="hostile-1")
        self.fetches: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port: int = self._sock.getsockname()[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def metadata(self, **extra: object) -> dict[str, object]:
        return {"issuer": self.origin, "jwks_uri": self.origin + JWKS_PATH, **extra}

    def jwks(self) -> dict[str, object]:
        return {"keys": [self.key.public_jwk()]}

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                head = b""
                while b"\r\n\r\n" not in head and len(head) < 65536:
                    data = conn.recv(4096)
                    if not data:
                        return
                    head += data
                path = head.split(b" ", 2)[1].decode("latin-1")
                with self._lock:
                    self.fetches[path] += 1
                self.reply(conn, self, path)
            except OSError:
                return

    def stop(self) -> None:
        self._stop.set()
        self._sock.close()


# -- replies ----------------------------------------------------------------------------------


def send(
    conn: socket.socket, status: int, body: bytes, headers: dict[str, str] | None = None
) -> None:
    lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {"Content-Type": "application/json"}).items()]
    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


def _documents(
    jwks_body: Callable[[KeyServer], tuple[bytes, dict[str, str]]] | None = None,
    metadata_body: Callable[[KeyServer], tuple[bytes, dict[str, str]]] | None = None,
) -> Reply:
    def reply(conn: socket.socket, server: KeyServer, path: str) -> None:
        if path in METADATA_PATHS:
            if metadata_body is not None:
                body, headers = metadata_body(server)
            else:
                body, headers = json.dumps(server.metadata()).encode(), {}
            send(conn, 200, body, {"Content-Type": "application/json", **headers})
        elif path == JWKS_PATH:
            if jwks_body is not None:
                body, headers = jwks_body(server)
            else:
                body, headers = json.dumps(server.jwks()).encode(), {}
            send(conn, 200, body, {"Content-Type": "application/json", **headers})
        else:
            send(conn, 404, b"{}")

    return reply


def gzip_gzip_bomb() -> Reply:
    """1 GiB of zeros, gzipped twice: about 2 KB on the wire (``Content-Encoding: gzip, gzip``)."""
    twice = gzip.compress(gzip_of_zeros(), 9)
    return _documents(jwks_body=lambda s: (twice, {"Content-Encoding": "gzip, gzip"}))


def gzip_bomb() -> Reply:
    """One gzip of 1 GiB of zeros: about 1 MB on the wire."""
    once = gzip_of_zeros()
    return _documents(jwks_body=lambda s: (once, {"Content-Encoding": "gzip"}))


def metadata_bomb() -> Reply:
    """The metadata document itself as a gzip, gzip bomb."""
    twice = gzip.compress(gzip_of_zeros(), 9)
    return _documents(metadata_body=lambda s: (twice, {"Content-Encoding": "gzip, gzip"}))


def slow_header(interval: float = 2.0) -> Reply:
    """A metadata server that sends one header byte every ``interval`` seconds, forever."""

    def reply(conn: socket.socket, server: KeyServer, path: str) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        while not server.stopping:
            conn.sendall(b"X")
            time.sleep(interval)

    return reply


def slow_body(interval: float = 1.0) -> Reply:
    """Complete headers, then one body byte every ``interval`` seconds."""

    def reply(conn: socket.socket, server: KeyServer, path: str) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
        )
        while not server.stopping:
            conn.sendall(b" ")
            time.sleep(interval)

    return reply


def deep_metadata() -> Reply:
    return _documents(metadata_body=lambda s: (nested(100_000), {}))


def deep_jwks() -> Reply:
    return _documents(
        jwks_body=lambda s: (b'{"keys":' + b"[" * 100_000 + b"]" * 100_000 + b"}", {})
    )


def absurd_cache_headers() -> Reply:
    """A usable key, served under an Expires no clock can hold and a 5,000-digit max-age."""
    metadata_headers = {"Expires": "Fri, 01 Jan 99999999999999999999 00:00:00 GMT"}
    jwks_headers = {"Cache-Control": "max-age=" + "9" * 5000}
    return _documents(
        jwks_body=lambda s: (json.dumps(s.jwks()).encode(), jwks_headers),
        metadata_body=lambda s: (json.dumps(s.metadata()).encode(), metadata_headers),
    )


def absurd_expires_everywhere() -> Reply:
    headers = {
        "Expires": "Tue, 31 Dec 999999999 23:59:59 GMT",
        "Date": "Thu, 01 Jan 1 00:00:00 GMT",
    }
    return _documents(
        jwks_body=lambda s: (json.dumps(s.jwks()).encode(), headers),
        metadata_body=lambda s: (json.dumps(s.metadata()).encode(), headers),
    )


def redirecting() -> Reply:
    def reply(conn: socket.socket, server: KeyServer, path: str) -> None:
        send(conn, 302, b"", {"Location": "http://127.0.0.1:1/.well-known/x"})

    return reply


def cross_origin(other: KeyServer) -> Reply:
    return _documents(
        metadata_body=lambda s: (
            json.dumps(s.metadata(jwks_uri=other.origin + JWKS_PATH)).encode(),
            {},
        )
    )


def not_json() -> Reply:
    return _documents(jwks_body=lambda s: (b"\xff\xfe not json " * 100, {}))


def oversized() -> Reply:
    big = b"[" + b"0," * (3 * MiB) + b"0]"
    return _documents(jwks_body=lambda s: (big, {}))


def reset() -> Reply:
    def reply(conn: socket.socket, server: KeyServer, path: str) -> None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    return reply


def unknown_coding() -> Reply:
    return _documents(jwks_body=lambda s: (b"\x00" * 64, {"Content-Encoding": "br, x-evil"}))
