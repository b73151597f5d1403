"""A raw HTTP/1.1 client for hostile requests, and process memory readings.

httpx (like every well-behaved client) refuses to send a malformed ``Host``, repeated
``Host`` lines, or a body that disagrees with its framing; a hostile client sends exactly
the bytes it likes.  :func:`exchange` writes the request as given, reads the answer
within a deadline and reports how long the server took.
"""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class RawRequest:
    method: str
    target: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    #: ``Content-Length`` from the body unless a header sets framing; ``chunked`` sends
    #: the body as chunks of this many bytes with ``Transfer-Encoding: chunked``.
    chunked: int = 0
    #: Host to send when ``headers`` has none (default: the server's own address).
    host: str | None = None
    #: Zero bytes streamed after ``body`` (a 200 MB body without holding 200 MB here).
    zeros: int = 0

    @property
    def length(self) -> int:
        return len(self.body) + self.zeros

    def encode_head(self, default_host: str) -> bytes:
        lines = [f"{self.method} {self.target} HTTP/1.1"]
        names = {k.lower() for k, _ in self.headers}
        if "host" not in names:
            lines.append(f"Host: {self.host if self.host is not None else default_host}")
        lines += [f"{k}: {v}" for k, v in self.headers]
        if self.chunked:
            lines.append("Transfer-Encoding: chunked")
        elif "content-length" not in names and (self.length or self.method in ("POST", "PUT")):
            lines.append(f"Content-Length: {self.length}")
        lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")

    def body_pieces(self) -> Iterator[bytes]:
        """The body on the wire, framed, a piece at a time."""
        pieces = self._raw_pieces()
        if not self.chunked:
            yield from pieces
            return
        for piece in pieces:
            if piece:
                yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        yield b"0\r\n\r\n"

    def _raw_pieces(self) -> Iterator[bytes]:
        size = self.chunked or 65536
        for i in range(0, len(self.body), size):
            yield self.body[i : i + size]
        zeros, left = bytes(size), self.zeros
        while left > 0:
            yield zeros[: min(size, left)]
            left -= size


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    elapsed: float

    def header(self, name: str) -> str | None:
        lname = name.lower()
        return next((v for k, v in self.headers if k.lower() == lname), None)

    @property
    def media_type(self) -> str:
        return (self.header("content-type") or "").split(";")[0].strip().lower()


class NoAnswer(Exception):
    """The server closed or stayed silent without a status line within the deadline."""


def exchange(port: int, request: RawRequest, *, deadline: float = 10.0) -> RawResponse:
    """Send ``request`` to 127.0.0.1:``port``; the whole answer must arrive within ``deadline``.

    Writing and reading interleave: a server that answers early (a ``413`` after the first
    megabyte) is heard at once, whatever is left of the body is not sent, and the elapsed
    time is when the answer was complete, not when the client gave up writing.
    """
    started = time.monotonic()
    until = started + deadline
    pieces = request.body_pieces()
    out = request.encode_head(f"127.0.0.1:{port}")
    sent = 0
    received = bytearray()
    closed = False
    with socket.create_connection(("127.0.0.1", port), timeout=deadline) as sock:
        sock.setblocking(False)
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
            writing = True
            while not closed and not _complete(received):
                left = until - time.monotonic()
                if left <= 0:
                    break
                for _, mask in selector.select(min(left, 0.5)):
                    if mask & selectors.EVENT_READ:
                        try:
                            data = sock.recv(65536)
                        except (BlockingIOError, InterruptedError):
                            data = None
                        except (ConnectionResetError, OSError):
                            closed = True
                            break
                        if data == b"":
                            closed = True
                        elif data:
                            received += data
                    if mask & selectors.EVENT_WRITE and writing:
                        if sent >= len(out):
                            out, sent = next(pieces, b""), 0
                        try:
                            sent += sock.send(out[sent : sent + 65536]) if out else 0
                        except (BlockingIOError, InterruptedError):
                            pass
                        except (BrokenPipeError, ConnectionResetError, OSError):
                            writing = False
                        if not out:
                            writing = False
                        if not writing:
                            selector.modify(sock, selectors.EVENT_READ)
    elapsed = time.monotonic() - started
    return _parse(bytes(received), elapsed)


def _complete(raw: bytearray) -> bool:
    """A whole response: the head, and the body its framing announces."""
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        return False
    head = bytes(raw[:end]).decode("latin-1").lower()
    body = len(raw) - end - 4
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip() == "content-length" and value.strip().isdigit():
            return body >= int(value.strip())
        if name.strip() == "transfer-encoding" and "chunked" in value:
            return raw.endswith(b"0\r\n\r\n")
    status = head[9:12]
    return status in ("204", "304") or status.startswith("1")


def _parse(raw: bytes, elapsed: float) -> RawResponse:
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        raise NoAnswer(f"no complete response after {elapsed:.1f}s: {raw[:200]!r}")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise NoAnswer(f"not a status line: {lines[0]!r}")
    headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
    response = RawResponse(int(parts[1]), headers, rest, elapsed)
    if (response.header("transfer-encoding") or "").lower() == "chunked":
        response.body = _dechunk(rest)
    elif (length := response.header("content-length")) is not None and length.isdigit():
        response.body = rest[: int(length)]
    return response


def _dechunk(data: bytes) -> bytes:
    out: list[bytes] = []
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out.append(data[:size])
        data = data[size + 2 :]
    return b"".join(out)


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")
