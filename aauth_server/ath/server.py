"""The ATH implementer: one object that routes ``/ath/*`` and discovery, validates tokens for
a native API, and plans proxied calls for a gateway.  It assembles the step modules (they
receive a :class:`~.context.Context` and never import this one) and runs them with the sync
or the async driver.

Adapters use four entry points: :meth:`ATHServer.handle` / :meth:`ATHServer.ahandle` for
every ATH route (``None`` when the path is not ATH's), :meth:`ATHServer.check` /
:meth:`ATHServer.acheck` for a native API view, :meth:`ATHServer.plan_proxy` /
:meth:`ATHServer.aplan_proxy` plus :attr:`ATHServer.forwarder` for the gateway proxy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..http import HttpRequest, HttpResponse, MalformedHost, request_host
from ..keys.egress import EgressPolicy
from ..keys.fetcher import AsyncHttpxFetcher, HttpxFetcher
from ..storage.base import StorageError
from ..storage.uri import open_store_pair
from . import discovery, native, proxy, registration, tokens
from .audit import Audit
from .authorize import authorize
from .config import ATHConfig
from .context import Context
from .driver import Driver, Op, internal
from .errors import ATHError
from .identity import IdentityCache
from .pages import ASSETS, Pages
from .proxy import Forwarder, ProxyPlan
from .routes import ScopeMap
from .tokens import TokenInfo

Route = Callable[[HttpRequest], Generator[Op, Any, HttpResponse]]
_CLIENT_ID = re.compile(r"[A-Za-z0-9_]{1,64}")


class ATHServer:
    def __init__(self, config: ATHConfig, *, templates_dir: str | Path | None = None) -> None:
        self.config = config
        self.store, self.async_store = open_store_pair(
            config.store, config.async_store, clock=config.clock, prefix=config.key_prefix
        )
        policy = EgressPolicy(dev_loopback=config.dev_loopback)
        self.fetcher = config.fetcher or HttpxFetcher(policy)
        self.async_fetcher = config.async_fetcher or AsyncHttpxFetcher(policy)
        upstream = None
        if config.mode == "gateway":
            from .upstream import OAuthUpstream

            upstream = OAuthUpstream(config)
        self.ctx = Context(
            config,
            config.clock,
            Audit(config.audit),
            IdentityCache(
                ttl=config.identity_cache_ttl, refetch_interval=config.identity_refetch_interval
            ),
        )
        self.driver = Driver(
            self.store, self.async_store, self.fetcher, self.async_fetcher, upstream
        )
        self.pages = Pages(self.ctx, templates_dir)
        self.forwarder = Forwarder(config)
        self.scope_maps: dict[str, ScopeMap] = {
            p.provider_id: p.scope_map() for p in config.providers
        }
        self.prefix = config.prefix
        self._api_path = urlsplit(str(config.api_base or "")).path.rstrip("/")
        self._routes = self._table()

    # -- routing -------------------------------------------------------------------------

    def _table(self) -> dict[str, dict[str, Route]]:
        ctx, pages, p = self.ctx, self.pages, self.prefix
        well_known = (
            discovery.NATIVE_PATH if self.config.mode == "native" else discovery.GATEWAY_PATH
        )
        table: dict[str, dict[str, Route]] = {
            p + well_known: {"GET": self._discovery},
            p + "/ath/agents/register": {"POST": lambda r: registration.register(ctx, r)},
            p + "/ath/authorize": {"POST": lambda r: authorize(ctx, r)},
            p + "/ath/callback": {"GET": pages.callback},
            p + "/ath/token": {"POST": lambda r: tokens.token(ctx, r)},
            p + "/ath/revoke": {"POST": lambda r: tokens.revoke(ctx, r)},
            p + "/ath/admin": {"GET": pages.admin},
            p + "/ath/admin/decide": {"POST": pages.admin_decide},
            p + "/ath/admin/revoke": {"POST": pages.admin_revoke},
        }
        for name in ASSETS:
            table[f"{p}/ath/static/{name}"] = {"GET": pages.static}
        if self.config.mode == "native":
            table[p + "/ath/consent"] = {"GET": pages.consent}
            table[p + "/ath/consent/decide"] = {"POST": pages.decide}
            table[p + "/ath/oauth/token"] = {"POST": lambda r: native.token_endpoint(ctx, r)}
        else:
            table[p + "/ath/start"] = {"GET": pages.start}
        return table

    def routes(self) -> list[tuple[str, str]]:
        """(method, path) of every exact route, plus the two prefixes (a trailing ``/``):
        ``/ath/agents/`` (GET a registration) and, for a gateway, ``/ath/proxy/`` (any)."""
        exact = [(m, path) for path, by in self._routes.items() for m in by]
        exact.append(("GET", self.prefix + "/ath/agents/"))
        if self.config.mode == "gateway":
            exact.extend((m, self.prefix + "/ath/proxy/") for m in sorted(proxy.METHODS))
        return exact

    def owns(self, path: str) -> bool:
        """Whether ``path`` is ATH's (discovery or anything under ``/ath/``)."""
        p = self.prefix
        return path in self._routes or path.startswith(p + "/ath/")

    def is_proxy(self, path: str) -> bool:
        return self.config.mode == "gateway" and path.startswith(self.prefix + "/ath/proxy/")

    def _route(
        self, request: HttpRequest
    ) -> Generator[Op, Any, HttpResponse] | HttpResponse | None:
        path = request.path
        if not self.owns(path):
            return None
        try:
            _checked_host(request)
        except ATHError as error:
            return error.to_response()
        method = "GET" if request.method == "HEAD" else request.method
        by_method = self._routes.get(path)
        if by_method is None:
            agents_prefix = self.prefix + "/ath/agents/"
            if path.startswith(agents_prefix) and path != agents_prefix:
                client_id = path[len(agents_prefix) :]
                if method != "GET":
                    return self._not_allowed(["GET"])
                if not _CLIENT_ID.fullmatch(client_id):
                    return ATHError(
                        "AGENT_IDENTITY_MISMATCH", "an agent may read only its own registration"
                    ).to_response()
                return registration.get_agent(self.ctx, request, client_id)
            if self.is_proxy(path):
                return ATHError(
                    "INTERNAL_ERROR", "the proxy is served by the adapter's proxy view"
                ).to_response()
            return ATHError("NOT_FOUND", "no such ATH endpoint").to_response()
        route = by_method.get(method)
        if route is None:
            return self._not_allowed(sorted(by_method))
        return route(request)

    @staticmethod
    def _not_allowed(allowed: Iterable[str]) -> HttpResponse:
        allow = ", ".join(allowed)
        return ATHError(
            "METHOD_NOT_ALLOWED", "method not allowed here", headers=[("Allow", allow)]
        ).to_response()

    def _discovery(self, request: HttpRequest) -> Generator[Op, Any, HttpResponse]:
        return discovery.response(self.config)
        yield  # a generator like every route

    # -- entry points --------------------------------------------------------------------

    def handle(self, request: HttpRequest) -> HttpResponse | None:
        routed = self._route(request)
        if routed is None or isinstance(routed, HttpResponse):
            return routed
        return self.driver.respond(routed)

    async def ahandle(self, request: HttpRequest) -> HttpResponse | None:
        routed = self._route(request)
        if routed is None or isinstance(routed, HttpResponse):
            return routed
        return await self.driver.arespond(routed)

    def api_operation(self, request: HttpRequest) -> tuple[str, str]:
        """(method, path relative to ``api_base``) of a native API request; a path outside
        ``api_base`` maps to nothing (and is refused as unmapped)."""
        base = self._api_path
        path = request.path
        proxy.check_path(path)
        relative = path[len(base) :] if path.startswith(base + "/") or path == base else "\0outside"
        return request.method.upper(), relative or "/"

    def _check_steps(
        self, request: HttpRequest, scopes: Iterable[str]
    ) -> Generator[Op, Any, TokenInfo]:
        if self.config.mode != "native":
            raise ATHError("NOT_FOUND", "a gateway has no native API")
        operation = self.api_operation(request)
        provider_id = self.config.providers[0].provider_id
        return (
            yield from tokens.validate(
                self.ctx,
                request,
                provider_id=None,
                scope_map=self.scope_maps[provider_id],
                operation=operation,
                required=tuple(scopes),
            )
        )

    def check(self, request: HttpRequest, scopes: Iterable[str] = ()) -> TokenInfo:
        """The ATH token of a native API request (sync driver), or :class:`ATHError`."""
        _checked_host(request)
        try:
            return self.driver.run(self._check_steps(request, scopes))
        except StorageError as exc:
            raise internal(exc) from exc

    async def acheck(self, request: HttpRequest, scopes: Iterable[str] = ()) -> TokenInfo:
        _checked_host(request)
        try:
            return await self.driver.arun(self._check_steps(request, scopes))
        except StorageError as exc:
            raise internal(exc) from exc

    def plan_proxy(self, request: HttpRequest) -> ProxyPlan:
        """The upstream request for a proxied call (sync), or :class:`ATHError`."""
        _checked_host(request)
        try:
            return self.driver.run(proxy.plan(self.ctx, request))
        except StorageError as exc:
            raise internal(exc) from exc

    async def aplan_proxy(self, request: HttpRequest) -> ProxyPlan:
        _checked_host(request)
        try:
            return await self.driver.arun(proxy.plan(self.ctx, request))
        except StorageError as exc:
            raise internal(exc) from exc

    # -- life ----------------------------------------------------------------------------

    async def startup(self) -> None:
        await self.async_store.check()

    def close(self) -> None:
        self.forwarder.close()
        self.store.close()
        closer = getattr(self.fetcher, "close", None)
        if callable(closer):
            closer()

    async def aclose(self) -> None:
        await self.forwarder.aclose()
        await self.async_store.aclose()
        closer = getattr(self.async_fetcher, "aclose", None)
        if callable(closer):
            await closer()


__all__ = ["ATHServer", "ProxyPlan", "TokenInfo"]


def _checked_host(request: HttpRequest) -> None:
    """A malformed or repeated Host is refused on every ATH route (``base_url`` names the
    service, but such a request is not one any client sends), as the AAuth adapters do."""
    try:
        request_host(request)
    except MalformedHost:
        raise ATHError("INVALID_REQUEST", "the Host header is not a valid host[:port]") from None
