"""An Access Server in a Django project: ``settings.AAUTH_ACCESS`` (or
:func:`use_access_server`) -> one AS, served by
``path("", include("aauth_server_django.access_urls"))`` (sync views) or
``include("aauth_server_django.access_async_urls")`` (async views, ASGI).

Only conversion and routing live here: every protocol decision and error body is the core's.
Close the stores at shutdown with :func:`close_access_server` / :func:`aclose_access_server`
(the same lifecycle as the Person Server mount: see ``aauth_server_django.person``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.http import Http404, HttpResponseNotAllowed
from django.http import HttpRequest as DjangoRequest
from django.http.response import HttpResponseBase
from django.urls.resolvers import RegexPattern
from django.views.decorators.csrf import csrf_exempt

from aauth_server.access import WELL_KNOWN_PATH, AccessServer, AccessServerConfig
from aauth_server.errors import RequestRejected
from aauth_server.http import HttpRequest
from aauth_server.keys.jwk import PrivateKey
from aauth_server.resource import ConfigurationError

from .convert import neutral_request, to_django

SETTING = "AAUTH_ACCESS"
_TUPLES = ("accept_algs", "trusted_ps")

_lock = threading.Lock()
_built: AccessServer | None = None
_installed: AccessServer | None = None


def build_access_config() -> AccessServerConfig:
    """``settings.AAUTH_ACCESS`` (upper- or lower-case ``AccessServerConfig`` fields) as a
    config, or :class:`ImproperlyConfigured` saying what is wrong."""
    raw = getattr(settings, SETTING, None)
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured(f"settings.{SETTING} must be a dict")
    known = {f.name for f in fields(AccessServerConfig)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key.lower() not in known:
            raise ImproperlyConfigured(f"settings.{SETTING}: unknown setting {key!r}")
        values[key.lower()] = value
    for name in ("issuer", "signing_key"):
        if name not in values:
            raise ImproperlyConfigured(f"settings.{SETTING} has no {name.upper()}")
    for name in _TUPLES:
        if name in values and not isinstance(values[name], tuple):
            values[name] = tuple(values[name])
    if isinstance(values["signing_key"], Mapping):
        values["signing_key"] = PrivateKey.from_jwk(values["signing_key"])
    try:
        config = AccessServerConfig(**values)
    except (ConfigurationError, TypeError, ValueError) as error:
        raise ImproperlyConfigured(f"settings.{SETTING}: {error}") from error
    if config.dev_loopback and not settings.DEBUG:
        raise ImproperlyConfigured(
            f"settings.{SETTING}['DEV_LOOPBACK'] is on while DEBUG is False: the loopback "
            "development setting must never reach production"
        )
    return config


def use_access_server(server: AccessServer | None) -> None:
    """Serve ``server`` (built in code) instead of ``settings.AAUTH_ACCESS``; None goes back."""
    global _installed
    with _lock:
        _installed = server


def get_access_server() -> AccessServer:
    """The AS in use: the installed one, else the one built from the settings on first use."""
    global _built
    if _installed is not None:
        return _installed
    server = _built
    if server is None:
        with _lock:
            if _built is None:
                _built = AccessServer(build_access_config())
            server = _built
    return server


def close_access_server() -> None:
    for server in {id(s): s for s in (_installed, _built) if s is not None}.values():
        server.close()


async def aclose_access_server() -> None:
    for server in {id(s): s for s in (_installed, _built) if s is not None}.values():
        await server.aclose()


def _reset(*, setting: str, **kwargs: Any) -> None:
    global _built
    if setting in (SETTING, "DEBUG"):
        with _lock:
            _built = None


setting_changed.connect(_reset, dispatch_uid="aauth_server_django.access.reset")


def _methods(server: AccessServer, path: str) -> set[str]:
    allowed = {
        method
        for method, route in server.routes()
        if path == route or (route.endswith("/") and path.startswith(route) and path != route)
    }
    if path == WELL_KNOWN_PATH:
        allowed.add("HEAD")
    return allowed


def _neutral(server: AccessServer, request: DjangoRequest) -> HttpRequest:
    return neutral_request(request, server.public_url, server.body_limit)


class AccessEndpoints(RegexPattern):
    """Matches the AS's paths, read from the AS in use at resolve time."""

    def __init__(self) -> None:
        super().__init__(r"^aauth-access-endpoints\Z", is_endpoint=True)

    def match(self, path: str) -> tuple[str, tuple[Any, ...], dict[str, Any]] | None:
        return ("", (), {}) if _methods(get_access_server(), "/" + path) else None

    def __str__(self) -> str:
        return "<AAuth Access Server endpoints>"


def _refused(server: AccessServer, request: DjangoRequest) -> HttpResponseBase | None:
    allowed = _methods(server, request.path)
    if not allowed:
        raise Http404("not an Access Server URL")
    return None if request.method in allowed else HttpResponseNotAllowed(sorted(allowed))


# CSRF-exempt: the API endpoints take only signed requests; the interaction page carries its
# own CSRF token bound to a session cookie and refuses cross-origin posts.
@csrf_exempt
def access_endpoint(request: DjangoRequest) -> HttpResponseBase:
    server = get_access_server()
    refused = _refused(server, request)
    if refused is not None:
        return refused
    try:
        answer = server.handle(_neutral(server, request))
    except RequestRejected as rejected:
        answer = rejected.to_response()
    if answer is None:
        raise Http404("not an Access Server URL")
    return to_django(answer)


@csrf_exempt
async def aaccess_endpoint(request: DjangoRequest) -> HttpResponseBase:
    server = get_access_server()
    refused = _refused(server, request)
    if refused is not None:
        return refused
    try:
        answer = await server.ahandle(_neutral(server, request))
    except RequestRejected as rejected:
        answer = rejected.to_response()
    if answer is None:
        raise Http404("not an Access Server URL")
    return to_django(answer)


__all__ = [
    "SETTING",
    "AccessEndpoints",
    "aaccess_endpoint",
    "access_endpoint",
    "aclose_access_server",
    "build_access_config",
    "close_access_server",
    "get_access_server",
    "use_access_server",
]
