"""Issue 8 items 4, 7 and 10 on the example servers as real processes.

- A 200 MB body (declared, or chunked with no length) answers ``413`` problem+json before
  authentication, and no server's resident memory grows by more than 32 MB for it.
- A ``Host`` no URL can be built from (``[``, ``]``, ...) answers ``400`` on every AAuth
  route of every server, and never a 5xx on any path.
- The Django examples under ``--dev`` answer unknown paths ``404`` and unknown Hosts
  ``400``, never ``500``.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from aauth_server.agent import AgentProvider
from aauth_server.asgi import asgi_app
from tests.hostile_http.cases import PS_PAGES, PS_ROUTES, RESOURCE_ROUTES
from tests.hostile_http.rawhttp import RawRequest, exchange
from tests.hostile_http.servers import Fleet, Server
from tests.threaded_uvicorn import ThreadedUvicorn

MiB = 1 << 20
BAD_HOSTS = ("[", "]", "a]b", "[::1", "[zz]", "%", ":80", "")


def _problem(body: bytes) -> dict[str, object]:
    value: dict[str, object] = json.loads(body)
    return value


def _body_routes(server: Server) -> list[str]:
    if server.role == "resource":
        return ["/data", "/aauth/authorize", "/aauth/revoke"]
    return ["/person", "/token", "/revoke", "/interaction", "/mission", "/permission", "/audit"]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_200_mb_body_is_refused_with_413_and_bounded_memory(
    hostile_fleet: Fleet, chunked: bool
) -> None:
    for server in hostile_fleet.all:
        before = server.rss()
        for target in _body_routes(server):
            request = RawRequest(
                "POST",
                target,
                [("Content-Type", "application/json")],
                zeros=200 * MiB,
                chunked=65536 if chunked else 0,
            )
            response = exchange(server.port, request, deadline=30)
            assert response.status == 413, (server.name, target, response.body[:200])
            assert response.media_type == "application/problem+json"
            assert _problem(response.body)["error"] == "invalid_request"
        grown = (server.rss() - before) / MiB
        assert grown < 32, f"{server.name} grew by {grown:.0f} MB for 200 MB bodies"


def _upload_then_read(port: int, target: str, size: int) -> tuple[bytes, str | None]:
    """A client that sends a whole ``size``-byte body (over the limit) before reading a
    byte, then reads to the end: what it read, and the error that ended the read (None
    for a clean close).  A server that answers early and closes with body bytes unread
    resets the connection, and a reset discards whatever of its answer it had not sent
    yet (the flake: a ``413`` whose body never came).  One that drains the rest of the
    body (bounded) closes cleanly after the whole answer: Werkzeug's server does, the
    ASGI adapters and RequestLimits do (``aauth_server.asgi.linger``)."""
    head = (
        f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {size}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    received = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        chunk, sent = b"\0" * 65536, 0
        deadline = time.monotonic() + 10
        while sent < size and time.monotonic() < deadline:
            try:
                sent += sock.send(chunk[: size - sent])
            except BlockingIOError:
                time.sleep(0.005)
            except OSError:
                break  # reset: the server closed on unread bytes
        sock.settimeout(15)
        try:
            while not _answered(received) and (data := sock.recv(65536)):
                received += data
            sock.shutdown(socket.SHUT_WR)  # all sent: the server may close now
            while data := sock.recv(65536):
                received += data
        except OSError as exc:
            return bytes(received), f"{type(exc).__name__}: {exc}"
    return bytes(received), None


def _answered(raw: bytearray) -> bool:
    head, sep, body = bytes(raw).partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:] if sep else ():
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False


def test_the_413_body_always_arrives_and_the_connection_closes_cleanly(
    hostile_fleet: Fleet,
) -> None:
    for server in hostile_fleet.all:
        for target in _body_routes(server)[:2]:
            raw, error = _upload_then_read(server.port, target, 3 * MiB)
            where = (server.name, target, error, raw[:300])
            head, _, body = raw.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 413"), where
            assert json.loads(body)["error"] == "invalid_request", where
            assert error is None, where


def test_a_signed_body_just_over_the_limit_is_413(hostile_fleet: Fleet) -> None:
    for server in hostile_fleet.all:
        target = _body_routes(server)[0]
        body = b'{"x":"' + b"a" * MiB + b'"}'
        request = hostile_fleet.agent.sign(server.port, "POST", target, body=body)
        response = exchange(server.port, request)
        assert response.status == 413, (server.name, response.body[:200])
        at_limit = hostile_fleet.agent.sign(
            server.port, "POST", target, body=b" " * (MiB - 2) + b"{}"
        )
        assert exchange(server.port, at_limit).status != 413, server.name


def _routes(server: Server) -> list[tuple[str, str, bool]]:
    if server.role == "resource":
        listed = [(m, t, True) for m, t in RESOURCE_ROUTES]
        listed.append(("GET", "/.well-known/aauth-resource.json", True))
        listed.append(("GET", "/aauth/jwks.json", True))
    else:
        listed = [(m, t, True) for m, t in PS_ROUTES]
        listed += [(m, t, False) for m, t in PS_PAGES]
        listed.append(("GET", "/.well-known/aauth-person.json", True))
        listed.append(("GET", "/jwks.json", True))
    listed += [("GET", "/favicon.ico", False), ("GET", "/no/such/path", False)]
    return listed


def test_a_malformed_host_is_400_on_every_route(hostile_fleet: Fleet) -> None:
    for server in hostile_fleet.all:
        for method, target, ours in _routes(server):
            for host in BAD_HOSTS:
                request = RawRequest(
                    method, target, [("Host", host)], b"{}" if method == "POST" else b""
                )
                response = exchange(server.port, request)
                where = (server.name, method, target, host)
                assert response.status < 500, (where, response.body[:200])
                if ours:
                    assert response.status == 400, (where, response.status, response.body[:200])
                    if response.media_type == "application/problem+json":
                        assert _problem(response.body)["error"] == "invalid_request"
                    else:  # the HTTP parser refused it before any application code
                        assert response.header("signature-error") is None


def test_a_malformed_host_is_400_at_the_small_asgi_servers() -> None:
    holder: list[AgentProvider] = []
    server = ThreadedUvicorn(asgi_app(lambda request: holder[0].handle(request)), lifespan="off")
    holder.append(AgentProvider(server.origin, dev_loopback=True))
    server.start()
    try:
        for host in ("[", "a]b", "%"):
            for target in ("/.well-known/aauth-agent.json", "/nowhere"):
                response = exchange(server.port, RawRequest("GET", target, [("Host", host)]))
                assert response.status == 400, (host, target, response.body)
                assert _problem(response.body)["error"] == "invalid_request"
        big = RawRequest(
            "POST", "/dev/agent-token", [("Content-Type", "application/json")], zeros=2 * MiB
        )
        assert exchange(server.port, big).status == 413
    finally:
        server.stop()


def test_django_examples_answer_unknown_paths_404_and_unknown_hosts_400(
    hostile_fleet: Fleet,
) -> None:
    djangos = [s for s in hostile_fleet.all if s.framework == "django"]
    assert len(djangos) == 2
    for server in djangos:
        # Chromium asks every page for /favicon.ico: DEBUG's 404 page, not a 500.
        assert exchange(server.port, RawRequest("GET", "/favicon.ico")).status == 404
        for host in ("evil.example", "evil.example:80", "[", "127.0.0.1:1:2"):
            response = exchange(server.port, RawRequest("GET", "/favicon.ico", [("Host", host)]))
            assert response.status == 400, (server.name, host, response.body[:200])
