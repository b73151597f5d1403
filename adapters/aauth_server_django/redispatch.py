"""Deferred auth-token delivery: run a held invocation through Django's own routing.

The first poll that presents a valid auth token gets a :class:`Redispatch` from the
guard.  The held request is rebuilt as a Django request, sent through the project's
middleware and URL resolver to the protected view with the identity already established,
and the view's answer goes to ``guard.finish``.  The identity travels as an attribute of
the request object this module builds, which no client can set.
"""

from __future__ import annotations

import io
import logging
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

from django.core.exceptions import (
    BadRequest,
    PermissionDenied,
    SuspiciousOperation,
)
from django.core.handlers.asgi import ASGIRequest
from django.core.handlers.base import BaseHandler
from django.core.handlers.wsgi import WSGIRequest
from django.http import Http404
from django.http import HttpRequest as DjangoRequest
from django.http.multipartparser import MultiPartParserError
from django.http.response import HttpResponseBase
from django.urls import get_urlconf, set_urlconf

from aauth_server.errors import ServerError
from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.resource import AUTH_TOKEN, PersonIdentity, Protection, Redispatch

from .convert import afrom_django, from_django, to_django

#: Where the pre-established identity rides on the rebuilt request (never a header).
IDENTITY_ATTR = "_aauth_redispatched_identity"
#: What Django itself answers with a 4xx: those are the view's answer, not a failure.
_CLIENT_ERRORS = (Http404, PermissionDenied, BadRequest, SuspiciousOperation, MultiPartParserError)
log = logging.getLogger("aauth_server_django")


def redispatched_identity(request: DjangoRequest, protection: Protection) -> PersonIdentity | None:
    """The identity the guard established for a held invocation, if this is one and the
    view's protection is satisfied by it (else the view verifies as usual, and fails)."""
    identity = getattr(request, IDENTITY_ATTR, None)
    if not isinstance(identity, PersonIdentity) or protection.mode != AUTH_TOKEN:
        return None
    return identity if protection.scopes <= identity.scopes else None


def _failure() -> HttpResponse:
    return ServerError("the held invocation failed").to_response()


def _view_failed(request: DjangoRequest, exception: Exception) -> HttpResponseBase | None:
    """Last exception middleware of the internal dispatch: a raising view still finishes."""
    if isinstance(exception, _CLIENT_ERRORS):
        return None
    log.error("the held invocation of %s raised", request.path, exc_info=exception)
    return to_django(_failure())


def _handler(is_async: bool) -> BaseHandler:
    # Built per redispatch (rare) so it always reflects the current MIDDLEWARE setting.
    handler = BaseHandler()
    handler.load_middleware(is_async=is_async)
    handler._exception_middleware.append(_view_failed)  # type: ignore[attr-defined]
    return handler


def _split(held: HttpRequest, outer: DjangoRequest) -> tuple[str, str, str, str]:
    """``(scheme, script_name, path_info, query)`` of the held URL under the outer prefix."""
    url = urlsplit(held.url)
    path = unquote_to_bytes(url.path).decode("utf-8", "replace") or "/"
    script = str(outer.META.get("SCRIPT_NAME", "") or "")
    if script and path.startswith(script):
        path = path[len(script) :] or "/"
    else:
        script = ""
    return url.scheme, script, path, url.query


def _wsgi_request(held: HttpRequest, outer: DjangoRequest) -> WSGIRequest:
    scheme, script, path, query = _split(held, outer)
    url = urlsplit(held.url)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": held.method,
        "SCRIPT_NAME": script.encode("utf-8").decode("latin-1"),
        "PATH_INFO": path.encode("utf-8").decode("latin-1"),
        "QUERY_STRING": query,
        "RAW_URI": url.path + ("?" + query if query else ""),
        "SERVER_NAME": url.hostname or "",
        "SERVER_PORT": str(url.port or (443 if scheme == "https" else 80)),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": outer.META.get("REMOTE_ADDR", ""),
        "wsgi.input": io.BytesIO(held.body),
        "wsgi.url_scheme": scheme,
        "CONTENT_LENGTH": str(len(held.body)),
    }
    for name, value in held.headers:
        lname = name.lower()
        if lname == "content-length":
            continue
        key = (
            "CONTENT_TYPE" if lname == "content-type" else "HTTP_" + lname.upper().replace("-", "_")
        )
        environ[key] = f"{environ[key]}, {value}" if key in environ else value
    return WSGIRequest(environ)


def _asgi_request(held: HttpRequest, outer: ASGIRequest) -> ASGIRequest:
    scheme, script, path, query = _split(held, outer)
    url = urlsplit(held.url)
    scope: dict[str, Any] = {
        **{k: v for k, v in outer.scope.items() if k in ("type", "asgi", "http_version", "client")},
        "method": held.method,
        "scheme": scheme,
        "root_path": script,
        "path": script + path,
        "raw_path": url.path.encode("latin-1"),
        "query_string": query.encode("latin-1"),
        "server": (url.hostname or "", url.port or (443 if scheme == "https" else 80)),
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in held.headers],
    }
    return ASGIRequest(scope, io.BytesIO(held.body))


def _rebuild(redispatch: Redispatch, outer: DjangoRequest) -> DjangoRequest:
    held = redispatch.request
    inner: DjangoRequest = (
        _asgi_request(held, outer) if isinstance(outer, ASGIRequest) else _wsgi_request(held, outer)
    )
    setattr(inner, IDENTITY_ATTR, redispatch.identity)
    return inner


def run_held(redispatch: Redispatch, outer: DjangoRequest) -> HttpResponse:
    """The protected view's answer to the held request (sync handler)."""
    previous = get_urlconf()
    inner: DjangoRequest | None = None
    try:
        inner = _rebuild(redispatch, outer)
        return from_django(_handler(is_async=False).get_response(inner))
    except Exception as exc:  # anything outside the view itself: still finish the poll
        log.error("dispatching the held invocation failed", exc_info=exc)
        return _failure()
    finally:
        set_urlconf(previous)  # get_response resets it for the inner request
        if inner is not None:
            inner.close()


async def arun_held(redispatch: Redispatch, outer: DjangoRequest) -> HttpResponse:
    """The protected view's answer to the held request (async handler)."""
    previous = get_urlconf()
    inner: DjangoRequest | None = None
    try:
        inner = _rebuild(redispatch, outer)
        return await afrom_django(await _handler(is_async=True).get_response_async(inner))
    except Exception as exc:
        log.error("dispatching the held invocation failed", exc_info=exc)
        return _failure()
    finally:
        set_urlconf(previous)
        if inner is not None:
            inner.close()
