"""Issue 8 item 5: one depth-limited JSON parser for every AAuth request body.

A 4 KB body nested 2,000 deep, signed by a valid agent (or server), made the PS token
endpoints, the resource authorization endpoint and both revocation endpoints answer a plain
500 (``RecursionError``).  Every such body is now ``400 invalid_request``, as is anything
nested deeper than 32 levels.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest

from aauth_server.http import HttpResponse
from tests.person.ps_harness import PsWorld, sender
from tests.resource.core_harness import CoreApp
from tests.support import World

DEEP = {
    "array-2000": b'{"resource":' + b"[" * 2000 + b"]" * 2000 + b"}",
    "object-2000": b'{"a":' * 2000 + b"1" + b"}" * 2000,
    "top-level-100000": b"[" * 100_000 + b"]" * 100_000,
    # An otherwise good request with one member nested 33 deep (json.loads takes it).
    "just-past-the-limit": b'{"resource":"https://resource.example","scope":"data.read",'
    b'"capabilities":["interaction"],"x":' + b"[" * 32 + b"]" * 32 + b"}",
}


def _invalid_request(response: HttpResponse) -> None:
    assert response.status == 400, response.body[:200]
    assert response.header("content-type") == "application/problem+json"
    assert json.loads(response.body)["error"] == "invalid_request"


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("body", list(DEEP.values()), ids=list(DEEP))
@pytest.mark.parametrize("path", ["/person", "/token", "/interaction"])
def test_ps_endpoints_refuse_deep_bodies(path: str, body: bytes, mode: str) -> None:
    pw = PsWorld()
    pw.bind()
    send = sender(pw.app, mode)
    _invalid_request(send(pw.post(path, body)))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_ps_pending_url_refuses_a_deep_body(mode: str) -> None:
    pw = PsWorld()
    send = sender(pw.app, mode)
    started = send(pw.person_request())
    assert started.status == 202
    location = started.header("location") or ""
    _invalid_request(send(pw.poll(location, body=DEEP["array-2000"])))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_ps_revocation_endpoint_refuses_a_deep_body(mode: str) -> None:
    pw = PsWorld()
    send = sender(pw.app, mode)
    request = pw.server_signed(
        b'{"jti":' + b"[" * 2000 + b"]" * 2000 + b"}",
        issuer=pw.world.provider.issuer,
        dwk="aauth-agent.json",
        key=pw.world.provider.key,
    )
    _invalid_request(send(request))


def _resource(mode: str) -> tuple[World, Callable[..., HttpResponse]]:
    world = World()
    app = CoreApp(world.resource_config())
    send = app.send if mode == "sync" else (lambda r: asyncio.run(app.asend(r)))
    return world, send


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("body", list(DEEP.values()), ids=list(DEEP))
def test_resource_authorization_endpoint_refuses_deep_bodies(body: bytes, mode: str) -> None:
    world, send = _resource(mode)
    request = world.signed("POST", "/aauth/authorize", body=body, token=world.person_token())
    _invalid_request(send(request))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_resource_revocation_endpoint_refuses_a_deep_body(mode: str) -> None:
    world, send = _resource(mode)
    request = world.server_signed(
        "POST", "/aauth/revoke", b'{"jti":' + b"[" * 2000 + b"]" * 2000 + b"}"
    )
    _invalid_request(send(request))


def test_the_parser_counts_nesting_without_recursing() -> None:
    from aauth_server import safejson

    assert safejson.nesting_depth(b'{"a":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}') == 1
    assert safejson.nesting_depth(b'["\\"[[[[", [[]]]') == 3
    at_the_limit = safejson.loads(b'{"a":' + b"[" * 31 + b"]" * 31 + b"}")  # 32 levels
    assert json.dumps(at_the_limit, separators=(",", ":")) == '{"a":' + "[" * 31 + "]" * 31 + "}"
    with pytest.raises(ValueError):
        safejson.loads(b"[" * 1_000_000)
    with pytest.raises(ValueError):
        safejson.loads(b"[" * 33 + b"]" * 33)
    assert safejson.loads('{"a": 1}') == {"a": 1}
