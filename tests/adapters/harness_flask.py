"""The Flask side of the cross-adapter wire tests: one app, the in-process test client."""

from __future__ import annotations

from urllib.parse import urlsplit

from aauth_server_flask import AAuth, to_flask_response
from flask import Flask, Response, g

from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.resource import ResourceConfig


def _json(payload: object) -> Response:
    # The core's serialiser, so the body bytes match the other frameworks exactly.
    return to_flask_response(HttpResponse.json(200, payload))


def build_app(config: ResourceConfig) -> Flask:
    app = Flask("aauth_harness")
    aauth = AAuth(app, config=config)

    @app.route("/whoami", methods=["GET", "POST"])
    @aauth.protect()
    def whoami() -> Response:
        return _json({"agent": g.aauth.agent})

    @app.get("/optional")
    @aauth.protect(optional=True)
    async def optional() -> Response:
        return _json({"agent": g.aauth.agent if g.aauth else None})

    return app


def send(config: ResourceConfig, request: HttpRequest) -> HttpResponse:
    parts = urlsplit(request.url)
    client = build_app(config).test_client()
    response = client.open(
        parts.path,
        method=request.method,
        base_url=f"{parts.scheme}://{parts.netloc}",
        query_string=parts.query or None,
        headers=request.headers,
        data=request.body,
    )
    return HttpResponse(response.status_code, response.headers.to_wsgi_list(), response.get_data())
