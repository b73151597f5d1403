"""Django request -> neutral :class:`HttpRequest`; neutral :class:`HttpResponse` -> Django.

Only conversion lives here: every protocol decision is the core guard's.
"""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest as DjangoRequest
from django.http import HttpResponse as DjangoResponse
from django.http import StreamingHttpResponse
from django.http.response import HttpResponseBase

from aauth_server.http import Headers, HttpRequest, HttpResponse
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


def to_neutral(request: DjangoRequest, guard: ResourceGuard) -> HttpRequest:
    # get_host() enforces ALLOWED_HOSTS; its DisallowedHost becomes Django's own 400.
    url = guard.public_url(request.scheme or "http", request.get_host(), raw_target(request))
    return HttpRequest(request.method or "GET", url, request_headers(request), request.body)


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
