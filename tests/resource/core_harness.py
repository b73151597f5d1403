"""A framework-free harness: the guard plus a tiny router, answering like the adapters do.

It lets the mode scenario table run against the core alone (sync and async drivers), so
a failure here is the core's, not an adapter's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aauth_server.errors import AAuthError, ServerError
from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.resource import (
    AgentIdentity,
    PersonIdentity,
    Protection,
    Redispatch,
    ResourceConfig,
    ResourceGuard,
    SessionIdentity,
)

View = Callable[[Any], Any]

ROUTES: dict[tuple[str, str], tuple[Protection, View]] = {
    ("GET", "/whoami"): (Protection(), lambda i: {"agent": i.agent}),
    ("POST", "/whoami"): (Protection(), lambda i: {"agent": i.agent}),
    ("GET", "/optional"): (Protection(optional=True), lambda i: {"agent": i.agent if i else None}),
    ("GET", "/profile"): (Protection("person-token"), lambda i: {"ps": i.ps, "sub": i.sub}),
    ("GET", "/data"): (Protection("auth-token", scope="data.read"), lambda i: {"scope": i.scope}),
    ("POST", "/data"): (
        Protection("auth-token", scope="data.write"),
        lambda i: {"scope": i.scope, "written": True},
    ),
    ("GET", "/deferred"): (
        Protection("auth-token", scope="data.read", deferred=True),
        lambda i: {"scope": i.scope, "deferred": True},
    ),
    ("GET", "/session"): (
        Protection("session-token"),
        lambda i: {"agent": i.agent.agent, "account": i.account},
    ),
}


class CoreApp:
    def __init__(self, config: ResourceConfig) -> None:
        self.guard = ResourceGuard(config)
        self.calls: dict[str, int] = {}

    def _view(self, request: HttpRequest, identity: Any) -> HttpResponse:
        _, view = ROUTES[(request.method, request.path)]
        self.calls[request.path] = self.calls.get(request.path, 0) + 1
        return HttpResponse.json(200, view(identity))

    def send(self, request: HttpRequest) -> HttpResponse:
        handled = self.guard.handle(request)
        if isinstance(handled, Redispatch):
            try:
                response = self._view(handled.request, handled.identity)
            except Exception:
                response = ServerError().to_response()
            return self.guard.finish(handled, response)
        if handled is not None:
            return handled
        route = ROUTES.get((request.method, request.path))
        if route is None:
            return HttpResponse(404, [], b"")
        try:
            identity = self.guard.check(request, route[0])
        except AAuthError as error:
            return error.to_response()
        return self._view(request, identity)

    async def asend(self, request: HttpRequest) -> HttpResponse:
        handled = await self.guard.ahandle(request)
        if isinstance(handled, Redispatch):
            try:
                response = self._view(handled.request, handled.identity)
            except Exception:
                response = ServerError().to_response()
            return await self.guard.afinish(handled, response)
        if handled is not None:
            return handled
        route = ROUTES.get((request.method, request.path))
        if route is None:
            return HttpResponse(404, [], b"")
        try:
            identity = await self.guard.acheck(request, route[0])
        except AAuthError as error:
            return error.to_response()
        return self._view(request, identity)


__all__ = ["ROUTES", "AgentIdentity", "CoreApp", "PersonIdentity", "SessionIdentity"]
