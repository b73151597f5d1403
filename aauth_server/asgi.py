"""A minimal ASGI shell around a neutral ``HttpRequest -> HttpResponse`` handler.

Used by the agent provider and other small servers the core ships, so they run under
uvicorn without pulling a web framework into the core.  :class:`RequestLimits` is the same
Host check and body limit as ASGI middleware, for frameworks that read a whole body before
any view runs (Django's ASGI handler).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from .errors import RequestRejected
from .http import (
    DEFAULT_MAX_BODY,
    HttpRequest,
    HttpResponse,
    MalformedHost,
    checked_host,
    small_uint,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Handler = Callable[[HttpRequest], HttpResponse]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY = DEFAULT_MAX_BODY


class _BodyTooLarge(Exception):
    pass


def request_from_scope(scope: Scope, body: bytes) -> HttpRequest:
    """The neutral request; a missing Host falls back to the server address, a malformed
    one (or several) raises :class:`RequestRejected` (``400``)."""
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
    hosts = [v for k, v in headers if k.lower() == "host"]
    try:
        if len(hosts) > 1:
            raise MalformedHost("more than one Host line")
        host = checked_host(hosts[0]) if hosts else None
    except MalformedHost:
        raise RequestRejected.malformed_host() from None
    if host is None:
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    target = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
    if scope.get("query_string"):
        target += "?" + scope["query_string"].decode("latin-1")
    url = f"{scope.get('scheme', 'http')}://{host}{target}"
    return HttpRequest(scope["method"], url, headers, body)


def declared_length(scope: Scope) -> int | None:
    """The ``Content-Length`` the client declared, or None (absent or not a number)."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            return small_uint(value.decode("latin-1"))
    return None


async def read_body(receive: Receive, limit: int = MAX_BODY) -> bytes | None:
    """The whole body, or None when the client left or the body passed ``limit`` (the read
    stops there: at most ``limit`` + one chunk is ever held)."""
    body, _ = await _read_within(receive, limit)
    return body


async def _read_within(receive: Receive, limit: int) -> tuple[bytes | None, bool]:
    """:func:`read_body`, and whether the client still has body to send."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None, False
        chunk = message.get("body", b"")
        more = bool(message.get("more_body", False))
        size += len(chunk)
        if size > limit:
            return None, more
        chunks.append(chunk)
        if not more:
            return b"".join(chunks), False


async def send_response(send: Send, response: HttpResponse) -> None:
    await send(
        {"type": "http.response.start", "status": response.status, "headers": _raw(response)}
    )
    await send({"type": "http.response.body", "body": response.body})


def _raw(response: HttpResponse) -> list[tuple[bytes, bytes]]:
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
    headers.append((b"content-length", str(len(response.body)).encode()))
    return headers


#: How long a refused request's unread body is still read (and dropped) after the answer.
LINGER_SECONDS = 5.0


async def linger(receive: Receive, seconds: float = LINGER_SECONDS) -> None:
    """Read and drop what is left of the request body, for at most ``seconds``.

    A server that answers before reading the body (a ``413``) and then closes a socket
    with unread bytes in it makes the kernel reset the connection: the reset can reach the
    client before it read the answer, and discards it (the client saw a ``413`` with an
    empty body, or nothing).  Draining until the client has sent everything (or gives up,
    or the time is up) lets the connection close cleanly after the answer.  Nothing read
    here is kept: memory stays bounded whatever the client sends.
    """
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = await asyncio.wait_for(receive(), left)
        except TimeoutError:
            return
        if message.get("type") != "http.request" or not message.get("more_body", False):
            return


async def send_refusal(send: Send, receive: Receive, response: HttpResponse) -> None:
    """Send ``response`` (an answer given before the body was read) whole at once, then
    :func:`linger` over the unread body before completing it, so the server's close
    never resets the answer away."""
    await send(
        {"type": "http.response.start", "status": response.status, "headers": _raw(response)}
    )
    await send({"type": "http.response.body", "body": response.body, "more_body": True})
    await linger(receive)
    await send({"type": "http.response.body", "body": b""})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class _Unread(HttpResponse):
    """A refusal sent before the body was read whole: answered with :func:`send_refusal`."""


async def _answer(send: Send, receive: Receive, response: HttpResponse) -> None:
    if isinstance(response, _Unread):
        await send_refusal(send, receive, response)
    else:
        await send_response(send, response)


def _too_large(limit: int) -> _Unread:
    refused = RequestRejected.body_too_large(limit).to_response()
    return _Unread(refused.status, refused.headers, refused.body)


async def _request(scope: Scope, receive: Receive, limit: int) -> HttpRequest | HttpResponse:
    """The neutral request, or the ``400``/``413`` problem answering it."""
    declared = declared_length(scope)
    if declared is not None and declared > limit:
        return _too_large(limit)
    body, more = await _read_within(receive, limit)
    if body is None:
        return _too_large(limit) if more else RequestRejected.body_too_large(limit).to_response()
    try:
        return request_from_scope(scope, body)
    except RequestRejected as rejected:
        return rejected.to_response()


def asgi_app(handler: Handler, *, max_body: int = MAX_BODY) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = await _request(scope, receive, max_body)
        if isinstance(request, HttpResponse):
            await _answer(send, receive, request)
            return
        await send_response(send, handler(request))

    return app


AsyncHandler = Callable[[HttpRequest], Awaitable[HttpResponse]]


def async_asgi_app(handler: AsyncHandler, *, max_body: int = MAX_BODY) -> ASGIApp:
    """The twin of :func:`asgi_app` for an async handler (``PersonServer.ahandle``), so a
    long poll waits on the event loop instead of holding a thread."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = await _request(scope, receive, max_body)
        if isinstance(request, HttpResponse):
            await _answer(send, receive, request)
            return
        await send_response(send, await handler(request))

    return app


class RequestLimits:
    """ASGI middleware: what reaches ``app`` has a sound ``Host`` and a bounded body.

    - A malformed ``Host``, several ``Host`` lines, or (with ``allowed_hosts``) a host not in
      the list answer ``400`` (problem+json ``invalid_request``) without calling the app.
    - A declared ``Content-Length`` over ``max_body`` answers ``413`` without calling the
      app; a body without one is passed through until it crosses the limit, then the client
      gets the ``413`` and the app sees the client leave (``http.disconnect``), with
      anything it still sends dropped.

    ``paths`` (prefixes) limits it to part of the app; by default every path.  Wrap a
    handler that reads whole bodies before its views run, or renders its own error pages
    from the Host, such as Django's ``get_asgi_application()`` (under ``DEBUG`` its 404
    page fails on a Host it does not allow).  ``allowed_hosts`` are host names without a
    port, compared case-insensitively; ``"*"`` allows any well-formed Host.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body: int = MAX_BODY,
        allowed_hosts: Sequence[str] | None = None,
        paths: tuple[str, ...] | None = None,
    ) -> None:
        if max_body < 1:
            raise ValueError("max_body must be positive")
        self.app = app
        self.max_body = max_body
        self.allowed_hosts = (
            None
            if allowed_hosts is None or "*" in allowed_hosts
            else frozenset(h.lower() for h in allowed_hosts)
        )
        self.paths = paths

    def _host_refusal(self, scope: Scope) -> RequestRejected | None:
        hosts = [v for k, v in scope.get("headers", ()) if k.lower() == b"host"]
        if not hosts:
            return None
        try:
            if len(hosts) > 1:
                raise MalformedHost("more than one Host line")
            host = checked_host(hosts[0].decode("latin-1"))
        except MalformedHost:
            return RequestRejected.malformed_host()
        if self.allowed_hosts is not None and host_name(host) not in self.allowed_hosts:
            return RequestRejected("the Host header names a host this server does not serve")
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (
            self.paths is not None and not str(scope.get("path", "")).startswith(self.paths)
        ):
            await self.app(scope, receive, send)
            return
        refusal = self._host_refusal(scope)
        if refusal is not None:
            await send_response(send, refusal.to_response())
            return
        limit = self.max_body
        declared = declared_length(scope)
        if declared is not None and declared > limit:
            await send_refusal(send, receive, RequestRejected.body_too_large(limit).to_response())
            return
        size = 0
        refused = answered = started = False

        async def limited_receive() -> Message:
            nonlocal size, refused, answered
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limit:
                    refused = True
                    if not started:
                        answered = True
                        if message.get("more_body", False):
                            refusal = RequestRejected.body_too_large(limit).to_response()
                            await send_refusal(send, receive, refusal)
                        else:
                            await send_response(
                                send, RequestRejected.body_too_large(limit).to_response()
                            )
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if answered:
                return  # the 413 went out instead of anything the app says
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)


def host_name(host: str) -> str:
    """The name of a checked ``host[:port]``, lower-cased, without the port."""
    if host.startswith("["):
        return host[: host.index("]") + 1].lower()
    return host.partition(":")[0].lower()
