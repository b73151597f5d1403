"""The Flask side of the cross-adapter wire tests: one app per config, the test client."""

from __future__ import annotations

from collections import Counter, OrderedDict
from urllib.parse import urlsplit

from aauth_server_flask import AAuth, to_flask_response
from flask import Flask, Response, g

from aauth_server.http import HttpRequest, HttpResponse, json_bytes
from aauth_server.resource import ResourceConfig, ResourceGuard

CALLS_KEY = "aauth_harness_calls"
# Keyed by id(config) with the config kept alive beside its app, so an id is never reused
# while its entry exists; bounded because every test builds fresh configs.
_APPS: OrderedDict[tuple[int, bool], tuple[ResourceConfig, Flask]] = OrderedDict()
_MAX_APPS = 64


def _json(payload: object) -> Response:
    # The core's serialiser, so the body bytes match the other frameworks exactly.
    return to_flask_response(
        HttpResponse(200, [("Content-Type", "application/json")], json_bytes(payload))
    )


def build_app(config: ResourceConfig, *, async_views: bool = False) -> Flask:
    """The harness routes of ``mode_scenarios()``; ``async_views`` makes the person- and
    auth-token views ``async def`` (GET /data is always sync, POST /data always async,
    so both flavours run in every scenario table)."""
    app = Flask("aauth_harness")
    aauth = AAuth(app, config=config)
    calls: Counter[str] = Counter()
    app.extensions[CALLS_KEY] = calls

    @app.route("/whoami", methods=["GET", "POST"])
    @aauth.protect()
    def whoami() -> Response:
        return _json({"agent": g.aauth.agent})

    @app.get("/optional")
    @aauth.protect(optional=True)
    async def optional() -> Response:
        return _json({"agent": g.aauth.agent if g.aauth else None})

    @app.get("/data")
    @aauth.protect("auth-token", scope="data.read")
    def data_read() -> Response:
        calls["data_read"] += 1
        return _json({"scope": g.aauth.scope})

    @app.post("/data")
    @aauth.protect("auth-token", scope="data.write")
    async def data_write() -> Response:
        calls["data_write"] += 1
        return _json({"scope": g.aauth.scope, "written": True})

    @app.get("/session")
    @aauth.protect("session-token")
    def session() -> Response:
        return _json({"agent": g.aauth.agent.agent, "account": g.aauth.account})

    if async_views:

        @app.get("/profile")
        @aauth.protect("person-token")
        async def profile_async() -> Response:
            return _json({"ps": g.aauth.ps, "sub": g.aauth.sub})

        @app.get("/deferred")
        @aauth.protect("auth-token", scope="data.read", deferred=True)
        async def deferred_async() -> Response:
            calls["deferred"] += 1
            return _json({"scope": g.aauth.scope, "deferred": True})

    else:

        @app.get("/profile")
        @aauth.protect("person-token")
        def profile() -> Response:
            return _json({"ps": g.aauth.ps, "sub": g.aauth.sub})

        @app.get("/deferred")
        @aauth.protect("auth-token", scope="data.read", deferred=True)
        def deferred() -> Response:
            calls["deferred"] += 1
            return _json({"scope": g.aauth.scope, "deferred": True})

    return app


def app_for(config: ResourceConfig, *, async_views: bool = False) -> Flask:
    """The one app serving ``config`` (``before`` requests and the scenario share it)."""
    key = (id(config), async_views)
    entry = _APPS.get(key)
    if entry is None or entry[0] is not config:
        entry = (config, build_app(config, async_views=async_views))
        _APPS[key] = entry
        while len(_APPS) > _MAX_APPS:
            _APPS.popitem(last=False)
    _APPS.move_to_end(key)
    return entry[1]


def guard_for(config: ResourceConfig, *, async_views: bool = False) -> ResourceGuard:
    guard = app_for(config, async_views=async_views).extensions["aauth"]
    assert isinstance(guard, ResourceGuard)
    return guard


def calls(config: ResourceConfig, *, async_views: bool = False) -> Counter[str]:
    """How often each counted view of ``config``'s app has run."""
    counter: Counter[str] = app_for(config, async_views=async_views).extensions[CALLS_KEY]
    return counter


def send(
    config: ResourceConfig, request: HttpRequest, *, async_views: bool = False
) -> HttpResponse:
    parts = urlsplit(request.url)
    client = app_for(config, async_views=async_views).test_client()
    response = client.open(
        # The query goes in the target: the test client's RAW_URI only keeps it from there.
        parts.path + (f"?{parts.query}" if parts.query else ""),
        method=request.method,
        base_url=f"{parts.scheme}://{parts.netloc}",
        headers=request.headers,
        data=request.body,
    )
    return HttpResponse(response.status_code, response.headers.to_wsgi_list(), response.get_data())
