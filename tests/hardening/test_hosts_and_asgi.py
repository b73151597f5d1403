"""Issue 8 items 4 and 7 in the core: Host values no URL can be built from, and the ASGI
request limits (the small servers' shell and the middleware in front of Django)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from aauth_server import asgi, http
from aauth_server.errors import SignatureFailure
from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.signatures.message import parse_signature, signature_base
from tests.person.ps_harness import PsWorld
from tests.resource.core_harness import CoreApp
from tests.support import World

VALID = [
    "a.example",
    "A.Example:8443",
    "127.0.0.1",
    "127.0.0.1:1",
    "[::1]",
    "[::1]:80",
    "[2001:db8::1]",
    "xn--bcher-kva.example",
    "a%2Db.example",
    "a.example.",
    "host:",
]
INVALID = [
    "",
    "[",
    "]",
    "a]b",
    "[::1",
    "::1]",
    "[zz]",
    "[]",
    "a b",
    "a\tb",
    "a@b",
    "a/b",
    "a?b",
    "a#b",
    "a:b:c",
    "a,b",
    "a.example, b.example",
    "h\u00e9st",
    "%",
    "%zz",
    ":80",
    "\\evil",
    "x" * 256,
]


@pytest.mark.parametrize("host", VALID)
def test_valid_hosts_pass(host: str) -> None:
    assert http.checked_host(host) == host


@pytest.mark.parametrize("host", INVALID, ids=repr)
def test_invalid_hosts_are_refused(host: str) -> None:
    with pytest.raises(http.MalformedHost):
        http.checked_host(host)
    with pytest.raises(http.MalformedHost):
        http.public_url("http", host, "/x", public_origin=None, default_host="d.example")


def test_a_missing_host_uses_the_issuer_and_public_origin_wins() -> None:
    assert (
        http.public_url("http", None, "/x", public_origin=None, default_host="d.example")
        == "http://d.example/x"
    )
    assert (
        http.public_url(
            "http", "a.example", "/x", public_origin="https://p.example", default_host="d"
        )
        == "https://p.example/x"
    )


@pytest.mark.parametrize("host", INVALID, ids=repr)
def test_a_malformed_host_is_refused_even_when_public_origin_wins(host: str) -> None:
    with pytest.raises(http.MalformedHost):
        http.public_url("http", host, "/x", public_origin="https://p.example", default_host="d")


@pytest.mark.parametrize("hosts", [["a.example", "b.example"], ["a,b"], ["a b"], ["[::1"]])
def test_request_host_refuses_two_lines_commas_and_malformed_values(hosts: list[str]) -> None:
    request = HttpRequest("GET", "https://p.example/x", [("Host", h) for h in hosts])
    with pytest.raises(http.MalformedHost):
        http.request_host(request)
    assert http.request_host(HttpRequest("GET", "https://p.example/x", [("Host", "a:1")])) == "a:1"
    assert http.request_host(HttpRequest("GET", "https://p.example/x")) is None


@pytest.mark.parametrize(
    "url", ["http://[/whoami?x", "http://]/whoami", "http://a]b:1/whoami", "http://[x"]
)
def test_the_core_never_raises_on_an_unparseable_authority(url: str) -> None:
    request = HttpRequest("GET", url)
    assert request.path in ("/whoami", "/")
    world = World()
    signed = world.signed()
    broken = HttpRequest("GET", url, signed.headers)
    with pytest.raises(SignatureFailure) as failed:
        signature_base(broken, parse_signature(broken))
    assert failed.value.error == "invalid_signature"
    response = CoreApp(world.resource_config()).send(broken)
    # The signature cannot verify (or there is no such route): never a 500.
    assert response.status == (401 if request.path == "/whoami" else 404)
    assert PsWorld().app.send(
        HttpRequest("GET", url.replace("/whoami", "/.well-known/aauth-person.json"))
    ).status in (200, 404)


# -- the ASGI shell and RequestLimits ----------------------------------------------------------


def _call(
    app: Any, headers: list[tuple[bytes, bytes]], chunks: list[bytes], path: str = "/x"
) -> tuple[int, bytes, int]:
    """Run one ASGI request; returns (status, body, bytes the app was given)."""
    sent: list[dict[str, Any]] = []
    queue = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "headers": headers,
        "query_string": b"",
        "scheme": "http",
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body, getattr(app, "_given", 0)


class _ReadsEverything:
    """An app that, like Django's ASGI handler, reads the whole body before answering."""

    def __init__(self) -> None:
        self.given = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            self.given += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def test_request_limits_stop_a_body_at_the_limit() -> None:
    inner = _ReadsEverything()
    app = asgi.RequestLimits(inner, max_body=1000)
    status, body, _ = _call(app, [(b"host", b"a.example")], [b"x" * 600, b"x" * 600, b"x" * 600])
    assert status == 413 and json.loads(body)["error"] == "invalid_request"
    assert inner.given <= 1000 + 600  # it never saw past the chunk that crossed the limit
    declared = _ReadsEverything()
    status, _, _ = _call(
        asgi.RequestLimits(declared, max_body=1000), [(b"content-length", b"5000")], [b""]
    )
    assert status == 413 and declared.given == 0
    fine = _ReadsEverything()
    assert _call(asgi.RequestLimits(fine, max_body=1000), [], [b"x" * 1000])[0] == 200


@pytest.mark.parametrize(
    "hosts", [[b"["], [b"a]b"], [b"a.example", b"b.example"], [b"evil.example"]]
)
def test_request_limits_refuse_bad_or_unknown_hosts(hosts: list[bytes]) -> None:
    inner = _ReadsEverything()
    app = asgi.RequestLimits(inner, allowed_hosts=["a.example", "127.0.0.1"])
    status, body, _ = _call(app, [(b"host", h) for h in hosts], [b""])
    assert status == 400 and json.loads(body)["error"] == "invalid_request" and inner.given == 0
    assert (
        _call(
            asgi.RequestLimits(_ReadsEverything(), allowed_hosts=["a.example"]),
            [(b"host", b"A.example:8000")],
            [b""],
        )[0]
        == 200
    )


def test_the_small_server_shell_answers_400_and_413_as_problems() -> None:
    app = asgi.asgi_app(lambda request: HttpResponse(200, [], request.body), max_body=10)
    assert _call(app, [(b"host", b"[")], [b""])[0] == 400
    status, body, _ = _call(app, [(b"host", b"a.example")], [b"x" * 11])
    assert status == 413 and json.loads(body)["error"] == "invalid_request"
    assert _call(app, [(b"host", b"a.example"), (b"content-length", b"99")], [b""])[0] == 413
    assert _call(app, [(b"host", b"a.example")], [b"x" * 10])[:2] == (200, b"x" * 10)
