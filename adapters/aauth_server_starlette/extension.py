"""The Starlette extension: one object holding the guard, a decorator, and the guard's routes."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import fields
from typing import Any, ParamSpec, TypeVar, overload

from starlette.concurrency import run_in_threadpool
from starlette.config import Config
from starlette.datastructures import CommaSeparatedStrings
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from aauth_server.errors import AAuthError, RequestRejected
from aauth_server.resource import (
    AGENT_TOKEN,
    WELL_KNOWN_PATH,
    AgentIdentity,
    ConfigurationError,
    Identity,
    Protection,
    Redispatch,
    ResourceConfig,
    ResourceGuard,
)
from aauth_server.resource.config import check_store_reachable, protection_label

from .convert import read_body, request_head, to_http_request, to_response
from .redispatch import SCOPE_KEY, held_identity, redispatch

P = ParamSpec("P")
I = TypeVar("I", bound=Identity)  # noqa: E741 - the conventional name for an identity type
AsyncEndpoint = Callable[P, Coroutine[Any, Any, Any]]

#: Settings that can come from the environment / a ``.env`` file, with their casts.
ENV_SETTINGS: Mapping[str, Callable[[str], Any]] = {
    "issuer": str,
    "dev_loopback": bool,
    "public_origin": str,
    "signature_window": int,
    "accept_algs": CommaSeparatedStrings,
    "allow_eddsa": bool,
    "accept_base64url": bool,
    "additional_signature_components": CommaSeparatedStrings,
    "jwks_uri": str,
    "name": str,
    "description": str,
    "documentation_uri": str,
    "allow_cross_origin_jwks": bool,
    "max_body": int,
}


class AAuth:
    """AAuth protection for a Starlette app.

    ``AAuth(issuer="https://api.example")`` or ``AAuth(config)``; with both, the keyword
    settings win over the fields of ``config``.  A bad configuration raises
    :class:`ConfigurationError` here, at import time of the app, not on the first request:
    an invalid setting, a store that does not answer (unless ``startup_store_check=False``),
    and, at decoration time, an endpoint whose ``protect(...)`` the configuration cannot
    serve (an auth-token scope missing from ``scope_descriptions``, no ``signing_key``).
    """

    def __init__(self, config: ResourceConfig | None = None, **settings: Any) -> None:
        if config is None:
            config = ResourceConfig.from_mapping(settings)
        elif settings:
            current = {f.name: getattr(config, f.name) for f in fields(config)}
            config = ResourceConfig.from_mapping(current, **settings)
        self.config = config
        self.guard = ResourceGuard(config)
        if config.startup_store_check:
            check_store_reachable(self.guard.store, config.store)

    @classmethod
    def from_config(
        cls, source: Config | None = None, *, prefix: str = "AAUTH_", **overrides: Any
    ) -> AAuth:
        """Read ``AAUTH_ISSUER``, ``AAUTH_DEV_LOOPBACK``, ... from a Starlette ``Config``
        (environment variables, then its ``.env`` file); ``overrides`` win."""
        source = source if source is not None else Config()
        values: dict[str, Any] = {}
        for name, cast in ENV_SETTINGS.items():
            try:
                value = source(prefix + name.upper(), cast=cast, default=None)
            except ValueError as exc:
                raise ConfigurationError(str(exc)) from exc
            if value is not None:
                values[name] = value
        return cls(ResourceConfig.from_mapping(values, **overrides))

    def protect(
        self,
        mode: str = AGENT_TOKEN,
        *,
        scope: str | None = None,
        optional: bool = False,
        deferred: bool = False,
    ) -> Callable[[Callable[P, Any]], AsyncEndpoint[P]]:
        """Protect a Starlette endpoint (``def`` or ``async def``, function or
        ``HTTPEndpoint`` method) with one access mode.  The identity lands on
        ``request.state.aauth``: ``AgentIdentity`` (agent-token), ``PersonIdentity``
        (person-token, auth-token) or ``SessionIdentity`` (session-token)."""
        protection = Protection(mode, scope=scope, optional=optional, deferred=deferred)
        guard = self.guard

        def decorator(endpoint: Callable[P, Any]) -> AsyncEndpoint[P]:
            self.config.check_protection(protection, protection_label(protection, endpoint))
            is_async = _is_async(endpoint)
            agent_mode = protection.mode == AGENT_TOKEN

            @functools.wraps(endpoint)
            async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                request = args[0] if args and type(args[0]) is Request else None
                if request is None:
                    request = _find_request(endpoint, args, kwargs)
                try:
                    held = (
                        held_identity(request, guard, protection)
                        if SCOPE_KEY in request.scope
                        else None
                    )
                    if held is not None:
                        request.state.aauth = held
                    else:
                        # to_http_request, with no wait when there is no body to read
                        checked, unread = request_head(request, guard)
                        if unread:
                            checked.body = await read_body(request, guard.body_limit)
                        found: Identity | None = (
                            guard.check_agent_fast(checked) if agent_mode else None
                        )
                        if found is None:
                            found = await guard.acheck(checked, protection)
                        request.state.aauth = found
                    if is_async:
                        return await endpoint(*args, **kwargs)
                    # A sync endpoint must not block the event loop.
                    return await run_in_threadpool(endpoint, *args, **kwargs)
                except AAuthError as error:
                    # Also catches AAuthError raised by the endpoint (e.g. Forbidden),
                    # so it renders exactly as the core defines it.
                    return to_response(error.to_response(), request)

            return wrapper

        return decorator

    def routes(self) -> list[BaseRoute]:
        """The guard's own endpoints (metadata, JWKS, authorization, revocation, pending
        URLs); add them to the same app as the protected endpoints, since a deferred
        invocation is run again through that app's routing."""
        guard = self.guard
        cfg = self.config

        async def endpoint(request: Request) -> Response:
            try:
                result = await guard.ahandle(await to_http_request(request, guard))
            except RequestRejected as rejected:
                return to_response(rejected.to_response(), request)
            if result is None:
                raise HTTPException(status_code=404)
            if isinstance(result, Redispatch):
                return to_response(await redispatch(request, guard, result))
            return to_response(result)

        names = {
            WELL_KNOWN_PATH: "aauth_resource_metadata",
            cfg.jwks_path: "aauth_jwks",
            cfg.authorization_path: "aauth_authorize",
            cfg.revocation_path: "aauth_revoke",
            cfg.pending_prefix: "aauth_pending",
        }
        methods: dict[str, list[str]] = {}
        for method, path in guard.routes():
            methods.setdefault(path, []).append(method)
        routes: list[BaseRoute] = []
        for path, allowed in methods.items():
            # A trailing "/" marks a prefix: everything below it goes to the guard.
            pattern = path + "{pending:path}" if path.endswith("/") else path
            routes.append(Route(pattern, endpoint, methods=allowed, name=names.get(path)))
        return routes


@overload
def identity(request: Request) -> AgentIdentity | None: ...


@overload
def identity(request: Request, kind: type[I]) -> I | None: ...


def identity(request: Request, kind: type[Any] = AgentIdentity) -> Identity | None:
    """The verified identity a protected endpoint runs with (typed access to ``state.aauth``):
    ``identity(request)`` for an agent, ``identity(request, PersonIdentity)`` or
    ``identity(request, SessionIdentity)`` for the other modes; None for another kind."""
    value = getattr(request.state, "aauth", None)
    return value if isinstance(value, kind) else None


def _is_async(endpoint: Callable[..., Any]) -> bool:
    while isinstance(endpoint, functools.partial):
        endpoint = endpoint.func
    # An instance whose class defines ``async def __call__`` is an async endpoint too.
    return inspect.iscoroutinefunction(endpoint) or inspect.iscoroutinefunction(
        type(endpoint).__call__
    )


def _find_request(
    endpoint: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> Request:
    for value in (*args, *kwargs.values()):
        if isinstance(value, Request):
            return value
    raise TypeError(f"{endpoint!r} is protected by AAuth but was not called with a Request")
