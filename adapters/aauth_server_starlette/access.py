"""Mount an Access Server in Starlette: its routes, the root well-known route, and a lifespan.

``app = AccessServerApp(config)``; ``Starlette(routes=app.mounted(), lifespan=app.lifespan)``.
Every route is answered by the core's async driver (``ahandle``); this module only routes and
converts, with the resource adapter's converters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from aauth_server.access import WELL_KNOWN_PATH, AccessServer, AccessServerConfig
from aauth_server.errors import RequestRejected
from aauth_server.resource.config import ConfigurationError

from .convert import to_http_request, to_response

__all__ = ["AccessServerApp", "access_paths"]

_PATH_FIELDS = ("token_path", "pending_prefix", "revocation_path", "jwks_path", "interact_path")


def access_paths(mount_path: str) -> dict[str, str]:
    """Every path field of ``AccessServerConfig`` at its default under ``mount_path``:
    ``AccessServerConfig(..., **access_paths("/as"))``."""
    mount = _mount(mount_path)
    defaults = AccessServerConfig.__dataclass_fields__
    return {name: mount + str(defaults[name].default) for name in _PATH_FIELDS}


class AccessServerApp:
    """An Access Server's Starlette routes (``.server`` is the core)."""

    def __init__(self, config: AccessServerConfig | AccessServer, *, mount_path: str = "") -> None:
        self.mount_path = _mount(mount_path)
        self.server = config if isinstance(config, AccessServer) else AccessServer(config)
        self.config = self.server.config
        self._paths: dict[str, list[str]] = {}
        outside = []
        for method, path in self.server.routes():
            if path == WELL_KNOWN_PATH:
                continue
            if not path.startswith(self.mount_path + "/"):
                outside.append(path)
            self._paths.setdefault(path, []).append(method)
        if outside:
            raise ConfigurationError(
                f"paths outside the mount path {self.mount_path!r}: {sorted(set(outside))}; "
                "use access_paths(mount_path) in the AccessServerConfig"
            )

    def routes(self) -> list[BaseRoute]:
        """Every AS route but the well-known one, relative to ``mount_path``."""
        routes: list[BaseRoute] = []
        for path, methods in self._paths.items():
            relative = path[len(self.mount_path) :]
            pattern = relative + "{rest:path}" if relative.endswith("/") else relative
            routes.append(Route(pattern, self._endpoint, methods=methods))
        return routes

    def well_known_route(self) -> Route:
        """``GET /.well-known/aauth-access.json``, for the ROOT routes of the host app."""
        return Route(WELL_KNOWN_PATH, self._endpoint, methods=["GET"], name="aauth_access_metadata")

    def mounted(self) -> list[BaseRoute]:
        if not self.mount_path:
            return [self.well_known_route(), *self.routes()]
        return [self.well_known_route(), Mount(self.mount_path, routes=self.routes())]

    async def startup(self) -> None:
        await self.server.async_store.check()

    async def shutdown(self) -> None:
        try:
            await self.server.aclose()
        finally:
            self.server.close()

    @asynccontextmanager
    async def lifespan(self, app: object) -> AsyncIterator[None]:
        await self.startup()
        try:
            yield
        finally:
            await self.shutdown()

    @property
    def _endpoint(self) -> Callable[[Request], Any]:
        server = self.server

        async def endpoint(request: Request) -> Response:
            try:
                result = await server.ahandle(await to_http_request(request, server))
            except RequestRejected as rejected:
                return to_response(rejected.to_response())
            if result is None:
                raise HTTPException(status_code=404)
            return to_response(result)

        return endpoint


def _mount(mount_path: str) -> str:
    if mount_path in ("", "/"):
        return ""
    if not mount_path.startswith("/") or mount_path.endswith("/") or "?" in mount_path:
        raise ConfigurationError("mount_path must be '' or '/segment[/...]' without a final '/'")
    return mount_path
