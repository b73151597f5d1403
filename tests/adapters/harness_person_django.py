"""Send a neutral request to a Person Server mounted in Django by ``person_urls``.

Each PersonServerConfig is one "app": its PS is built once through
``settings.AAUTH_PERSON`` (override_settings, the path a project uses) and then kept and
served with ``use_person_server``, so a scenario's requests and the test's consent calls
reach the same PS.  Django's CSRF middleware is on and enforced, as in a real project.

This module is also the test URLconf: the PS beside the resource guard's own URLs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from typing import Any
from urllib.parse import SplitResult, urlsplit

from aauth_server_django.person import (
    Mountable,
    configure_person,
    get_person_mount,
    use_person_server,
)
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client, override_settings
from django.urls import include, path

from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.person import PersonServer, PersonServerConfig
from tests.adapters.harness_django import configure_django, send_async

HOSTS = ["ps.example", "resource.example", "testserver"]

urlpatterns = [
    path("", include("aauth_server_django.person_urls")),
    path("", include("aauth_server_django.urls")),
]


class AsyncUrls:
    """The same project with the async views (ASGI): a URLconf needs only ``urlpatterns``."""

    urlpatterns = [
        path("", include("aauth_server_django.person_async_urls")),
        path("", include("aauth_server_django.async_urls")),
    ]


_apps: dict[int, tuple[PersonServerConfig, PersonServer, tuple[Mountable, ...]]] = {}


def as_settings(config: PersonServerConfig) -> dict[str, Any]:
    return {f.name.upper(): getattr(config, f.name) for f in fields(config)}


def _app(
    config: PersonServerConfig,
    pages: Callable[[PersonServer], Iterable[Mountable]] | None = None,
) -> tuple[PersonServerConfig, PersonServer, tuple[Mountable, ...]]:
    configure_django()
    app = _apps.get(id(config))
    if app is None or app[0] is not config:
        configure_person(pages=pages)
        try:
            with override_settings(AAUTH_PERSON=as_settings(config), DEBUG=config.dev_loopback):
                mount = get_person_mount()
        finally:
            configure_person()
        app = (config, mount.ps, mount.pages)
        _apps[id(config)] = app
    return app


def person_server_for(
    config: PersonServerConfig,
    pages: Callable[[PersonServer], Iterable[Mountable]] | None = None,
) -> PersonServer:
    """The PS mounted for ``config`` (built on first use with ``pages``, then the same)."""
    return _app(config, pages)[1]


@contextmanager
def mounted(config: PersonServerConfig, *, asgi: bool = False) -> Iterator[None]:
    """The PS for ``config`` served by the project's URLconf (sync or async views)."""
    _, ps, pages = _app(config)
    urlconf: object = AsyncUrls if asgi else __name__
    with override_settings(ROOT_URLCONF=urlconf, ALLOWED_HOSTS=HOSTS, DEBUG=config.dev_loopback):
        use_person_server(ps, pages=pages)
        try:
            yield
        finally:
            use_person_server(None)


def send(config: PersonServerConfig, request: HttpRequest, *, asgi: bool = False) -> HttpResponse:
    """Through Client (WSGI, sync views) or AsyncClient (ASGI, async views)."""
    url = urlsplit(request.url)
    with mounted(config, asgi=asgi):
        if asgi:
            return async_to_sync(_send_async)(request, url)
        return _send_sync(request, url)


def _send_sync(request: HttpRequest, url: SplitResult) -> HttpResponse:
    environ: dict[str, Any] = {"HTTP_HOST": url.netloc}
    for name, value in request.headers:
        lname = name.lower()
        if lname in ("content-length", "host"):
            continue
        key = (
            "CONTENT_TYPE" if lname == "content-type" else f"HTTP_{lname.upper().replace('-', '_')}"
        )
        # A WSGI server joins repeated lines into one value.
        environ[key] = f"{environ[key]}, {value}" if key in environ else value
    target = url.path + ("?" + url.query if url.query else "")
    response = Client(enforce_csrf_checks=True).generic(
        request.method,
        target,
        data=request.body,
        content_type=environ.pop("CONTENT_TYPE", "application/octet-stream"),
        secure=url.scheme == "https",
        **environ,
    )
    return HttpResponse(response.status_code, list(response.items()), response.content)


async def _send_async(request: HttpRequest, url: SplitResult) -> HttpResponse:
    # Django's CSRF middleware is enforced: the PS must not depend on test-client leniency.
    return await send_async(request, url, AsyncClient(enforce_csrf_checks=True))


__all__ = ["as_settings", "mounted", "person_server_for", "send", "urlpatterns"]
