"""A Person Server in a Django project: ``settings.AAUTH_PERSON`` -> one cached mount.

``path("", include("aauth_server_django.person_urls"))`` (sync views) or
``include("aauth_server_django.person_async_urls")`` (async views, ASGI) serves the PS
endpoints and, when given, its consent and login pages.  Only conversion and routing live
here: every protocol decision, and every error body, is the core's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields
from typing import Any, Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.http import Http404, HttpResponseNotAllowed
from django.http import HttpRequest as DjangoRequest
from django.http.response import HttpResponseBase
from django.urls.resolvers import RegexPattern
from django.views.decorators.csrf import csrf_exempt

from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.keys.jwk import PrivateKey
from aauth_server.person import WELL_KNOWN_PATH, PersonServer, PersonServerConfig
from aauth_server.resource import ConfigurationError

from .convert import raw_target, request_headers, to_django

SETTING = "AAUTH_PERSON"
_TUPLES = ("accept_algs", "scopes_supported", "claims_supported")


class Mountable(Protocol):
    """What the mount serves: the PS itself, :class:`ConsentPages`, :class:`DemoLogin`."""

    def routes(self) -> list[tuple[str, str]]: ...

    def handle(self, request: HttpRequest) -> HttpResponse | None: ...

    async def ahandle(self, request: HttpRequest) -> HttpResponse | None: ...


#: Builds the pages of a PS once it exists (the pages need the PS they serve).
PagesFactory = Callable[[PersonServer], Iterable[Mountable]]


def _matches(route: str, path: str) -> bool:
    return path == route or (route.endswith("/") and path.startswith(route) and path != route)


class PersonMount:
    """One :class:`PersonServer` and the pages served beside it."""

    def __init__(self, ps: PersonServer, pages: Iterable[Mountable] = ()) -> None:
        self.ps = ps
        self.pages: tuple[Mountable, ...] = tuple(pages)

    def methods_for(self, path: str) -> set[str]:
        """The methods served at ``path``; empty when it is not ours."""
        allowed = {
            method
            for part in (self.ps, *self.pages)
            for method, route in part.routes()
            if _matches(route, path)
        }
        if path == WELL_KNOWN_PATH:
            allowed.add("HEAD")  # the core answers HEAD there; nowhere else
        return allowed

    def to_neutral(self, request: DjangoRequest) -> HttpRequest:
        origin = self.ps.config.public_origin
        # get_host() enforces ALLOWED_HOSTS; its DisallowedHost becomes Django's own 400.
        base = origin.rstrip("/") if origin else f"{request.scheme}://{request.get_host()}"
        return HttpRequest(
            request.method or "GET",
            base + raw_target(request),
            request_headers(request),
            request.body,
        )

    def handle(self, request: DjangoRequest) -> HttpResponseBase:
        refused = self._refused(request)
        if refused is not None:
            return refused
        neutral = self.to_neutral(request)
        for part in (self.ps, *self.pages):
            answer = part.handle(neutral)
            if answer is not None:
                return to_django(answer)
        raise Http404("not a Person Server URL")

    async def ahandle(self, request: DjangoRequest) -> HttpResponseBase:
        refused = self._refused(request)
        if refused is not None:
            return refused
        neutral = self.to_neutral(request)
        for part in (self.ps, *self.pages):
            answer = await part.ahandle(neutral)
            if answer is not None:
                return to_django(answer)
        raise Http404("not a Person Server URL")

    def _refused(self, request: DjangoRequest) -> HttpResponseBase | None:
        allowed = self.methods_for(request.path)
        if not allowed:
            raise Http404("not a Person Server URL")
        return None if request.method in allowed else HttpResponseNotAllowed(sorted(allowed))


# --- settings -> the mount in use -------------------------------------------------------------

_lock = threading.Lock()
_mount: PersonMount | None = None
_installed: PersonMount | None = None
_overrides: dict[str, Any] = {}
_pages: PagesFactory | None = None


def configure_person(*, pages: PagesFactory | None = None, **overrides: Any) -> None:
    """Values that win over ``settings.AAUTH_PERSON`` (lower-case PersonServerConfig fields):
    objects a settings file holds badly (keys, a policy, a fetcher, a clock).  ``pages``
    builds the consent/login pages from the PS, e.g.
    ``lambda ps: [ConsentPages(ps, authenticate=login.authenticate, secret=s), login]``.
    ``configure_person()`` with no arguments clears them."""
    global _mount, _pages
    with _lock:
        _overrides.clear()
        _overrides.update(overrides)
        _pages = pages
        _mount = None


def build_person_config() -> PersonServerConfig:
    """The effective configuration, or an :class:`ImproperlyConfigured` saying what is wrong."""
    raw = getattr(settings, SETTING, None)
    if raw is not None and not isinstance(raw, Mapping):
        raise ImproperlyConfigured(f"settings.{SETTING} must be a dict, not {type(raw).__name__}")
    known = {f.name for f in fields(PersonServerConfig)}
    values: dict[str, Any] = {}
    for key, value in (raw or {}).items():
        if key.lower() not in known:
            raise ImproperlyConfigured(f"settings.{SETTING}: unknown setting {key!r}")
        values[key.lower()] = value
    values.update(_overrides)
    for name in ("issuer", "signing_key", "subject_secret"):
        if name not in values:
            raise ImproperlyConfigured(f"settings.{SETTING} has no {name.upper()}")
    for name in _TUPLES:
        if name in values and not isinstance(values[name], tuple):
            values[name] = tuple(values[name])
    if isinstance(values["subject_secret"], str):
        values["subject_secret"] = values["subject_secret"].encode()  # e.g. from the environment
    if isinstance(values["signing_key"], Mapping):
        values["signing_key"] = PrivateKey.from_jwk(values["signing_key"])
    try:
        config = PersonServerConfig(**values)
    except (ConfigurationError, TypeError, ValueError) as error:
        raise ImproperlyConfigured(f"settings.{SETTING}: {error}") from error
    if config.dev_loopback and not settings.DEBUG:
        # Refused at runtime: uvicorn and gunicorn never run system checks.
        raise ImproperlyConfigured(
            f"settings.{SETTING}['DEV_LOOPBACK'] is on while DEBUG is False: the loopback "
            "development setting must never reach production"
        )
    return config


def use_person_server(ps: PersonServer | None, *, pages: Sequence[Mountable] = ()) -> None:
    """Serve ``ps`` (built in code) and ``pages`` instead of ``settings.AAUTH_PERSON``;
    ``None`` goes back to the settings."""
    global _installed
    with _lock:
        _installed = None if ps is None else PersonMount(ps, pages)


def get_person_mount() -> PersonMount:
    """The mount in use: the one given to :func:`use_person_server`, else the process-wide
    one built from the settings on first use."""
    global _mount
    installed = _installed
    if installed is not None:
        return installed
    mount = _mount
    if mount is None:
        with _lock:
            if _mount is None:
                ps = PersonServer(build_person_config())
                _mount = PersonMount(ps, _pages(ps) if _pages is not None else ())
            mount = _mount
    return mount


def get_person_server() -> PersonServer:
    """The PS in use, for the application's consent code (``.consent``, ``.presence``)."""
    return get_person_mount().ps


def _reset(*, setting: str, **kwargs: Any) -> None:
    global _mount
    if setting in (SETTING, "DEBUG"):
        with _lock:
            _mount = None


setting_changed.connect(_reset, dispatch_uid="aauth_server_django.person.reset")


# --- URL patterns and views -------------------------------------------------------------------


class PersonEndpoints(RegexPattern):
    """Matches the paths the mount serves, read from the mount in use at resolve time, so
    paths set in ``AAUTH_PERSON`` apply without re-importing the URLconf.  Include the
    URLconf at the site root: the core routes full request paths."""

    def __init__(self) -> None:
        # The regex only serves reverse() bookkeeping; match() decides.
        super().__init__(r"^aauth-person-endpoints\Z", is_endpoint=True)

    def match(self, path: str) -> tuple[str, tuple[Any, ...], dict[str, Any]] | None:
        return ("", (), {}) if get_person_mount().methods_for("/" + path) else None

    def __str__(self) -> str:
        return "<AAuth Person Server endpoints>"


# Exempt from Django's CSRF check.  The API endpoints take only signed requests, which a
# cross-site form cannot produce.  The consent pages carry their own CSRF token (an HMAC over
# a cookie nonce, the person and the request) and refuse cross-origin posts; Django's
# middleware cannot pass their forms (no csrfmiddlewaretoken; Referrer-Policy: no-referrer
# makes browsers send Origin: null, which Django refuses).
@csrf_exempt
def person_endpoint(request: DjangoRequest) -> HttpResponseBase:
    return get_person_mount().handle(request)


@csrf_exempt
async def aperson_endpoint(request: DjangoRequest) -> HttpResponseBase:
    return await get_person_mount().ahandle(request)


__all__ = [
    "SETTING",
    "Mountable",
    "PagesFactory",
    "PersonEndpoints",
    "PersonMount",
    "aperson_endpoint",
    "build_person_config",
    "configure_person",
    "get_person_mount",
    "get_person_server",
    "person_endpoint",
    "use_person_server",
]
