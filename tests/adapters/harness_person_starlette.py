"""In-process Starlette app with a Person Server mounted, for the PS scenario table.

One app, and one open ``TestClient`` (its lifespan started once, one event loop for the async
store), per config object: a flow's requests and the consent calls share that PS.
"""

from __future__ import annotations

import atexit
from collections import OrderedDict
from dataclasses import dataclass

from aauth_server_starlette.person import PersonServerApp
from starlette.applications import Starlette
from starlette.testclient import TestClient

from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.person import PersonServer, PersonServerConfig


@dataclass
class _Mounted:
    config: PersonServerConfig
    app: PersonServerApp
    client: TestClient


_APPS: OrderedDict[int, _Mounted] = OrderedDict()
_CACHED = 16


def build_app(
    config: PersonServerConfig, mount_path: str = ""
) -> tuple[PersonServerApp, Starlette]:
    ps_app = PersonServerApp(config, mount_path=mount_path)
    return ps_app, Starlette(routes=ps_app.mounted(), lifespan=ps_app.lifespan)


def _close(entry: _Mounted) -> None:
    entry.client.__exit__(None, None, None)


def _cached(config: PersonServerConfig) -> _Mounted:
    entry = _APPS.get(id(config))
    # The config is kept in the entry, so its id cannot be reused while cached.
    if entry is None or entry.config is not config:
        ps_app, app = build_app(config)
        client = TestClient(app, follow_redirects=False)
        client.__enter__()
        entry = _Mounted(config, ps_app, client)
        _APPS[id(config)] = entry
        while len(_APPS) > _CACHED:
            _close(_APPS.popitem(last=False)[1])
    return entry


def person_server_for(config: PersonServerConfig) -> PersonServer:
    """The PS that ``send(config, ...)`` talks to (to open and approve consent)."""
    return _cached(config).app.ps


def send(config: PersonServerConfig, request: HttpRequest) -> HttpResponse:
    """Send a neutral request through Starlette's in-process client, exactly as given."""
    answer = _cached(config).client.request(
        request.method, request.url, headers=request.headers, content=request.body
    )
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in answer.headers.raw]
    return HttpResponse(answer.status_code, headers, answer.content)


def close_all() -> None:
    """Stop every cached app (runs their lifespan shutdown)."""
    while _APPS:
        _close(_APPS.popitem()[1])


atexit.register(close_all)
