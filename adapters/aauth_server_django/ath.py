"""ATH in a Django project: ``use_ath(ATHServer(config))`` at startup,
``path("", include("aauth_server_django.ath_urls"))`` (sync views) or
``include("aauth_server_django.ath_async_urls")`` (async views, ASGI), and
``@ath_required(scopes=[...])`` on the native API's views (``def`` or ``async def``).

Only conversion and routing live here: the core answers every ATH route, and a gateway's
proxy streams bodies both ways.  Request bodies are read up to the configured limit (one
byte more tells the core it was exceeded); the raw request target is what the core judges.
The views are CSRF-exempt: the ATH API is bearer/credential-authenticated JSON, and the ATH
pages carry their own CSRF token bound to a browser cookie and refuse cross-origin posts.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from functools import wraps
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from asgiref.sync import iscoroutinefunction
from django.http import Http404, StreamingHttpResponse
from django.http import HttpRequest as DjangoRequest
from django.http.response import HttpResponseBase
from django.urls.resolvers import RegexPattern
from django.views.decorators.csrf import csrf_exempt

from aauth_server.ath import ATHError, ATHServer, TokenInfo
from aauth_server.ath.discovery import GATEWAY_PATH, NATIVE_PATH
from aauth_server.http import Headers, HttpRequest

from .convert import raw_target, request_headers, to_django

__all__ = [
    "ATHEndpoints",
    "aath_endpoint",
    "ath_endpoint",
    "ath_required",
    "ath_token",
    "get_ath",
    "use_ath",
]

ViewT = TypeVar("ViewT", bound=Callable[..., Any])
CHUNK = 64 * 1024
_lock = threading.Lock()
_server: ATHServer | None = None


def use_ath(server: ATHServer | None) -> None:
    """Serve ``server`` (built in code: its configuration holds hooks and policies)."""
    global _server
    with _lock:
        _server = server


def get_ath() -> ATHServer:
    server = _server
    if server is None:
        raise RuntimeError("no ATH server: call aauth_server_django.ath.use_ath(ATHServer(config))")
    return server


def _origin(server: ATHServer) -> str:
    parts = urlsplit(server.config.base_url)
    return f"{parts.scheme}://{parts.netloc}"


def _head(server: ATHServer, request: DjangoRequest, body: bytes = b"") -> HttpRequest:
    return HttpRequest(
        request.method or "GET",
        _origin(server) + raw_target(request),
        request_headers(request),
        body,
    )


def _body(server: ATHServer, request: DjangoRequest) -> bytes:
    return request.read(server.config.max_body + 1)


def _stream(proxied_status: int, headers: Headers, body: Any) -> StreamingHttpResponse:
    response = StreamingHttpResponse(body, status=proxied_status)
    del response["Content-Type"]
    joined: dict[str, list[str]] = {}
    for name, value in headers:
        if name.lower() == "set-cookie":
            response.cookies.load(value)
            continue
        joined.setdefault(name, []).append(value)
    for name, values in joined.items():
        response[name] = ", ".join(values)
    return response


# -- views -------------------------------------------------------------------------------------


@csrf_exempt
def ath_endpoint(request: DjangoRequest) -> HttpResponseBase:
    server = get_ath()
    if server.is_proxy(request.path):
        return _proxy(server, request)
    answer = server.handle(_head(server, request, _body(server, request)))
    if answer is None:
        raise Http404("not an ATH URL")
    return to_django(answer)


def _proxy(server: ATHServer, request: DjangoRequest) -> HttpResponseBase:
    def body() -> Iterator[bytes]:
        while True:
            chunk = request.read(CHUNK)
            if not chunk:
                return
            yield chunk

    try:
        plan = server.plan_proxy(_head(server, request))
        proxied = server.forwarder.send(plan, body())
    except ATHError as error:
        return to_django(error.to_response())
    return _stream(proxied.status, proxied.headers, proxied.body)


@csrf_exempt
async def aath_endpoint(request: DjangoRequest) -> HttpResponseBase:
    server = get_ath()
    if server.is_proxy(request.path):
        return await _aproxy(server, request)
    answer = await server.ahandle(_head(server, request, _body(server, request)))
    if answer is None:
        raise Http404("not an ATH URL")
    return to_django(answer)


async def _aproxy(server: ATHServer, request: DjangoRequest) -> HttpResponseBase:
    async def body() -> AsyncIterator[bytes]:
        # Django's ASGI handler has spooled the body already: reading it does not block.
        while True:
            chunk = request.read(CHUNK)
            if not chunk:
                return
            yield chunk

    try:
        plan = await server.aplan_proxy(_head(server, request))
        proxied = await server.forwarder.asend(plan, body())
    except ATHError as error:
        return to_django(error.to_response())
    return _stream(proxied.status, proxied.headers, proxied.body)


class ATHEndpoints(RegexPattern):
    """Matches every path the ATH server in use owns (its discovery document and
    ``/ath/*`` under its base URL's path); include the URLconf at the site root."""

    def __init__(self) -> None:
        super().__init__(r"^ath-endpoints\Z", is_endpoint=True)

    def match(self, path: str) -> tuple[str, tuple[Any, ...], dict[str, Any]] | None:
        server = get_ath()
        full = "/" + path
        well_known = NATIVE_PATH if server.config.mode == "native" else GATEWAY_PATH
        if full == server.prefix + well_known or server.owns(full):
            return ("", (), {})
        return None

    def __str__(self) -> str:
        return "<ATH endpoints>"


# -- the native API ----------------------------------------------------------------------------


def ath_required(scopes: Sequence[str] = ()) -> Callable[[ViewT], ViewT]:
    """Only requests with a valid ATH token whose (method, path) the scope map grants and
    which hold ``scopes``; the token's binding lands on ``request.ath``."""
    wanted = tuple(scopes)

    def decorator(view: ViewT) -> ViewT:
        wrapper: Callable[..., Any]
        if iscoroutinefunction(view):
            async_view = cast(Callable[..., Awaitable[HttpResponseBase]], view)

            @wraps(view)
            async def async_wrapper(
                request: DjangoRequest, *args: Any, **kwargs: Any
            ) -> HttpResponseBase:
                server = get_ath()
                try:
                    info = await server.acheck(_head(server, request), wanted)
                except ATHError as error:
                    return to_django(error.to_response())
                request.ath = info  # type: ignore[attr-defined]
                return await async_view(request, *args, **kwargs)

            wrapper = async_wrapper
        else:

            @wraps(view)
            def sync_wrapper(request: DjangoRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
                server = get_ath()
                try:
                    info = server.check(_head(server, request), wanted)
                except ATHError as error:
                    return to_django(error.to_response())
                request.ath = info  # type: ignore[attr-defined]
                return cast(HttpResponseBase, view(request, *args, **kwargs))

            wrapper = sync_wrapper
        # Bearer-token API calls: a cross-site form cannot carry the Authorization header.
        return cast(ViewT, csrf_exempt(wrapper))

    return decorator


def ath_token(request: DjangoRequest) -> TokenInfo | None:
    value = getattr(request, "ath", None)
    return value if isinstance(value, TokenInfo) else None
