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


async def to_http_request(request: Request, guard: PublicUrl) -> HttpRequest:
    """Read the body once (Starlette caches it for the endpoint) and keep raw header lines."""
    # Signed header values must reach the verifier byte for byte, in wire order, so the
    # ASGI header list is used rather than Starlette's (combining) Headers mapping.
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]]
    host = next((v for k, v in headers if k.lower() == "host"), None)
    url = guard.public_url(request.scope.get("scheme", "http"), host, raw_target(request))
    return HttpRequest(request.method, url, headers, await request.body())


def to_response(response: HttpResponse) -> Response:
    """Every header line of ``response`` in order, and the exact body bytes."""
    rendered = Response(content=response.body, status_code=response.status)
    given = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
    names = {k for k, _ in given}
    # Starlette adds content-length itself; keep it unless the core set one explicitly.
    rendered.raw_headers = given + [h for h in rendered.raw_headers if h[0] not in names]
    return rendered
