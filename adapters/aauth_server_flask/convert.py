"""Conversions between Flask/Werkzeug objects and the core's neutral request and response."""

from __future__ import annotations

from urllib.parse import quote

from flask import Request, Response

from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.resource import ResourceGuard

# Characters a request-target may carry unescaped (RFC 3986 pchar plus "/"); "%" stays so
# a fallback never double-encodes.
_PATH_SAFE = "/:@!$&'()*+,;=~%"


def raw_target(environ: dict[str, object]) -> str:
    """The request-target as sent: path (percent-encoding preserved) plus ``?query``.

    gunicorn, uWSGI, mod_wsgi and Werkzeug put it in ``RAW_URI``/``REQUEST_URI``; other
    servers (asgiref's ``WsgiToAsgi`` under uvicorn) only give the decoded ``PATH_INFO``.
    """
    for key in ("RAW_URI", "REQUEST_URI"):
        value = environ.get(key)
        # An absolute-form or asterisk-form target cannot be signed as @path; rebuild instead.
        if isinstance(value, str) and value.startswith("/"):
            return value
    # WSGI strings are bytes decoded as latin-1; undo that before re-quoting.
    path = str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))
    target = quote(path.encode("latin-1"), safe=_PATH_SAFE) or "/"
    query = str(environ.get("QUERY_STRING", ""))
    return f"{target}?{query}" if query else target


def to_http_request(request: Request, guard: ResourceGuard) -> HttpRequest:
    """The neutral request; reads the body once into Werkzeug's cache so the view still has it."""
    body = request.get_data(cache=True)
    # EnvironHeaders yields the raw environ values; WSGI servers have already joined
    # repeated lines, which is as close to the wire as WSGI gets.
    headers = [(name, value) for name, value in request.headers.items()]
    url = guard.public_url(request.scheme, request.host, raw_target(request.environ))
    return HttpRequest(request.method, url, headers, body)


def to_flask_response(response: HttpResponse) -> Response:
    """Every header line and the exact body bytes of a core response."""
    return Response(response.body, status=response.status, headers=response.headers)
