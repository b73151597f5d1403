"""Starlette request -> neutral ``HttpRequest`` and neutral ``HttpResponse`` -> Starlette response.

Only conversion lives here: no protocol decision is made in this module.
"""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import quote

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from aauth_server.asgi import send_refusal
from aauth_server.errors import RequestRejected
from aauth_server.http import (
    DEFAULT_MAX_BODY,
    HttpRequest,
    HttpResponse,
    MalformedHost,
    decode_header_lines,
    small_uint,
)

#: RFC 3986 ``pchar`` plus ``/``: what a path keeps unencoded.
PATH_SAFE = "/:@!$&'()*+,;=-._~"


class PublicUrl(Protocol):
    """What builds a request's absolute URL: a ``ResourceGuard``, or the Person Server mount.
    A ``body_limit`` attribute (bytes) caps the body read; without one, 1 MiB."""

    def public_url(self, scheme: str, host: str | None, target: str) -> str: ...


def raw_target(request: Request) -> str:
    """The request target exactly as sent: percent-encoding kept, query appended."""
    scope = request.scope
    raw_path: bytes | None = scope.get("raw_path")
    # ``raw_path`` is optional in ASGI; without it the best we have is the decoded path
    # re-quoted, which matches every target that was sent in canonical form.
    path = raw_path.decode("latin-1") if raw_path else quote(scope["path"], safe=PATH_SAFE)
    query: bytes = scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


async def read_body(request: Request, limit: int) -> bytes:
    """The body, reading at most ``limit`` + 1 bytes: more is ``413`` (:class:`RequestRejected`).

    A declared ``Content-Length`` over the limit is refused before reading anything.  The
    bytes land in Starlette's own cache, so the endpoint's ``await request.body()`` gets them.
    Starlette itself has no body limit.
    """
    cached: bytes | None = getattr(request, "_body", None)
    if cached is None:
        declared = small_uint(request.headers.get("content-length"))
        if declared is not None and declared > limit:
            raise RequestRejected.body_too_large(limit)
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise RequestRejected.body_too_large(limit)
                chunks.append(chunk)
        except ClientDisconnect:
            raise RequestRejected("the client went away before sending the body") from None
        cached = request._body = b"".join(chunks)
    if len(cached) > limit:
        raise RequestRejected.body_too_large(limit)
    return cached


#: HTTP versions whose requests have a body only when they say so (RFC 9112 6.3).
_FRAMED_BY_HEADERS = ("1.1", "1.0")


async def to_http_request(request: Request, guard: PublicUrl) -> HttpRequest:
    """Read the body once, within the server's body limit (Starlette caches it for the
    endpoint), and keep raw header lines.  A malformed Host or an oversized body raises
    :class:`RequestRejected` (``400``/``413``)."""
    checked, unread = request_head(request, guard)
    if unread:
        checked.body = await read_body(request, getattr(guard, "body_limit", DEFAULT_MAX_BODY))
    return checked


def request_head(request: Request, guard: PublicUrl) -> tuple[HttpRequest, bool]:
    """The neutral request without its body, and whether a body must still be read
    (:func:`read_body`, then set ``body``): what :func:`to_http_request` does before its
    one wait.  A malformed Host raises :class:`RequestRejected` (``400``)."""
    # Signed header values must reach the verifier byte for byte, in wire order, so the
    # ASGI header list is used rather than Starlette's (combining) Headers mapping.
    scope = request.scope
    headers, combined, hosts = decode_header_lines(scope["headers"])
    try:
        if len(hosts) > 1:
            raise MalformedHost("more than one Host line")  # RFC 9112 3.2: 400
        url = guard.public_url(
            scope.get("scheme", "http"), hosts[0] if hosts else None, raw_target(request)
        )
    except MalformedHost:
        raise RequestRejected.malformed_host() from None
    # An HTTP/1.x request without Content-Length or Transfer-Encoding has no body (RFC 9112
    # 6.3): nothing to wait for.  Anything else (HTTP/2, a declared body) is read, once,
    # within the body limit.
    unread = (
        "content-length" in combined
        or "transfer-encoding" in combined
        or scope.get("http_version") not in _FRAMED_BY_HEADERS
    )
    return HttpRequest.from_wire(scope["method"], url, headers, combined), unread


class _LingeringResponse(Response):
    """A ``413`` sent before the body was read whole: the answer goes out at once, then the
    rest of the body is drained (bounded) before the connection may close
    (:func:`aauth_server.asgi.send_refusal`), so the answer is never lost to a reset."""

    def __init__(self, response: HttpResponse) -> None:
        super().__init__(content=response.body, status_code=response.status)
        self.neutral = response

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send_refusal(send, receive, self.neutral)


def to_response(response: HttpResponse, request: Request | None = None) -> Response:
    """Every header line of ``response`` in order, and the exact body bytes.  Given the
    ``request`` a ``413`` answers, one whose body was not read to its end lingers."""
    if (
        request is not None
        and response.status == 413
        and not getattr(request, "_stream_consumed", True)
    ):
        return _LingeringResponse(response)
    rendered = Response(content=response.body, status_code=response.status)
    given = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
    names = {k for k, _ in given}
    # Starlette adds content-length itself; keep it unless the core set one explicitly.
    rendered.raw_headers = given + [h for h in rendered.raw_headers if h[0] not in names]
    return rendered
