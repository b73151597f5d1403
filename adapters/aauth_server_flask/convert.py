"""Conversions between Flask/Werkzeug objects and the core's neutral request and response."""

from __future__ import annotations

from io import BytesIO
from typing import Any, Protocol
from urllib.parse import quote, unquote_to_bytes, urlsplit

from flask import Request, Response
from werkzeug.exceptions import RequestEntityTooLarge

from aauth_server.errors import RequestRejected
from aauth_server.http import (
    DEFAULT_MAX_BODY,
    HttpRequest,
    HttpResponse,
    MalformedHost,
    checked_host,
)

# Characters a request-target may carry unescaped (RFC 3986 pchar plus "/"); "%" stays so
# a fallback never double-encodes.
_PATH_SAFE = "/:@!$&'()*+,;=~%"
# What a rebuilt environ keeps from the request it is built inside: the server's own
# description of the connection, never anything a framework or middleware cached on it.
_SERVER_KEYS = frozenset(
    {"SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "REMOTE_ADDR", "REMOTE_PORT", "SCRIPT_NAME"}
)


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


class PublicUrls(Protocol):
    """What :func:`to_http_request` needs of a server: a ``ResourceGuard``, or the Person
    Server mount's origin."""

    def public_url(self, scheme: str, host: str | None, target: str) -> str: ...


def read_body(request: Request, limit: int) -> bytes:
    """The body, reading at most ``limit`` + 1 bytes: more is ``413`` (:class:`RequestRejected`).

    The request's ``max_content_length`` (Flask 3.1) becomes ``limit`` + 1, so Werkzeug
    refuses a larger ``Content-Length`` before reading and stops a chunked body one byte
    past the limit (it stops there silently: the extra byte is what tells).  An app
    ``MAX_CONTENT_LENGTH`` below ours wins.  The bytes stay in Werkzeug's cache for the view.
    """
    current = request.max_content_length
    effective = limit if current is None else min(current, limit)
    request.max_content_length = effective + 1
    try:
        body = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise RequestRejected.body_too_large(effective) from None
    if len(body) > effective:
        raise RequestRejected.body_too_large(effective)
    return body


# What EnvironHeaders calls each environ key (None for keys that are no header, and whether
# an empty value is left out), worked out once per key: a server sends the same few.
_NAMES: dict[str, tuple[str | None, bool]] = {}
_NAMES_MAX = 4096
_UNPREFIXED = frozenset({"CONTENT_TYPE", "CONTENT_LENGTH"})
_SHADOWED = frozenset({"HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"})


def environ_headers(environ: dict[str, Any]) -> list[tuple[str, str]]:
    """Exactly ``list(EnvironHeaders(environ).items())``: names as Werkzeug spells them,
    values raw, in environ order."""
    headers = []
    names = _NAMES
    for key, value in environ.items():
        known = names.get(key)
        if known is None:
            if key.startswith("HTTP_") and key not in _SHADOWED:
                known = (key[5:].replace("_", "-").title(), False)
            elif key in _UNPREFIXED:
                known = (key.replace("_", "-").title(), True)
            else:
                known = (None, False)
            if len(names) < _NAMES_MAX:
                names[key] = known
        name, needs_value = known
        if name is not None and (value or not needs_value):
            headers.append((name, value))
    return headers


#: ``SERVER_PROTOCOL`` values whose requests have a body only when a Content-Length or
#: Transfer-Encoding line says so (RFC 9112 section 6.3).
_FRAMED_BY_HEADERS = frozenset({"HTTP/1.1", "HTTP/1.0"})


def has_no_body(environ: dict[str, Any]) -> bool:
    """True for an HTTP/1.x request without Content-Length or Transfer-Encoding, which has no
    body (RFC 9112 section 6.3): nothing to read.  An empty ``CONTENT_LENGTH`` is no length
    (servers built on ``http.server`` always set the key).  Anything else (another protocol,
    a declared body, a server that does not say its protocol) is read by :func:`read_body`."""
    if environ.get("CONTENT_LENGTH") or "HTTP_TRANSFER_ENCODING" in environ:
        return False
    return environ.get("SERVER_PROTOCOL") in _FRAMED_BY_HEADERS


def to_http_request(request: Request, guard: PublicUrls) -> HttpRequest:
    """The neutral request; reads the body once, within the server's body limit, into
    Werkzeug's cache so the view still has it.  A malformed Host or an oversized body
    raises :class:`RequestRejected` (``400``/``413``).

    ``request`` is best the request object itself rather than Flask's ``request`` proxy
    (``request._get_current_object()``): every attribute read through the proxy costs a
    context lookup."""
    environ = request.environ
    # EnvironHeaders yields the raw environ values; WSGI servers have already joined
    # repeated lines, which is as close to the wire as WSGI gets.
    headers = environ_headers(environ)
    try:
        # Werkzeug reads a Host with invalid characters as no Host at all; refuse it
        # instead, as the other adapters do.
        raw_host = environ.get("HTTP_HOST")
        if isinstance(raw_host, str):
            checked_host(raw_host)
        url = guard.public_url(request.scheme, request.host, raw_target(environ))
    except MalformedHost:
        raise RequestRejected.malformed_host() from None
    if has_no_body(environ):
        body = b""
    else:
        body = read_body(request, getattr(guard, "body_limit", DEFAULT_MAX_BODY))
    return HttpRequest(request.method, url, headers, body)


def to_flask_response(response: HttpResponse) -> Response:
    """Every header line and the exact body bytes of a core response.

    Nothing is added: Flask's default ``text/html`` Content-Type is dropped when the core
    sent none (an empty ``200`` from the revocation endpoint), so all adapters agree.
    """
    flask_response = Response(response.body, status=response.status, headers=response.headers)
    if response.header("Content-Type") is None:
        del flask_response.headers["Content-Type"]
    return flask_response


def from_flask_response(response: Response) -> HttpResponse:
    """A view's answer as the core keeps it; the length is the server's to recompute."""
    headers = [
        (name, value)
        for name, value in response.headers.to_wsgi_list()
        if name.lower() != "content-length"
    ]
    return HttpResponse(response.status_code, headers, response.get_data())


def to_environ(request: HttpRequest, base: dict[str, Any]) -> dict[str, Any]:
    """A WSGI environ for ``request`` (a held invocation), on the server of ``base``.

    The held URL is the public one; its path is resolved against ``base``'s ``SCRIPT_NAME``
    so the app routes it as it routed the original.
    """
    parts = urlsplit(request.url)
    environ: dict[str, Any] = {
        key: value for key, value in base.items() if key in _SERVER_KEYS or key.startswith("wsgi.")
    }
    script_name = str(base.get("SCRIPT_NAME", ""))
    raw_path = parts.path or "/"
    # WSGI carries the decoded path bytes as a latin-1 string.
    path_info = unquote_to_bytes(raw_path).decode("latin-1")
    if script_name and path_info.startswith(script_name):
        path_info = path_info[len(script_name) :]
    target = raw_path + (f"?{parts.query}" if parts.query else "")
    environ.update(
        {
            "REQUEST_METHOD": request.method,
            "SCRIPT_NAME": script_name,
            "PATH_INFO": path_info,
            "QUERY_STRING": parts.query,
            "RAW_URI": target,
            "REQUEST_URI": target,
            "CONTENT_LENGTH": str(len(request.body)),
            "wsgi.input": BytesIO(request.body),
        }
    )
    for name, value in request.headers:
        key = name.upper().replace("-", "_")
        if key == "CONTENT_LENGTH":
            continue  # the body above is what the length describes
        if key != "CONTENT_TYPE":
            key = "HTTP_" + key
        environ[key] = f"{environ[key]}, {value}" if key in environ else value
    if "HTTP_HOST" not in environ and parts.netloc:
        environ["HTTP_HOST"] = parts.netloc
    return environ
