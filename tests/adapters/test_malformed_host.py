"""A malformed Host (brackets, a comma, a space, two Host lines) is refused with ``400``
problem+json ``invalid_request`` by every adapter, also when ``public_origin`` names the
URL: the request is one no client sends, whatever the deployment.  In process through each
framework's client, and on the wire (raw bytes) through a real uvicorn."""

from __future__ import annotations

import json

import pytest
from aauth_server_starlette import AAuth

from aauth_server.http import HttpRequest, HttpResponse
from tests.adapters import harness_django, harness_flask, harness_starlette
from tests.adapters.starlette.test_starlette import _views_app
from tests.hostile_http.rawhttp import RawRequest, exchange
from tests.support import RESOURCE, World
from tests.threaded_uvicorn import ThreadedUvicorn

HARNESSES = {
    "starlette": harness_starlette.send,
    "flask": harness_flask.send,
    "django": harness_django.send,
}
ODD = ["[", "]", "[::1", "a]b", "a,b", "a b", "a:b:c", "[zz]"]


def _with_host(request: HttpRequest, host: str) -> HttpRequest:
    headers = [(k, v) for k, v in request.headers if k.lower() != "host"] + [("Host", host)]
    return HttpRequest(request.method, request.url, headers, request.body)


def _refused(response: HttpResponse) -> bytes:
    assert response.status == 400, response.body
    assert response.header("content-type") == "application/problem+json"
    assert json.loads(response.body)["error"] == "invalid_request"
    return response.body


@pytest.mark.parametrize("host", ODD, ids=repr)
@pytest.mark.parametrize("public_origin", [RESOURCE, None], ids=["public_origin", "host"])
def test_every_adapter_refuses_a_malformed_host(host: str, public_origin: str | None) -> None:
    world = World()
    config = world.resource_config(public_origin=public_origin)
    request = _with_host(world.signed(), host)
    bodies = {name: _refused(send(config, request)) for name, send in HARNESSES.items()}
    assert len(set(bodies.values())) == 1, bodies


def test_a_real_uvicorn_refuses_odd_hosts_with_public_origin() -> None:
    world = World()
    aauth = AAuth(world.resource_config(public_origin=RESOURCE))
    server = ThreadedUvicorn(_views_app(aauth), lifespan="off")
    server.start()
    try:
        for hosts in [[h] for h in ODD] + [["a.example", "b.example"]]:
            for target in ("/sync", "/async", "/.well-known/aauth-resource.json"):
                request = RawRequest("GET", target, [("Host", h) for h in hosts])
                answer = exchange(server.port, request)
                where = (hosts, target, answer.status, answer.body[:200])
                assert answer.status == 400, where
                assert answer.media_type == "application/problem+json", where
                assert json.loads(answer.body)["error"] == "invalid_request", where
        # A well-formed Host still reaches the app (public_origin names the URL).
        fine = exchange(server.port, RawRequest("GET", "/.well-known/aauth-resource.json"))
        assert fine.status == 200
    finally:
        server.stop()
