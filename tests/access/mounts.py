"""The Access Server of an :class:`AsWorld` mounted in Starlette, Flask and Django (sync and
async views), reached through each framework's test client: ``sender(aw, framework)``.

The Django URLconf of these tests is this module: the AS beside nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from aauth_server.http import HttpRequest, HttpResponse
from tests.access.as_harness import AsWorld

FRAMEWORKS = ("starlette", "flask", "django", "django-asgi")
Send = Callable[[HttpRequest], HttpResponse]

urlpatterns: list[Any] = []


class AsyncUrls:
    urlpatterns: list[Any] = []


def _urls() -> None:
    from django.urls import include, path

    if not urlpatterns:
        urlpatterns.append(path("", include("aauth_server_django.access_urls")))
        AsyncUrls.urlpatterns.append(path("", include("aauth_server_django.access_async_urls")))


def _starlette(aw: AsWorld) -> Send:
    from aauth_server_starlette.access import AccessServerApp
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    client = TestClient(
        Starlette(routes=AccessServerApp(aw.server).mounted()), follow_redirects=False
    )

    def send(request: HttpRequest) -> HttpResponse:
        answer = client.request(
            request.method, request.url, headers=request.headers, content=request.body
        )
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in answer.headers.raw]
        return HttpResponse(answer.status_code, headers, answer.content)

    return send


def _flask(aw: AsWorld) -> Send:
    from aauth_server_flask.access import access_blueprint
    from flask import Flask

    app = Flask("aauth_access_tests")
    app.register_blueprint(access_blueprint(aw.server))

    def send(request: HttpRequest) -> HttpResponse:
        parts = urlsplit(request.url)
        response = app.test_client(use_cookies=False).open(
            parts.path + (f"?{parts.query}" if parts.query else ""),
            method=request.method,
            base_url=f"{parts.scheme}://{parts.netloc}",
            headers=request.headers,
            data=request.body,
        )
        return HttpResponse(
            response.status_code, response.headers.to_wsgi_list(), response.get_data()
        )

    return send


def _django(aw: AsWorld, asgi: bool) -> Send:
    from aauth_server_django.access import use_access_server
    from asgiref.sync import async_to_sync
    from django.test import override_settings

    from tests.adapters.harness_django import configure_django, send_async, send_sync

    configure_django()
    _urls()
    urlconf: object = AsyncUrls if asgi else __name__

    def send(request: HttpRequest) -> HttpResponse:
        url = urlsplit(request.url)
        with override_settings(ROOT_URLCONF=urlconf, ALLOWED_HOSTS=["as.example"]):
            use_access_server(aw.server)
            try:
                if asgi:
                    return async_to_sync(send_async)(request, url)
                return send_sync(request, url)
            finally:
                use_access_server(None)

    return send


def sender(aw: AsWorld, framework: str) -> Send:
    if framework == "starlette":
        return _starlette(aw)
    if framework == "flask":
        return _flask(aw)
    return _django(aw, asgi=framework == "django-asgi")
