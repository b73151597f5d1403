"""The Starlette conversion's shortcut: an HTTP/1.x request that declares no body (no
Content-Length, no Transfer-Encoding) is not waited for.  Every other request is read, and
the result always equals reading the body as Starlette does (the reference)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aauth_server_starlette.convert import to_http_request
from starlette.requests import Request

from aauth_server.http import HttpRequest


class _Origin:
    def public_url(self, scheme: str, host: str | None, target: str) -> str:
        return f"{scheme}://{host or 'default.example'}{target}"


def _request(http_version: str, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> Request:
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i + 1 < len(chunks)}
        for i, chunk in enumerate(chunks or [b""])
    ]
    received: list[int] = []

    async def receive() -> dict[str, Any]:
        received.append(1)
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    scope = {
        "type": "http",
        "http_version": http_version,
        "method": "POST",
        "scheme": "https",
        "path": "/p",
        "raw_path": b"/p",
        "query_string": b"",
        "headers": headers,
    }
    request = Request(scope, receive)
    request.state.received = received
    return request


async def _reference(request: Request) -> HttpRequest:
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]]
    host = next((v for k, v in headers if k.lower() == "host"), None)
    url = _Origin().public_url("https", host, "/p")
    return HttpRequest(request.method, url, headers, await request.body())


CASES = [
    ("1.1", [(b"host", b"a.example")], [b""], False),
    ("1.0", [(b"host", b"a.example")], [b""], False),
    ("1.1", [(b"host", b"a.example"), (b"content-length", b"3")], [b"abc"], True),
    ("1.1", [(b"Host", b"a.example"), (b"Content-Length", b"3")], [b"abc"], True),
    ("1.1", [(b"host", b"a.example"), (b"transfer-encoding", b"chunked")], [b"a", b"bc"], True),
    (
        "1.1",
        [(b"content-length", b"0"), (b"host", b"a.example")],
        [b""],
        True,
    ),
    ("2", [(b"host", b"a.example")], [b"abc"], True),
    ("2", [], [b""], True),
    ("3", [(b"host", b"a.example")], [b"x"], True),
]


@pytest.mark.parametrize(("version", "headers", "chunks", "reads"), CASES)
def test_conversion_equals_reading_the_body(
    version: str, headers: list[tuple[bytes, bytes]], chunks: list[bytes], reads: bool
) -> None:
    fast_request = _request(version, headers, chunks)
    fast = asyncio.run(to_http_request(fast_request, _Origin()))
    reference = asyncio.run(_reference(_request(version, headers, chunks)))
    assert (fast.method, fast.url, fast.headers, fast.body) == (
        reference.method,
        reference.url,
        reference.headers,
        reference.body,
    )
    # Only a request that declares no body skips the wait for it.
    assert bool(fast_request.state.received) is reads


def test_a_second_host_line_is_refused_before_any_body_is_read() -> None:
    from aauth_server.errors import RequestRejected

    headers = [(b"content-length", b"0"), (b"host", b"a.example"), (b"host", b"b.example")]
    request = _request("1.1", headers, [b""])
    with pytest.raises(RequestRejected) as info:
        asyncio.run(to_http_request(request, _Origin()))
    assert info.value.status == 400 and request.state.received == []


# -- the protected endpoint's shortcut (issue 9 item 6): once an agent's token is cached, the
# Starlette wrapper answers from ResourceGuard.check_agent_fast; every answer, good or bad, is
# the one the full path gives.


def _agent_requests(world: Any) -> list[tuple[str, HttpRequest]]:
    from dataclasses import replace

    from aauth_server.keys.jwk import PrivateKey
    from tests.support import with_header

    good = world.signed()
    return [
        ("good", good),
        ("again", world.signed()),
        ("forged", world.signed(key=PrivateKey.generate("Ed25519"))),
        ("moved", replace(good, url=good.url.replace("/whoami", "/whoami?x"))),
        ("stale", world.signed(created=world.now() - 120)),
        ("uncovered", world.signed(components=["@method", "@authority", "@path"])),
        ("bad-sig", with_header(good, "Signature", "sig=:AAAA:")),
        ("body", world.signed("POST", body=b'{"a":1}')),
        ("aauth-authz", with_header(good, "Authorization", "AAuth x")),
    ]


def test_the_starlette_shortcut_answers_as_the_full_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from aauth_server.clock import FixedClock
    from aauth_server.resource import ResourceGuard
    from tests.adapters.harness_starlette import build_app, send_to
    from tests.core.test_fast_paths import _without_fast_paths
    from tests.support import World

    world = World(clock=FixedClock(1_800_000_000))
    calls: list[object] = []
    original = ResourceGuard.check_agent_fast

    def counted(self: ResourceGuard, request: HttpRequest) -> object:
        answer = original(self, request)
        calls.append(answer)
        return answer

    answers = {}
    for fast in (True, False):
        with monkeypatch.context() as patched:
            if fast:
                patched.setattr(ResourceGuard, "check_agent_fast", counted)
            else:
                _without_fast_paths(patched)
            _, app = build_app(world.resource_config())
            answers[fast] = [
                (name, send_to(app, request)) for name, request in _agent_requests(world)
            ]
    for (name, fast_answer), (_, full_answer) in zip(answers[True], answers[False], strict=True):
        assert (fast_answer.status, fast_answer.body) == (full_answer.status, full_answer.body), (
            name
        )
        for header in ("signature-error", "aauth-requirement", "link", "content-type"):
            assert fast_answer.header(header) == full_answer.header(header), (name, header)
    assert [status for _, status in ((n, a.status) for n, a in answers[True])][:2] == [200, 200]
    assert any(answer is not None for answer in calls)  # the shortcut answered the second call
