"""The Flask adapter's cheap protected request: a body is read only when the request has
one, and the conversion works on the request object as on Flask's ``request`` proxy."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import pytest
from aauth_server_flask import convert
from flask import request
from werkzeug.test import EnvironBuilder, run_wsgi_app

from aauth_server.http import HttpRequest
from tests.adapters.harness_flask import app_for, guard_for
from tests.support import World


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"SERVER_PROTOCOL": "HTTP/1.1"}, True),
        ({"SERVER_PROTOCOL": "HTTP/1.0"}, True),
        # http.server-based servers (Werkzeug's) always set the key, empty without a length.
        ({"SERVER_PROTOCOL": "HTTP/1.1", "CONTENT_LENGTH": ""}, True),
        ({"SERVER_PROTOCOL": "HTTP/1.1", "CONTENT_LENGTH": "0"}, False),
        ({"SERVER_PROTOCOL": "HTTP/1.1", "CONTENT_LENGTH": "7"}, False),
        ({"SERVER_PROTOCOL": "HTTP/1.1", "HTTP_TRANSFER_ENCODING": "chunked"}, False),
        ({"SERVER_PROTOCOL": "HTTP/1.1", "HTTP_TRANSFER_ENCODING": ""}, False),
        ({"SERVER_PROTOCOL": "HTTP/2"}, False),
        ({}, False),  # a server that does not say its protocol: read
    ],
)
def test_has_no_body_only_when_http1_says_so(environ: dict[str, str], expected: bool) -> None:
    assert convert.has_no_body(environ) is expected


def _environ(signed: HttpRequest, **overrides: Any) -> dict[str, Any]:
    """A WSGI environ for ``signed`` with the body in ``wsgi.input`` and no CONTENT_LENGTH,
    as gunicorn hands over a chunked body."""
    url = urlsplit(signed.url)
    environ = EnvironBuilder(
        path=url.path,
        base_url=f"{url.scheme}://{url.netloc}",
        method=signed.method,
        headers=signed.headers,
    ).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ.update({"wsgi.input": io.BytesIO(signed.body), "wsgi.input_terminated": True})
    environ.update(overrides)
    return environ


@pytest.mark.parametrize(
    "overrides",
    [
        {"HTTP_TRANSFER_ENCODING": "chunked"},
        {"SERVER_PROTOCOL": "HTTP/2"},
    ],
    ids=["chunked", "http2"],
)
def test_a_body_without_content_length_is_read_and_verified(overrides: dict[str, str]) -> None:
    world = World()
    config = world.resource_config()
    app = app_for(config)
    signed = world.signed("POST", "/whoami", body=b'{"n":1}')
    # The signature covers content-digest: it verifies only over the real body.
    body, status, _ = run_wsgi_app(app, _environ(signed, **overrides))
    assert status.startswith("200"), b"".join(body)
    assert json.loads(b"".join(body))["agent"] == world.agent_id
    tampered = replace(signed, body=b'{"n":2}')
    _, status, _ = run_wsgi_app(app, _environ(tampered, **overrides))
    assert status.startswith("401")


def test_an_unframed_http1_request_is_not_read() -> None:
    # Bytes a misbehaving server left in the stream are no body of this request: HTTP/1.1
    # delimits a request body only by Content-Length or Transfer-Encoding.
    world = World()
    app = app_for(world.resource_config())
    environ = _environ(world.signed("POST", "/whoami"))
    environ["wsgi.input"] = io.BytesIO(b"stray")
    with app.request_context(environ):
        current = request._get_current_object()  # type: ignore[attr-defined]
        assert convert.to_http_request(current, guard_for(world.resource_config())).body == b""
        assert environ["wsgi.input"].read() == b"stray"  # left where it was


def test_the_request_object_and_the_proxy_convert_alike() -> None:
    world = World()
    config = world.resource_config()
    app = app_for(config)
    guard = guard_for(config)
    signed = world.signed("POST", "/whoami", body=b'{"n":1}')
    for framing in ({"HTTP_TRANSFER_ENCODING": "chunked"}, {}):
        with app.request_context(_environ(signed, **framing)):
            by_proxy = convert.to_http_request(request, guard)
        with app.request_context(_environ(signed, **framing)):
            current = request._get_current_object()  # type: ignore[attr-defined]
            direct = convert.to_http_request(current, guard)
        assert (by_proxy.method, by_proxy.url, by_proxy.headers, by_proxy.body) == (
            direct.method,
            direct.url,
            direct.headers,
            direct.body,
        )
        assert direct.body == (signed.body if framing else b"")
