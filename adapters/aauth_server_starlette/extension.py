"""The Starlette extension: one object holding the guard, a decorator, and the well-known route."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import fields
from typing import Any, ParamSpec

from starlette.concurrency import run_in_threadpool
from starlette.config import Config
from starlette.datastructures import CommaSeparatedStrings
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from aauth_server.errors import AAuthError
from aauth_server.resource import (
    AGENT_TOKEN,
    WELL_KNOWN_PATH,
    AgentIdentity,
    ConfigurationError,
    Protection,
    ResourceConfig,
    ResourceGuard,
)

from .convert import to_http_request, to_response

P = ParamSpec("P")
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
}


class AAuth:
    """AAuth protection for a Starlette app.

    ``AAuth(issuer="https://api.example")`` or ``AAuth(config)``; with both, the keyword
    settings win over the fields of ``config``.  A bad configuration raises
    :class:`ConfigurationError` here, at import time of the app, not on the first request.
    """

    def __init__(self, config: ResourceConfig | None = None, **settings: Any) -> None:
        if config is None:
            config = ResourceConfig.from_mapping(settings)
        elif settings:
            current = {f.name: getattr(config, f.name) for f in fields(config)}
            config = ResourceConfig.from_mapping(current, **settings)
        self.config = config
        self.guard = ResourceGuard(config)

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
        self, mode: str = AGENT_TOKEN, *, optional: bool = False
    ) -> Callable[[Callable[P, Any]], AsyncEndpoint[P]]:
        """Protect a Starlette endpoint (``def`` or ``async def``, function or
        ``HTTPEndpoint`` method).  The identity lands on ``request.state.aauth``."""
        protection = Protection(mode, optional=optional)
        guard = self.guard

        def decorator(endpoint: Callable[P, Any]) -> AsyncEndpoint[P]:
            is_async = _is_async(endpoint)

            @functools.wraps(endpoint)
            async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                request = _find_request(endpoint, args, kwargs)
                try:
                    checked = await to_http_request(request, guard)
                    request.state.aauth = await guard.acheck(checked, protection)
                    if is_async:
                        return await endpoint(*args, **kwargs)
                    # A sync endpoint must not block the event loop.
                    return await run_in_threadpool(endpoint, *args, **kwargs)
                except AAuthError as error:
                    # Also catches AAuthError raised by the endpoint (e.g. Forbidden),
                    # so it renders exactly as the core defines it.
                    return to_response(error.to_response())

            return wrapper

        return decorator

    def routes(self) -> list[BaseRoute]:
        """The well-known metadata route; add it to the app's routes."""
        guard = self.guard

        async def metadata(request: Request) -> Response:
            return to_response(guard.metadata_response())

        return [Route(WELL_KNOWN_PATH, metadata, methods=["GET"], name="aauth_resource_metadata")]


def identity(request: Request) -> AgentIdentity | None:
    """The verified identity a protected endpoint runs with (typed access to ``state.aauth``)."""
    value = getattr(request.state, "aauth", None)
    return value if isinstance(value, AgentIdentity) else None


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
