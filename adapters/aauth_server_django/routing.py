"""A URL pattern that matches the guard's own endpoints, read from the guard in use.

The paths (authorization, revocation, JWKS, the pending prefix) come from the AAuth
configuration, which can change with the settings, so they are looked up when a request
is resolved rather than frozen into ``urlpatterns`` at import time.
"""

from __future__ import annotations

from typing import Any

from django.urls.resolvers import RegexPattern

from aauth_server.resource import ResourceGuard

from .conf import get_guard


def methods_for(guard: ResourceGuard, path: str) -> set[str]:
    """The methods the guard serves at ``path`` (a route ending in ``/`` is a prefix)."""
    allowed = {
        method
        for method, route in guard.routes()
        if path == route or (route.endswith("/") and path.startswith(route) and path != route)
    }
    if "GET" in allowed:
        allowed.add("HEAD")
    return allowed


class GuardEndpoints(RegexPattern):
    """Matches a path when the guard serves it; include the URLconf at the site root."""

    def __init__(self) -> None:
        # The regex only serves reverse() bookkeeping; match() decides.
        super().__init__(r"^aauth-guard-endpoints\Z", is_endpoint=True)

    def match(self, path: str) -> tuple[str, tuple[Any, ...], dict[str, Any]] | None:
        if methods_for(get_guard(), "/" + path):
            return "", (), {}
        return None

    def __str__(self) -> str:
        return "<AAuth guard endpoints>"
