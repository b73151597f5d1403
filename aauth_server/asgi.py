"""A minimal ASGI shell around a neutral ``HttpRequest -> HttpResponse`` handler.

Used by the agent provider and other small servers the core ships, so they run under
uvicorn without pulling a web framework into the core.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .http import HttpRequest, HttpResponse

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Handler = Callable[[HttpRequest], HttpResponse]

MAX_BODY = 1024 * 1024


def request_from_scope(scope: Scope, body: bytes) -> HttpRequest:
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
    host = next((v for k, v in headers if k.lower() == "host"), None)
    if host is None:
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    target = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
    if scope.get("query_string"):
        target += "?" + scope["query_string"].decode("latin-1")
    url = f"{scope.get('scheme', 'http')}://{host}{target}"
    return HttpRequest(scope["method"], url, headers, body)


async def read_body(receive: Receive, limit: int = MAX_BODY) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_response(send: Send, response: HttpResponse) -> None:
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
    headers.append((b"content-length", str(len(response.body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


def asgi_app(handler: Handler) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        if body is None:
            await send_response(send, HttpResponse.json(413, {"error": "invalid_request"}))
            return
        await send_response(send, handler(request_from_scope(scope, body)))

    return app


AsyncHandler = Callable[[HttpRequest], Awaitable[HttpResponse]]


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def async_asgi_app(handler: AsyncHandler) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The twin of :func:`asgi_app` for an async handler (``PersonServer.ahandle``), so a
    long poll waits on the event loop instead of holding a thread."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        if body is None:
            await send_response(send, HttpResponse.json(413, {"error": "invalid_request"}))
            return
        await send_response(send, await handler(request_from_scope(scope, body)))

    return app
