"""In-process Starlette app for the cross-adapter wire tests."""

from __future__ import annotations

from aauth_server_starlette import AAuth, identity
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.resource import ResourceConfig


def build_app(config: ResourceConfig) -> Starlette:
    aauth = AAuth(config)

    @aauth.protect()
    async def whoami(request: Request) -> JSONResponse:
        who = identity(request)
        return JSONResponse({"agent": who.agent if who else None})

    @aauth.protect(optional=True)
    def optional(request: Request) -> JSONResponse:
        who = identity(request)
        return JSONResponse({"agent": who.agent if who else None})

    return Starlette(
        routes=[
            Route("/whoami", whoami, methods=["GET", "POST"]),
            Route("/optional", optional, methods=["GET"]),
            *aauth.routes(),
        ]
    )


def send(config: ResourceConfig, request: HttpRequest) -> HttpResponse:
    return send_to(build_app(config), request)


def send_to(app: Starlette, request: HttpRequest) -> HttpResponse:
    """Send a neutral request through Starlette's in-process client, exactly as given."""
    with TestClient(app) as client:
        answer = client.request(
            request.method, request.url, headers=request.headers, content=request.body
        )
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in answer.headers.raw]
    return HttpResponse(answer.status_code, headers, answer.content)
