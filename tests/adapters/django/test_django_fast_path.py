"""The Django adapter's cheap protected request: a body is read only when the request has
one, and a Host value already judged under the same settings is not judged again."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from aauth_server_django import convert, use_guard
from asgiref.sync import async_to_sync
from django.core.handlers.asgi import ASGIRequest
from django.core.handlers.wsgi import WSGIRequest
from django.test import AsyncClient, override_settings
from django.test.client import FakePayload

from aauth_server.errors import RequestRejected
from aauth_server.http import HttpRequest, HttpResponse
from tests.adapters.harness_django import configure_django, guard_for, send
from tests.support import World

configure_django()


def _asgi_request(
    headers: list[tuple[bytes, bytes]], *, http_version: str = "1.1", body: bytes = b""
) -> ASGIRequest:
    scope = {
        "type": "http",
        "http_version": http_version,
        "method": "POST",
        "scheme": "https",
        "path": "/whoami",
        "raw_path": b"/whoami",
        "query_string": b"",
        "server": ("resource.example", 443),
        "headers": [(b"host", b"resource.example"), *headers],
    }
    return ASGIRequest(scope, io.BytesIO(body))


def _wsgi_request(**environ: Any) -> WSGIRequest:
    base = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/whoami",
        "SERVER_NAME": "resource.example",
        "SERVER_PORT": "443",
        "HTTP_HOST": "resource.example",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.url_scheme": "https",
    }
    return WSGIRequest({**base, **environ})


# -- which requests have a body -------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "http_version", "expected"),
    [
        ([], "1.1", True),
        ([], "1.0", True),
        ([(b"content-length", b"0")], "1.1", False),
        ([(b"content-length", b"5")], "1.1", False),
        ([(b"Content-Length", b"5")], "1.1", False),  # ASGI names should be lower-case
        ([(b"transfer-encoding", b"chunked")], "1.1", False),
        ([], "2", False),  # HTTP/2 frames bodies itself: read whatever came
        ([], "3", False),
    ],
)
def test_asgi_request_has_no_body_only_when_http1_says_so(
    headers: list[tuple[bytes, bytes]], http_version: str, expected: bool
) -> None:
    assert convert.has_no_body(_asgi_request(headers, http_version=http_version)) is expected


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"SERVER_PROTOCOL": "HTTP/1.1"}, True),
        ({"SERVER_PROTOCOL": "HTTP/1.0"}, True),
        ({"SERVER_PROTOCOL": "HTTP/1.1", "CONTENT_LENGTH": "3"}, False),
        ({"SERVER_PROTOCOL": "HTTP/1.1", "HTTP_TRANSFER_ENCODING": "chunked"}, False),
        ({"SERVER_PROTOCOL": "HTTP/2.0"}, False),
        ({}, False),  # a server that does not say its protocol: read
    ],
)
def test_wsgi_request_has_no_body_only_when_http1_says_so(
    environ: dict[str, str], expected: bool
) -> None:
    assert convert.has_no_body(_wsgi_request(**environ)) is expected


def test_an_unframed_http1_request_is_not_read() -> None:
    # Bytes a misbehaving server left in the stream are no body of this request: HTTP/1.1
    # delimits a request body only by Content-Length or Transfer-Encoding.
    request = _asgi_request([], body=b"stray")
    guard = guard_for(World().resource_config())
    assert convert.to_neutral(request, guard).body == b""
    assert request.read() == b"stray"  # left where it was


async def _send_unframed(request: HttpRequest, *, http_version: str, framing: str) -> HttpResponse:
    """Through AsyncClient with the body delivered but no Content-Length line."""
    url = urlsplit(request.url)
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in request.headers]
    headers.insert(0, (b"host", url.netloc.encode("latin-1")))
    if framing:
        headers.append((b"transfer-encoding", framing.encode("latin-1")))
    response = await AsyncClient().request(
        method=request.method,
        path=unquote(url.path),
        raw_path=url.path.encode("latin-1"),
        query_string=b"",
        scheme=url.scheme,
        server=(url.hostname or "", 443),
        headers=headers,
        http_version=http_version,
        _body_file=FakePayload(request.body),
    )
    return HttpResponse(response.status_code, list(response.items()), response.content)


@pytest.mark.parametrize(
    ("http_version", "framing"), [("1.1", "chunked"), ("2", "")], ids=["chunked", "http2"]
)
def test_a_body_without_content_length_is_read_and_verified(
    http_version: str, framing: str
) -> None:
    world = World()
    config = world.resource_config()
    request = world.signed("POST", "/whoami-async", body=b'{"n":1}')
    with override_settings(ROOT_URLCONF="tests.adapters.django.async_urls"):
        use_guard(guard_for(config))
        try:
            # The signature covers content-digest: it verifies only over the real body.
            ok = async_to_sync(_send_unframed)(request, http_version=http_version, framing=framing)
            tampered = async_to_sync(_send_unframed)(
                replace(request, body=b'{"n":2}'), http_version=http_version, framing=framing
            )
        finally:
            use_guard(None)
    assert ok.status == 200, ok.body
    assert json.loads(ok.body)["agent"] == world.agent_id
    assert tampered.status == 401


# -- the Host verdicts --------------------------------------------------------------------


def test_a_judged_host_is_judged_again_when_allowed_hosts_change() -> None:
    world = World()
    config = world.resource_config()
    request = world.signed()
    assert send(config, request).status == 200  # resource.example: allowed, remembered
    with override_settings(ALLOWED_HOSTS=["other.example"]):
        assert send(config, request).status == 400
    assert send(config, request).status == 200


def test_debug_localhost_verdict_follows_debug() -> None:
    request = _wsgi_request(HTTP_HOST="localhost:8000")
    with override_settings(ALLOWED_HOSTS=[], DEBUG=True):
        assert convert.request_host(request) == "localhost:8000"
        assert convert.request_host(request) == "localhost:8000"  # from the cache
    with override_settings(ALLOWED_HOSTS=[], DEBUG=False), pytest.raises(RequestRejected):
        convert.request_host(request)


def test_a_forwarded_host_is_always_judged() -> None:
    request = _wsgi_request(HTTP_X_FORWARDED_HOST="evil.example")
    with override_settings(ALLOWED_HOSTS=["resource.example"]):
        plain = _wsgi_request()
        assert convert.request_host(plain) == "resource.example"  # remembered
        with override_settings(USE_X_FORWARDED_HOST=True), pytest.raises(RequestRejected):
            convert.request_host(request)
        # Without USE_X_FORWARDED_HOST Django takes the Host line, as before.
        assert convert.request_host(request) == "resource.example"


def test_a_malformed_or_disallowed_host_is_refused_every_time() -> None:
    with override_settings(ALLOWED_HOSTS=["resource.example"]):
        for _ in range(2):
            with pytest.raises(RequestRejected):
                convert.request_host(_wsgi_request(HTTP_HOST="evil.example"))
            with pytest.raises(RequestRejected):
                convert.request_host(_wsgi_request(HTTP_HOST="resource.example@evil"))
    with override_settings(ALLOWED_HOSTS=["*"]):
        for _ in range(2):  # allowed by the pattern, still no URL can be built from it
            with pytest.raises(RequestRejected):
                convert.request_host(_wsgi_request(HTTP_HOST="a[b]"))
    assert not any(key[0] in ("evil.example", "a[b]") for key in convert._VALID_HOSTS)


def test_the_host_cache_stays_bounded() -> None:
    with override_settings(ALLOWED_HOSTS=["*"]):
        for n in range(convert._VALID_HOSTS_MAX + 10):
            host = f"h{n}.example"
            assert convert.request_host(_wsgi_request(HTTP_HOST=host)) == host
    assert len(convert._VALID_HOSTS) <= convert._VALID_HOSTS_MAX
