"""Send a neutral request through a Django app protected by aauth_server_django.

Django is configured once per process.  Each ResourceConfig is one "app": its guard is
built once through ``settings.AAUTH`` (override_settings, the path a Django project uses),
then kept and served with ``use_guard`` so that several requests (a scenario's ``before``
requests, a poll after a hold) reach the same guard.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

import django
from aauth_server_django import get_guard, use_guard
from asgiref.sync import async_to_sync
from django.conf import settings
from django.test import AsyncClient, Client, override_settings
from django.test.client import FakePayload

from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.resource import ResourceConfig, ResourceGuard

#: Routes served by async views; the harness sends them through AsyncClient.
ASYNC_PATHS = (
    "/optional",
    "/whoami-async",
    "/whoami-async-class",
    "/data-async",
    "/deferred-async",
)
#: The same routes with the guard's endpoints on the async views (ASGI projects).
ASYNC_URLCONF = "tests.adapters.django.async_urls"
_apps: dict[int, tuple[ResourceConfig, ResourceGuard]] = {}


def configure_django() -> None:
    if settings.configured:
        return
    settings.configure(
        DEBUG=False,
        SECRET_KEY="aauth-tests-only",
        ALLOWED_HOSTS=["resource.example", "127.0.0.1", "localhost", "testserver"],
        ROOT_URLCONF="tests.adapters.django.urls",
        INSTALLED_APPS=["aauth_server_django"],
        MIDDLEWARE=["django.middleware.csrf.CsrfViewMiddleware"],
        AAUTH={"ISSUER": "https://resource.example"},
        USE_TZ=True,
    )
    django.setup()


def as_settings(config: ResourceConfig) -> dict[str, Any]:
    return {f.name.upper(): getattr(config, f.name) for f in fields(config)}


def guard_for(config: ResourceConfig) -> ResourceGuard:
    """The guard of the app for ``config`` (built on first use, then the same one)."""
    configure_django()
    app = _apps.get(id(config))
    if app is None or app[0] is not config:
        # A dev-loopback deployment runs with DEBUG on (system check aauth.E003).
        with override_settings(AAUTH=as_settings(config), DEBUG=config.dev_loopback):
            app = (config, get_guard())
        _apps[id(config)] = app
    return app[1]


def send(config: ResourceConfig, request: HttpRequest, *, asgi: bool = False) -> HttpResponse:
    """``asgi``: through AsyncClient with the guard's endpoints on the async views."""
    guard = guard_for(config)
    url = urlsplit(request.url)
    urlconf = ASYNC_URLCONF if asgi else settings.ROOT_URLCONF
    with override_settings(DEBUG=config.dev_loopback, ROOT_URLCONF=urlconf):
        use_guard(guard)
        try:
            if asgi or url.path in ASYNC_PATHS:
                return async_to_sync(send_async)(request, url)
            return send_sync(request, url)
        finally:
            use_guard(None)


def send_sync(request: HttpRequest, url: SplitResult) -> HttpResponse:
    """Through the WSGI-style Client: repeated lines joined as a WSGI server joins them."""
    environ: dict[str, Any] = {"HTTP_HOST": url.netloc}
    for name, value in request.headers:
        lname = name.lower()
        if lname == "content-length":
            continue
        key = (
            "CONTENT_TYPE" if lname == "content-type" else "HTTP_" + lname.upper().replace("-", "_")
        )
        environ[key] = (
            f"{environ[key]}, {value}" if key in environ and key != "HTTP_HOST" else value
        )
    target = url.path + ("?" + url.query if url.query else "")
    content_type = environ.get("CONTENT_TYPE", "application/octet-stream")
    response = Client().generic(
        request.method,
        target,
        data=request.body,
        content_type=content_type,
        secure=url.scheme == "https",
        **environ,
    )
    return HttpResponse(response.status_code, list(response.items()), response.content)


async def send_async(
    request: HttpRequest, url: SplitResult, client: AsyncClient | None = None
) -> HttpResponse:
    """Through AsyncClient with an explicit ASGI scope: raw header lines and raw path."""
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in request.headers]
    names = {k for k, _ in headers}
    if b"host" not in names:
        headers.insert(0, (b"host", url.netloc.encode("latin-1")))
    if request.body and b"content-length" not in names:
        headers.append((b"content-length", str(len(request.body)).encode("ascii")))
    https = url.scheme == "https"
    scope: dict[str, Any] = {
        "method": request.method,
        "path": unquote(url.path),
        "raw_path": url.path.encode("latin-1"),
        "query_string": url.query.encode("latin-1"),
        "scheme": url.scheme,
        "server": (url.hostname or "", url.port or (443 if https else 80)),
        "headers": headers,
    }
    if request.body:
        scope["_body_file"] = FakePayload(request.body)  # AsyncClient's hook for a body
    response = await (client or AsyncClient()).request(**scope)
    return HttpResponse(response.status_code, list(response.items()), response.content)
