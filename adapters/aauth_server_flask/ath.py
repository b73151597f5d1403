"""ATH in Flask: ``ath = ATH(config, app)`` (or ``ath.init_app(app)``) and
``@ath.require(scopes=[...])`` on the native API's views (plain or ``async def``).

Every ATH route (discovery and ``/ath/*``) is answered by the core's sync driver; a gateway's
proxy streams the agent's body up and the provider's body back.  Request bodies are read up
to the configured limit (one byte more tells the core it was exceeded).  The raw request
target (``RAW_URI``/``REQUEST_URI``) is what the core judges, and the ATH rules never merge
slashes, so ``//`` in a proxied path reaches the core and is refused there, not redirected.

``async def`` views are checked with the sync driver too: Flask runs each async view on an
event loop of its own, which a pooled async Redis client bound to another loop cannot serve.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from flask import Flask, Response, g, request

from aauth_server.ath import ATHConfig, ATHError, ATHServer, TokenInfo
from aauth_server.ath.discovery import GATEWAY_PATH, NATIVE_PATH
from aauth_server.http import HttpRequest

from .convert import raw_target, to_flask_response

__all__ = ["ATH", "ath_token"]

F = TypeVar("F", bound=Callable[..., Any])
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
CHUNK = 64 * 1024


class ATH:
    def __init__(self, server: ATHServer | ATHConfig, app: Flask | None = None) -> None:
        self.server = server if isinstance(server, ATHServer) else ATHServer(server)
        self.config = self.server.config
        parts = urlsplit(self.config.base_url)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        prefix = self.config.prefix
        well_known = NATIVE_PATH if self.config.mode == "native" else GATEWAY_PATH
        options: dict[str, Any] = {"merge_slashes": False, "strict_slashes": False}
        app.add_url_rule(
            prefix + well_known, "ath_discovery", self._view, methods=["GET"], **options
        )
        app.add_url_rule(prefix + "/ath/<path:rest>", "ath", self._view, methods=METHODS, **options)
        app.extensions["aauth_ath"] = self

    # -- conversion ------------------------------------------------------------------------

    def _head(self, body: bytes = b"") -> HttpRequest:
        headers = list(request.headers.items())
        return HttpRequest(
            request.method, self._origin + raw_target(request.environ), headers, body
        )

    def _body(self) -> bytes:
        # At most one byte past the limit is read into memory; the core answers 413.
        return request.stream.read(self.config.max_body + 1)

    # -- views -----------------------------------------------------------------------------

    def _view(self, **_rest: str) -> Response:
        server = self.server
        if server.is_proxy(request.path):
            return self._proxy()
        answer = server.handle(self._head(self._body()))
        if answer is None:
            answer = ATHError("NOT_FOUND", "no such ATH endpoint").to_response()
        return to_flask_response(answer)

    def _proxy(self) -> Response:
        stream = request.stream

        def body() -> Iterator[bytes]:
            while True:
                chunk = stream.read(CHUNK)
                if not chunk:
                    return
                yield chunk

        try:
            plan = self.server.plan_proxy(self._head())
            proxied = self.server.forwarder.send(plan, body())
        except ATHError as error:
            return to_flask_response(error.to_response())
        response = Response(proxied.body, status=proxied.status, direct_passthrough=True)
        response.headers.clear()
        for name, value in proxied.headers:
            response.headers.add(name, value)
        response.call_on_close(proxied.close)
        return response

    # -- the native API ------------------------------------------------------------------

    def require(self, scopes: Sequence[str] = ()) -> Callable[[F], F]:
        """Only requests with a valid ATH token whose (method, path) the scope map grants and
        which hold ``scopes``; the token's binding lands on ``flask.g.ath``."""
        wanted = tuple(scopes)

        def decorate(view: F) -> F:
            if inspect.iscoroutinefunction(view):

                @functools.wraps(view)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    try:
                        g.ath = self.server.check(self._head(), wanted)
                    except ATHError as error:
                        return to_flask_response(error.to_response())
                    return await view(*args, **kwargs)

                return cast(F, async_wrapper)

            @functools.wraps(view)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                try:
                    g.ath = self.server.check(self._head(), wanted)
                except ATHError as error:
                    return to_flask_response(error.to_response())
                return view(*args, **kwargs)

            return cast(F, wrapper)

        return decorate


def ath_token() -> TokenInfo | None:
    """The validated token the current ``@ath.require`` view runs with."""
    value = g.get("ath")
    return value if isinstance(value, TokenInfo) else None
