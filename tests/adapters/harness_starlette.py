"""In-process Starlette app for the cross-adapter wire tests (the routes of ``mode_scenarios``)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from aauth_server_starlette import AAuth, identity
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from aauth_server.http import HttpRequest, HttpResponse, json_bytes
from aauth_server.resource import (
    PersonIdentity,
    ResourceConfig,
    ResourceGuard,
    SessionIdentity,
)

#: Apps built per config object: ``before`` requests and the scenario share one app.
_APPS: OrderedDict[int, tuple[ResourceConfig, AAuth, Starlette]] = OrderedDict()
_CACHED = 32


def json_response(payload: Any) -> Response:
    return Response(json_bytes(payload), media_type="application/json")


def _person(request: Request) -> PersonIdentity:
    who = identity(request, PersonIdentity)
    assert who is not None
    return who


def build_app(config: ResourceConfig) -> tuple[AAuth, Starlette]:
    aauth = AAuth(config)

    @aauth.protect()
    async def whoami(request: Request) -> Response:
        who = identity(request)
        return json_response({"agent": who.agent if who else None})

    @aauth.protect(optional=True)
    def optional(request: Request) -> Response:
        who = identity(request)
        return json_response({"agent": who.agent if who else None})

    @aauth.protect("person-token")
    async def profile(request: Request) -> Response:
        who = _person(request)
        return json_response({"ps": who.ps, "sub": who.sub})

    @aauth.protect("auth-token", scope="data.read")
    async def data_read(request: Request) -> Response:
        return json_response({"scope": _person(request).scope})

    @aauth.protect("auth-token", scope="data.write")
    def data_write(request: Request) -> Response:
        return json_response({"scope": _person(request).scope, "written": True})

    @aauth.protect("auth-token", scope="data.read", deferred=True)
    async def deferred(request: Request) -> Response:
        return json_response({"scope": _person(request).scope, "deferred": True})

    @aauth.protect("session-token")
    async def session(request: Request) -> Response:
        who = identity(request, SessionIdentity)
        assert who is not None
        return json_response({"agent": who.agent.agent, "account": who.account})

    app = Starlette(
        routes=[
            Route("/whoami", whoami, methods=["GET", "POST"]),
            Route("/optional", optional, methods=["GET"]),
            Route("/profile", profile, methods=["GET"]),
            Route("/data", data_read, methods=["GET"]),
            Route("/data", data_write, methods=["POST"]),
            Route("/deferred", deferred, methods=["GET"]),
            Route("/session", session, methods=["GET"]),
            *aauth.routes(),
        ]
    )
    return aauth, app


def _cached(config: ResourceConfig) -> tuple[AAuth, Starlette]:
    entry = _APPS.get(id(config))
    # The config is kept in the entry, so its id cannot be reused while cached.
    if entry is None or entry[0] is not config:
        aauth, app = build_app(config)
        entry = (config, aauth, app)
        _APPS[id(config)] = entry
        while len(_APPS) > _CACHED:
            _APPS.popitem(last=False)
    return entry[1], entry[2]


def guard_for(config: ResourceConfig) -> ResourceGuard:
    """The guard of the app ``send(config, ...)`` talks to (to approve sessions, ...)."""
    return _cached(config)[0].guard


def send(config: ResourceConfig, request: HttpRequest) -> HttpResponse:
    return send_to(_cached(config)[1], request)


def send_to(app: Starlette, request: HttpRequest) -> HttpResponse:
    """Send a neutral request through Starlette's in-process client, exactly as given."""
    with TestClient(app) as client:
        answer = client.request(
            request.method, request.url, headers=request.headers, content=request.body
        )
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in answer.headers.raw]
    return HttpResponse(answer.status_code, headers, answer.content)
