"""Mount a Person Server in Starlette: its routes, the root well-known route, and a lifespan.

Every route is answered by the core's async driver (``ahandle``); this module only routes and
converts, reusing the resource adapter's converters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeAlias, TypedDict, runtime_checkable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from aauth_server.errors import RequestRejected
from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.person import PersonServer, PersonServerConfig
from aauth_server.person.config import WELL_KNOWN_PATH
from aauth_server.resource.config import ConfigurationError

from .convert import to_http_request, to_response

__all__ = ["PageHandler", "PersonPaths", "PersonServerApp", "person_paths"]


@runtime_checkable
class PageHandler(Protocol):
    """``PersonServer``, ``ConsentPages``, ``DemoLogin``: the routes/ahandle contract."""

    def routes(self) -> list[tuple[str, str]]: ...

    async def ahandle(self, request: HttpRequest) -> HttpResponse | None: ...


Pages: TypeAlias = (
    PageHandler
    | Sequence[PageHandler]
    | Callable[[PersonServer], PageHandler | Sequence[PageHandler]]
)


class PersonPaths(TypedDict):
    person_token_path: str
    auth_token_path: str
    pending_prefix: str
    relay_prefix: str
    interaction_path: str
    consent_path: str
    revocation_path: str
    jwks_path: str
    mission_path: str
    permission_path: str
    audit_path: str


def person_paths(mount_path: str) -> PersonPaths:
    """Every path field of ``PersonServerConfig`` at its default under ``mount_path``:
    ``PersonServerConfig(..., **person_paths("/ps"))``."""
    mount = _mount(mount_path)
    defaults = PersonServerConfig.__dataclass_fields__

    def at(name: str) -> str:
        return mount + str(defaults[name].default)

    return PersonPaths(
        person_token_path=at("person_token_path"),
        auth_token_path=at("auth_token_path"),
        pending_prefix=at("pending_prefix"),
        relay_prefix=at("relay_prefix"),
        interaction_path=at("interaction_path"),
        consent_path=at("consent_path"),
        revocation_path=at("revocation_path"),
        jwks_path=at("jwks_path"),
        mission_path=at("mission_path"),
        permission_path=at("permission_path"),
        audit_path=at("audit_path"),
    )


class PersonServerApp:
    """A Person Server's Starlette routes.

    ``mount_path`` is where :meth:`routes` will be mounted (``""``: the root); every path of
    the PS and of the pages must lie under it (:func:`person_paths` moves them there), so a
    misplaced path raises ``ConfigurationError`` here rather than answering 404 later.  The
    metadata document always lives at the root of the host: :meth:`well_known_route`.

    ``pages`` are the consent pages and the login handler; as they are built on the PS, pass a
    callable ``lambda ps: [ConsentPages(ps, ...), login]`` when ``config`` is a config.
    """

    def __init__(
        self,
        config: PersonServerConfig | PersonServer,
        *,
        pages: Pages | None = None,
        mount_path: str = "",
    ) -> None:
        self.mount_path = _mount(mount_path)
        if isinstance(config, PersonServer):
            self.ps = config
        else:
            self.ps = PersonServer(config)
        self.config = self.ps.config
        self.pages = _pages(pages, self.ps)
        # Builds the URL a request was sent to (public_origin wins over Host) and caps bodies.
        self._origin = self.ps
        self._handlers = self._route_table()

    # -- routes ------------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """Every PS and page route except the well-known one, relative to ``mount_path``:
        ``Mount(mount_path, routes=app.routes())`` (or spread them into the root routes)."""
        routes: list[BaseRoute] = []
        for path, by_method in self._handlers.items():
            relative = path[len(self.mount_path) :]
            # A trailing "/" marks a prefix: everything below it goes to the handler.
            pattern = relative + "{rest:path}" if relative.endswith("/") else relative
            name = _route_name(self.config, path)
            routes.append(
                Route(pattern, self._endpoint(by_method), methods=list(by_method), name=name)
            )
        return routes

    def well_known_route(self) -> Route:
        """``GET /.well-known/aauth-person.json``, for the ROOT routes of the host app."""
        return Route(
            WELL_KNOWN_PATH,
            self._endpoint({"GET": self.ps}),
            methods=["GET"],
            name="aauth_person_metadata",
        )

    def mounted(self) -> list[BaseRoute]:
        """The well-known route and :meth:`routes` under ``mount_path``: all a host app needs."""
        if not self.mount_path:
            return [self.well_known_route(), *self.routes()]
        return [self.well_known_route(), Mount(self.mount_path, routes=self.routes())]

    # -- lifespan ----------------------------------------------------------------------------

    async def startup(self) -> None:
        """Open the async store: a Redis that does not answer fails the start, not a request."""
        await self.ps.async_store.check()

    async def shutdown(self) -> None:
        """Close both stores (the Redis pools and the change subscription)."""
        try:
            await self.ps.aclose()
        finally:
            self.ps.close()

    @asynccontextmanager
    async def lifespan(self, app: object) -> AsyncIterator[None]:
        """``Starlette(lifespan=ps_app.lifespan)``, or ``async with ps_app.lifespan(app):``
        inside the host app's own lifespan."""
        await self.startup()
        try:
            yield
        finally:
            await self.shutdown()

    # -- internals ---------------------------------------------------------------------------

    def _route_table(self) -> dict[str, dict[str, PageHandler]]:
        table: dict[str, dict[str, PageHandler]] = {}
        handlers: list[PageHandler] = [self.ps, *self.pages]
        outside: list[str] = []
        for handler in handlers:
            for method, path in handler.routes():
                if path == WELL_KNOWN_PATH:
                    continue
                if not path.startswith(self.mount_path + "/"):
                    outside.append(path)
                    continue
                # The first handler to claim (method, path) wins, as the core PS comes first.
                table.setdefault(path, {}).setdefault(method, handler)
        if outside:
            raise ConfigurationError(
                f"paths outside the mount path {self.mount_path!r}: {sorted(set(outside))}; "
                "use person_paths(mount_path) in the PersonServerConfig"
            )
        return table

    def _endpoint(self, by_method: Mapping[str, PageHandler]) -> Callable[[Request], Any]:
        origin = self._origin

        async def endpoint(request: Request) -> Response:
            # Starlette answers HEAD on GET routes; the handler decides what HEAD means.
            handler = by_method.get(request.method) or by_method.get("GET")
            if handler is None:
                raise HTTPException(status_code=405)
            try:
                result = await handler.ahandle(await to_http_request(request, origin))
            except RequestRejected as rejected:
                return to_response(rejected.to_response(), request)
            if result is None:
                raise HTTPException(status_code=404)
            return to_response(result)

        return endpoint


_ROUTE_NAMES = {
    "jwks_path": "aauth_person_jwks",
    "person_token_path": "aauth_person_token_person",
    "auth_token_path": "aauth_person_token_auth",
    "pending_prefix": "aauth_person_pending",
    "interaction_path": "aauth_person_interaction",
    "consent_path": "aauth_person_consent",
    "revocation_path": "aauth_person_revoke",
    "mission_path": "aauth_person_mission",
    "permission_path": "aauth_person_permission",
    "audit_path": "aauth_person_audit",
}


def _route_name(config: PersonServerConfig, path: str) -> str | None:
    return next((n for f, n in _ROUTE_NAMES.items() if getattr(config, f) == path), None)


def _mount(mount_path: str) -> str:
    if mount_path in ("", "/"):
        return ""
    if not mount_path.startswith("/") or mount_path.endswith("/") or "?" in mount_path:
        raise ConfigurationError("mount_path must be '' or '/segment[/...]' without a final '/'")
    return mount_path


def _pages(pages: Pages | None, ps: PersonServer) -> list[PageHandler]:
    if pages is None:
        return []
    if not isinstance(pages, PageHandler) and callable(pages):
        pages = pages(ps)
    handlers = [pages] if isinstance(pages, PageHandler) else list(pages)
    for handler in handlers:
        owner = getattr(handler, "ps", ps)
        if owner is not ps:
            raise ConfigurationError("the pages were built on another PersonServer")
    return handlers
