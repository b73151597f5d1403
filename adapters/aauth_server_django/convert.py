"""Django request -> neutral :class:`HttpRequest`; neutral :class:`HttpResponse` -> Django.

Only conversion lives here: every protocol decision is the core guard's.
"""

from __future__ import annotations

from collections.abc import Callable

from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.exceptions import DisallowedHost, RequestDataTooBig
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest as DjangoRequest
from django.http import HttpResponse as DjangoResponse
from django.http import StreamingHttpResponse
from django.http.response import HttpResponseBase

from aauth_server.errors import RequestRejected
from aauth_server.http import (
    Headers,
    HttpRequest,
    HttpResponse,
    MalformedHost,
    checked_host,
    small_uint,
)
from aauth_server.resource import ResourceGuard

# WSGI keeps these two outside the HTTP_* namespace.
_UNPREFIXED = {"CONTENT_TYPE": "content-type", "CONTENT_LENGTH": "content-length"}


def request_headers(request: DjangoRequest) -> Headers:
    """Header lines as received: raw ASGI lines when there are any, else de-mangled META.

    Under WSGI the server has already joined repeated lines into one value.
    """
    if isinstance(request, ASGIRequest):
        return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]]
    headers: Headers = []
    for key, value in request.META.items():
        if not isinstance(value, str):
            continue
        if key.startswith("HTTP_"):
            headers.append((key[5:].lower().replace("_", "-"), value))
        elif key in _UNPREFIXED and value:
            headers.append((_UNPREFIXED[key], value))
    return headers


def raw_target(request: DjangoRequest) -> str:
    """The request target exactly as sent, percent-encoding included, where the server tells."""
    if isinstance(request, ASGIRequest):
        raw_path: bytes | None = request.scope.get("raw_path")
        if raw_path:
            query = request.scope.get("query_string") or b""
            if isinstance(query, bytes):
                query = query.decode("latin-1")
            return raw_path.decode("latin-1") + ("?" + query if query else "")
    for key in ("RAW_URI", "REQUEST_URI"):
        value = request.META.get(key)
        if isinstance(value, str) and value.startswith("/"):
            return value
    # Rebuilt from the decoded path: an encoding the client chose may come back different.
    return request.get_full_path()


#: Host values that passed :func:`request_host`, keyed by the value and the settings it was
#: judged under (``ALLOWED_HOSTS``, and ``DEBUG`` when that is empty): a server sees the
#: same few Host values on every request.  Bounded; emptied when full.
_VALID_HOSTS: dict[tuple[str, tuple[str, ...], bool | None], None] = {}
_VALID_HOSTS_MAX = 256


def request_host(request: DjangoRequest) -> str:
    """``request.get_host()`` (ALLOWED_HOSTS enforced), refusing a malformed or disallowed
    Host with a ``400`` problem (:class:`RequestRejected`) as the other adapters do.

    A Host line value already judged under the same ``DEBUG`` and ``ALLOWED_HOSTS`` is
    answered from a small cache (``get_host`` returns exactly that value for it)."""
    meta = request.META
    raw = meta.get("HTTP_HOST")
    key = None
    if isinstance(raw, str) and not (
        "HTTP_X_FORWARDED_HOST" in meta and settings.USE_X_FORWARDED_HOST
    ):
        # get_host judges exactly this value (the Host line, no forwarded host in play)
        # against ALLOWED_HOSTS, or, when that is empty, against DEBUG's localhost list.
        allowed = tuple(settings.ALLOWED_HOSTS)
        key = (raw, allowed, None if allowed else bool(settings.DEBUG))
        if key in _VALID_HOSTS:
            return raw
    try:
        if isinstance(raw, str):
            checked_host(raw)
    except MalformedHost:
        raise RequestRejected.malformed_host() from None
    try:
        host = request.get_host()
    except DisallowedHost:
        raise RequestRejected("the Host header names a host this server does not serve") from None
    if key is not None and host == raw:
        if len(_VALID_HOSTS) >= _VALID_HOSTS_MAX:
            _VALID_HOSTS.clear()
        _VALID_HOSTS[key] = None
    return host


def read_body(request: DjangoRequest, limit: int) -> bytes:
    """The body, reading at most ``limit`` + 1 bytes: more is ``413`` (:class:`RequestRejected`).

    A declared ``Content-Length`` over the limit is refused before reading.  Django's own
    ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (2.5 MB by default) refuses a larger declared length when
    ``request.body`` is read: the smaller limit wins, and both answer ``413`` here.  A body
    without a length (chunked, under ASGI) is read through ``request.read(limit + 1)`` and
    left where Django's ``request.body`` finds it.  Under ASGI Django's handler has already
    received the whole body (spooled to disk beyond ``FILE_UPLOAD_MAX_MEMORY_SIZE``) before
    any view runs; :class:`aauth_server.asgi.RequestLimits` stops it at the server instead.
    """
    raw = request.META.get("CONTENT_LENGTH")
    declared = small_uint(raw) if isinstance(raw, str) else None
    if declared is not None and declared > limit:
        raise RequestRejected.body_too_large(limit)
    try:
        if hasattr(request, "_body") or declared is not None:
            body = request.body
        else:
            body = request.read(limit + 1)
            # Django's own cache: the view's request.body (and POST parsing) reads these bytes.
            request._body = body
    except RequestDataTooBig:
        raise RequestRejected.body_too_large(limit) from None
    if len(body) > limit:
        raise RequestRejected.body_too_large(limit)
    return body


#: ASGI ``http_version`` / WSGI ``SERVER_PROTOCOL`` values whose requests have a body only
#: when a Content-Length or Transfer-Encoding line says so (RFC 9112 section 6.3).
_FRAMED_BY_HEADERS = frozenset({"1.1", "1.0"})
_FRAMED_BY_HEADERS_WSGI = frozenset({"HTTP/1.1", "HTTP/1.0"})
#: META keys of the lines that announce a body (ASGIRequest files a ``Content-Length`` line
#: sent in another case under ``HTTP_CONTENT_LENGTH``).
_FRAMING_KEYS = ("CONTENT_LENGTH", "HTTP_CONTENT_LENGTH", "HTTP_TRANSFER_ENCODING")


def has_no_body(request: DjangoRequest) -> bool:
    """True for an HTTP/1.x request without Content-Length or Transfer-Encoding, which has no
    body (RFC 9112 section 6.3): nothing to read.  Anything else (HTTP/2, a declared body, a
    server that does not say its protocol) is read by :func:`read_body`."""
    meta = request.META
    for key in _FRAMING_KEYS:
        if key in meta:
            return False
    if isinstance(request, ASGIRequest):
        return request.scope.get("http_version") in _FRAMED_BY_HEADERS
    return meta.get("SERVER_PROTOCOL") in _FRAMED_BY_HEADERS_WSGI


def neutral_request(
    request: DjangoRequest, public_url: Callable[[str, str, str], str], limit: int
) -> HttpRequest:
    """The neutral request for a server whose ``public_url`` builds the absolute URL."""
    try:
        url = public_url(request.scheme or "http", request_host(request), raw_target(request))
    except MalformedHost:
        raise RequestRejected.malformed_host() from None
    body = b"" if has_no_body(request) else read_body(request, limit)
    return HttpRequest(request.method or "GET", url, request_headers(request), body)


def to_neutral(request: DjangoRequest, guard: ResourceGuard) -> HttpRequest:
    """Host checked (``400``), body within ``guard.body_limit`` (``413``): both raise
    :class:`RequestRejected`."""
    return neutral_request(request, guard.public_url, guard.body_limit)


def to_django(response: HttpResponse) -> DjangoResponse:
    out = DjangoResponse(response.body, status=response.status)
    del out["Content-Type"]  # the core's own headers say what the body is
    joined: dict[str, list[str]] = {}
    for name, value in response.headers:
        if name.lower() == "set-cookie":
            # Cookies cannot be comma-joined; Django writes one line per cookie.
            out.cookies.load(value)
            continue
        joined.setdefault(name, []).append(value)
    for name, values in joined.items():
        # Django holds one line per name; RFC 9110 joining keeps list fields equivalent.
        out[name] = ", ".join(values)
    return out


def _head(response: HttpResponseBase) -> list[tuple[str, str]]:
    headers = list(response.items())
    headers += [("Set-Cookie", morsel.OutputString()) for morsel in response.cookies.values()]
    return headers


def _sync_body(response: HttpResponseBase) -> bytes:
    if isinstance(response, StreamingHttpResponse):
        return b"".join(response.streaming_content)  # type: ignore[arg-type]
    return response.content if isinstance(response, DjangoResponse) else b""


def from_django(response: HttpResponseBase) -> HttpResponse:
    """A view's Django response as a neutral one (status, header lines, the whole body)."""
    if isinstance(response, StreamingHttpResponse) and response.is_async:
        return async_to_sync(afrom_django)(response)
    return HttpResponse(response.status_code, _head(response), _sync_body(response))


async def afrom_django(response: HttpResponseBase) -> HttpResponse:
    if isinstance(response, StreamingHttpResponse) and response.is_async:
        parts = [bytes(part) async for part in response.streaming_content]  # type: ignore[union-attr]
        return HttpResponse(response.status_code, _head(response), b"".join(parts))
    return HttpResponse(response.status_code, _head(response), _sync_body(response))
