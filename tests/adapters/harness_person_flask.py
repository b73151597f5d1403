"""The Flask-mounted Person Server for the scenario tests: one app per config, the test client."""

from __future__ import annotations

from collections import OrderedDict
from urllib.parse import urlsplit

from aauth_server_flask.person import person_blueprint
from aauth_server_flask.person import person_server_for as mounted_on
from flask import Flask

from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.person import PersonServer, PersonServerConfig

# Keyed by id(config) with the config kept alive beside its app, so an id is never reused
# while its entry exists; bounded because every test builds fresh configs.
_APPS: OrderedDict[int, tuple[PersonServerConfig, Flask]] = OrderedDict()
_MAX_APPS = 64


def build_app(config: PersonServerConfig) -> Flask:
    app = Flask("aauth_person_harness")
    app.register_blueprint(person_blueprint(config))
    return app


def app_for(config: PersonServerConfig) -> Flask:
    entry = _APPS.get(id(config))
    if entry is None or entry[0] is not config:
        entry = (config, build_app(config))
        _APPS[id(config)] = entry
        while len(_APPS) > _MAX_APPS:
            _APPS.popitem(last=False)
    _APPS.move_to_end(id(config))
    return entry[1]


def person_server_for(config: PersonServerConfig) -> PersonServer:
    """The PS the app for ``config`` serves (for ``ps.consent`` calls in the flows)."""
    return mounted_on(app_for(config))


def send_to(app: Flask, request: HttpRequest) -> HttpResponse:
    parts = urlsplit(request.url)
    # No cookie jar: a test that needs cookies carries them in its own headers.
    client = app.test_client(use_cookies=False)
    response = client.open(
        # The query goes in the target: the test client's RAW_URI only keeps it from there.
        parts.path + (f"?{parts.query}" if parts.query else ""),
        method=request.method,
        base_url=f"{parts.scheme}://{parts.netloc}",
        headers=request.headers,
        data=request.body,
    )
    return HttpResponse(response.status_code, response.headers.to_wsgi_list(), response.get_data())


def send(config: PersonServerConfig, request: HttpRequest) -> HttpResponse:
    return send_to(app_for(config), request)


__all__ = ["app_for", "build_app", "person_server_for", "send", "send_to"]
