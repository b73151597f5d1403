"""A Person Server in a Django project: ``settings.AAUTH_PERSON`` -> one cached mount.

``path("", include("aauth_server_django.person_urls"))`` (sync views) or
``include("aauth_server_django.person_async_urls")`` (async views, ASGI) serves the PS
endpoints and, when given, its consent and login pages.  Only conversion and routing live
here: every protocol decision, and every error body, is the core's.

Django has no lifespan, so the PS's stores (Redis pools, the async store's change
subscription) are closed by whoever ends the process:

- ASGI: ``application = PersonServerLifespan(get_asgi_application())`` answers the server's
  ``lifespan`` events (Django's handler refuses them): startup builds the PS and checks its
  store, shutdown awaits :func:`aclose_person_server` on the server's own event loop, the
  one the async views used.  The async store's connections, its subscription reader task
  and its locks belong to that loop and can be closed only while it runs.
- Otherwise :func:`close_person_server` (sync) or :func:`aclose_person_server`; and at
  interpreter exit an ``atexit`` hook runs :func:`close_person_server`: the sync store is
  closed here, the async store on the loop the async views ran in while that loop exists
  (else on a loop of its own, which is right for a store no async view used).  When that
  loop is already gone (an ASGI server without the wrapper), its connections cannot be
  closed any more: the hook logs a warning naming the wrapper instead of failing with
  "Event loop is closed".

Under ASGI every async view runs on the server's one loop.  Under WSGI the async views
(``person_async_urls``) would each run on a fresh loop, which a Redis pool bound to the
first one cannot serve: use ``person_urls`` there.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
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

from aauth_server.errors import RequestRejected
from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.keys.jwk import PrivateKey
from aauth_server.person import WELL_KNOWN_PATH, PersonServer, PersonServerConfig
from aauth_server.resource import ConfigurationError

from .convert import neutral_request, to_django

SETTING = "AAUTH_PERSON"
_TUPLES = ("accept_algs", "scopes_supported", "claims_supported")
#: Seconds the sync close waits for the async store to close on its (running) loop.
CLOSE_TIMEOUT = 5.0
log = logging.getLogger("aauth_server_django.person")


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
        #: The event loop the async views last ran in, while the async store may hold
        #: connections there (None once closed, or before the first async request).
        self._loop: asyncio.AbstractEventLoop | None = None

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
        """Host checked (``400``), body within ``max_body`` (``413``): both raise
        :class:`RequestRejected`."""
        return neutral_request(request, self.ps.public_url, self.ps.config.max_body)

    def handle(self, request: DjangoRequest) -> HttpResponseBase:
        refused = self._refused(request)
        if refused is not None:
            return refused
        try:
            neutral = self.to_neutral(request)
        except RequestRejected as rejected:
            return to_django(rejected.to_response())
        for part in (self.ps, *self.pages):
            answer = part.handle(neutral)
            if answer is not None:
                return to_django(answer)
        raise Http404("not a Person Server URL")

    async def ahandle(self, request: DjangoRequest) -> HttpResponseBase:
        refused = self._refused(request)
        if refused is not None:
            return refused
        self._loop = asyncio.get_running_loop()
        try:
            neutral = self.to_neutral(request)
        except RequestRejected as rejected:
            return to_django(rejected.to_response())
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

    # -- the stores' life ------------------------------------------------------------------

    async def astartup(self) -> None:
        """Check the async store on the running loop: a Redis that does not answer fails
        the server's start, not a request."""
        self._loop = asyncio.get_running_loop()
        await self.ps.async_store.check()

    async def aclose(self) -> None:
        """Close both stores; run it on the loop the async views ran in (ASGI shutdown)."""
        try:
            await self.ps.aclose()
            self._loop = None
        finally:
            self.ps.close()

    def close(self) -> None:
        """Close both stores from synchronous code (no event loop running in this thread).

        The async store is closed on the loop the async views ran in: by that loop's thread
        while it runs, here while it is stopped but open, else (no async view ran, or the
        loop has ended) on a loop of its own.  Connections of an ended loop cannot be closed
        any more: then this logs a warning naming :class:`PersonServerLifespan` instead of
        failing with "Event loop is closed".
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("close() is for synchronous code; await aclose() here")
        try:
            self._close_async()
        finally:
            self.ps.close()

    def _close_async(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and loop.is_running():
            closing = asyncio.run_coroutine_threadsafe(self.ps.aclose(), loop)
            closing.result(CLOSE_TIMEOUT)
            return
        if loop is not None and not loop.is_closed():
            loop.run_until_complete(self.ps.aclose())
            return
        try:
            _run_alone(self.ps.aclose)
        except Exception:
            if loop is None:
                raise
            log.warning(
                "the Person Server's async store was not closed before its event loop "
                "ended, so its connections could not be closed; wrap the ASGI application "
                "in aauth_server_django.person.PersonServerLifespan (or await "
                "aclose_person_server() at shutdown)"
            )


def _run_alone(aclose: Callable[[], Awaitable[None]]) -> None:
    """Run ``aclose()`` on a loop of its own."""

    async def run() -> None:
        await aclose()

    asyncio.run(run())


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


def _mounts_in_use() -> list[PersonMount]:
    with _lock:
        mounts = [m for m in (_installed, _mount) if m is not None]
    return list({id(m): m for m in mounts}.values())


def close_person_server() -> None:
    """Close the stores of the PS in use (the installed one and the one built from
    ``settings.AAUTH_PERSON``), from synchronous code: see :meth:`PersonMount.close`.
    Also run at interpreter exit.  A closed store reconnects if it is used again."""
    for mount in _mounts_in_use():
        mount.close()


async def aclose_person_server() -> None:
    """Close the stores of the PS in use on the running loop (an ASGI shutdown)."""
    for mount in _mounts_in_use():
        await mount.aclose()


def _close_at_exit() -> None:
    try:
        close_person_server()
    except Exception:  # the process is ending: report, never mask its exit status
        log.exception("closing the Person Server's stores at exit failed")


atexit.register(_close_at_exit)


# Loose on purpose: Django's ASGIHandler takes ``dict`` scopes and ``Mapping`` messages,
# other ASGI apps their own aliases; any of them is callable as (scope, receive, send).
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


class PersonServerLifespan:
    """ASGI middleware giving a Django project the lifespan it lacks, for the PS's stores::

        application = PersonServerLifespan(get_asgi_application())

    ``lifespan.startup`` builds the PS in use and checks its store (a failure fails the
    start); ``lifespan.shutdown`` closes its stores on the server's loop.  Every other
    scope goes to the wrapped application unchanged.  Run the server with its lifespan on
    (uvicorn's default ``auto`` detects it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await get_person_mount().astartup()
                except Exception as exc:
                    log.exception("the Person Server could not start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await aclose_person_server()
                except Exception as exc:
                    log.exception("closing the Person Server's stores failed")
                    await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return


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
    "PersonServerLifespan",
    "aclose_person_server",
    "aperson_endpoint",
    "build_person_config",
    "close_person_server",
    "configure_person",
    "get_person_mount",
    "get_person_server",
    "person_endpoint",
    "use_person_server",
]
