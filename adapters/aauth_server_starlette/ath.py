"""ATH in Starlette: ``ath = ATH(config)``, ``routes=[*ath.routes(), ...]``,
``@ath.require(scopes=[...])`` on the native API's endpoints (``def`` or ``async def``).

Every ATH route (discovery and ``/ath/*``) goes to the core's async driver; the proxy of a
gateway streams the agent's body up and the provider's body back.  Only conversion lives
here: request bodies are read up to the configured limit (one byte more tells the core it
was exceeded), the raw request target is kept (the proxy judges the path as sent), and the
core's responses are rendered byte for byte.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any, ParamSpec
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from aauth_server.ath import ATHConfig, ATHError, ATHServer, TokenInfo
from aauth_server.ath.discovery import GATEWAY_PATH, NATIVE_PATH
from aauth_server.http import HttpRequest

from .convert import raw_target, to_response

__all__ = ["ATH", "ath_token"]

P = ParamSpec("P")
AsyncEndpoint = Callable[P, Coroutine[Any, Any, Any]]
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class ATH:
    """One ATH implementer (native service or gateway) served by a Starlette app."""

    def __init__(self, server: ATHServer | ATHConfig) -> None:
        self.server = server if isinstance(server, ATHServer) else ATHServer(server)
        self.config = self.server.config
        parts = urlsplit(self.config.base_url)
        self._origin = f"{parts.scheme}://{parts.netloc}"

    # -- conversion ------------------------------------------------------------------------

    def _head(self, request: Request, body: bytes = b"") -> HttpRequest:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]]
        # base_url is the public origin: it wins over Host, as every URL the core checks
        # (attestation audiences, the callback) is built from it.
        return HttpRequest(request.method, self._origin + raw_target(request), headers, body)

    async def _body(self, request: Request) -> bytes:
        limit = self.config.max_body
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                break  # the core answers 413; nothing more is read into memory
        return b"".join(chunks)

    # -- routes ----------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """Discovery and ``/ath/*`` under the base URL's path: add them to the app's routes."""
        prefix = self.config.prefix
        well_known = NATIVE_PATH if self.config.mode == "native" else GATEWAY_PATH
        return [
            Route(
                prefix + well_known, self._endpoint, methods=["GET", "HEAD"], name="ath_discovery"
            ),
            Route(prefix + "/ath/{rest:path}", self._endpoint, methods=METHODS, name="ath"),
        ]

    async def _endpoint(self, request: Request) -> Response:
        server = self.server
        if server.is_proxy(request.url.path):
            return await self._proxy(request)
        neutral = self._head(request, await self._body(request))
        answer = await server.ahandle(neutral)
        if answer is None:
            answer = ATHError("NOT_FOUND", "no such ATH endpoint").to_response()
        return to_response(answer, request)

    async def _proxy(self, request: Request) -> Response:
        try:
            plan = await self.server.aplan_proxy(self._head(request))
            proxied = await self.server.forwarder.asend(plan, request.stream())
        except ATHError as error:
            return to_response(error.to_response())
        response = StreamingResponse(proxied.body, status_code=proxied.status)
        response.raw_headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in proxied.headers
        ]
        return response

    # -- the native API ------------------------------------------------------------------

    def require(self, scopes: Sequence[str] = ()) -> Callable[[Callable[P, Any]], AsyncEndpoint[P]]:
        """Only requests with a valid ATH token (``Authorization: Bearer``, ``X-ATH-Agent-ID``)
        whose (method, path) the scope map grants and which hold ``scopes``; the token's
        binding lands on ``request.state.ath`` (:func:`ath_token`)."""
        server = self.server
        wanted = tuple(scopes)

        def decorator(endpoint: Callable[P, Any]) -> AsyncEndpoint[P]:
            is_async = _is_async(endpoint)

            @functools.wraps(endpoint)
            async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                request = _find_request(endpoint, args, kwargs)
                try:
                    request.state.ath = await server.acheck(self._head(request), wanted)
                except ATHError as error:
                    return to_response(error.to_response())
                if is_async:
                    return await endpoint(*args, **kwargs)
                return await run_in_threadpool(endpoint, *args, **kwargs)

            return wrapper

        return decorator

    # -- lifespan --------------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self, app: object) -> AsyncIterator[None]:
        """``Starlette(lifespan=ath.lifespan)``: a store that does not answer fails the start;
        the stores and HTTP clients are closed at shutdown."""
        await self.server.startup()
        try:
            yield
        finally:
            try:
                await self.server.aclose()
            finally:
                self.server.close()


def ath_token(request: Request) -> TokenInfo | None:
    """The validated token a ``@ath.require`` endpoint runs with."""
    value = getattr(request.state, "ath", None)
    return value if isinstance(value, TokenInfo) else None


def _is_async(endpoint: Callable[..., Any]) -> bool:
    while isinstance(endpoint, functools.partial):
        endpoint = endpoint.func
    return inspect.iscoroutinefunction(endpoint) or inspect.iscoroutinefunction(
        type(endpoint).__call__
    )


def _find_request(
    endpoint: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Request:
    for value in (*args, *kwargs.values()):
        if isinstance(value, Request):
            return value
    raise TypeError(f"{endpoint!r} is protected by ATH but was not called with a Request")
