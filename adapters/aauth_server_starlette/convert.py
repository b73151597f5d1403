"""Starlette request -> neutral ``HttpRequest`` and neutral ``HttpResponse`` -> Starlette response.

Only conversion lives here: no protocol decision is made in this module.
"""

from __future__ import annotations

from typing import Protocol
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from aauth_server.http import HttpRequest, HttpResponse

#: RFC 3986 ``pchar`` plus ``/``: what a path keeps unencoded.
PATH_SAFE = "/:@!$&'()*+,;=-._~"


class PublicUrl(Protocol):
    """What builds a request's absolute URL: a ``ResourceGuard``, or the Person Server mount."""

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


#: HTTP versions whose requests have a body only when they say so (RFC 9112 6.3).
_FRAMED_BY_HEADERS = ("1.1", "1.0")


async def to_http_request(request: Request, guard: PublicUrl) -> HttpRequest:
    """Read the body once (Starlette caches it for the endpoint) and keep raw header lines."""
    # Signed header values must reach the verifier byte for byte, in wire order, so the
    # ASGI header list is used rather than Starlette's (combining) Headers mapping.
    scope = request.scope
    headers = []
    host = None
    framed = False
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1")
        value = raw_value.decode("latin-1")
        headers.append((name, value))
        lname = name.lower()  # servers send lower-case names; ASGI does not insist
        if lname == "host":
            if host is None:
                host = value
        elif lname == "content-length" or lname == "transfer-encoding":
            framed = True
    url = guard.public_url(scope.get("scheme", "http"), host, raw_target(request))
    # An HTTP/1.x request without Content-Length or Transfer-Encoding has no body (RFC 9112
    # 6.3): nothing to wait for.  Anything else (HTTP/2, a declared body) is read, once.
    if not framed and scope.get("http_version") in _FRAMED_BY_HEADERS:
        body = b""
    else:
        body = await request.body()
    return HttpRequest(request.method, url, headers, body)


def to_response(response: HttpResponse) -> Response:
    """Every header line of ``response`` in order, and the exact body bytes."""
    rendered = Response(content=response.body, status_code=response.status)
    given = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
    names = {k for k, _ in given}
    # Starlette adds content-length itself; keep it unless the core set one explicitly.
    rendered.raw_headers = given + [h for h in rendered.raw_headers if h[0] not in names]
    return rendered
