"""The Flask extension: `AAuth(app)` or `AAuth()` + `init_app(app)`, and `@aauth.protect()`."""

from __future__ import annotations

import functools
import inspect
import logging
import weakref
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Flask, Request, Response, current_app, g, request

from aauth_server.errors import AAuthError, Forbidden, RequestRejected, ServerError
from aauth_server.http import HttpResponse
from aauth_server.resource import (
    AGENT_TOKEN,
    AUTH_TOKEN,
    PERSON_TOKEN,
    WELL_KNOWN_PATH,
    ConfigurationError,
    Identity,
    PersonIdentity,
    Protection,
    Redispatch,
    ResourceConfig,
    ResourceGuard,
)
from aauth_server.resource.config import check_store_reachable, protection_label

from .convert import from_flask_response, to_environ, to_flask_response, to_http_request

F = TypeVar("F", bound=Callable[..., Any])

EXTENSION_KEY = "aauth"
CONFIG_PREFIX = "AAUTH_"
#: The environ key that carries a held invocation's identity into its view.  Only this
#: module sets it, on an environ it builds itself; a WSGI server only ever adds request
#: headers as ``HTTP_*`` keys, so no client can reach it.
HELD_IDENTITY_KEY = "aauth_server_flask.held_identity"

log = logging.getLogger("aauth_server_flask")


class AAuth:
    """AAuth resource protection for one or more Flask apps.

    Settings come from ``app.config`` keys ``AAUTH_<FIELD>`` (the :class:`ResourceConfig`
    fields upper-cased); keyword arguments given here win over them, and a complete
    ``config=`` wins over both.

    Misconfiguration is a :class:`ConfigurationError` at startup, naming the rule: an
    invalid setting or a store that does not answer at ``init_app``; a ``protect(...)`` the
    configuration cannot serve (an auth-token scope missing from ``scope_descriptions``, no
    ``signing_key``) when the view is decorated, or, for views decorated before
    ``init_app`` (the app-factory pattern), at ``init_app``.
    """

    def __init__(
        self, app: Flask | None = None, *, config: ResourceConfig | None = None, **overrides: Any
    ) -> None:
        self._config = config
        self._overrides = overrides
        #: Every protect() of this extension, checked against each app's configuration.
        self._protections: list[tuple[Protection, str]] = []
        self._apps: weakref.WeakSet[Flask] = weakref.WeakSet()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        config = self._config_for(app)
        guard = ResourceGuard(config)
        if config.startup_store_check:
            check_store_reachable(guard.store, config.store)
        for protection, label in self._protections:
            _check_protection(app, config, protection, label)
        app.extensions[EXTENSION_KEY] = guard
        self._apps.add(app)
        _add_guard_routes(app, guard)
        # Lets views raise Forbidden, RequirementChallenge, ... and get the core's wire form.
        app.register_error_handler(AAuthError, _render_error)

    def _config_for(self, app: Flask) -> ResourceConfig:
        if self._config is not None:
            return self._config
        settings = {
            key[len(CONFIG_PREFIX) :]: value
            for key, value in app.config.items()
            if key.startswith(CONFIG_PREFIX)
        }
        try:
            return ResourceConfig.from_mapping(settings, **self._overrides)
        except (ConfigurationError, TypeError) as exc:
            raise ConfigurationError(
                f"AAuth configuration of Flask app {app.name!r}: {exc} "
                f"(app.config keys are {CONFIG_PREFIX}<SETTING>, e.g. {CONFIG_PREFIX}ISSUER)"
            ) from exc

    def guard_for(self, app: Flask | None = None) -> ResourceGuard:
        """The guard of ``app`` (the current app by default)."""
        return guard_for(app)

    def protect(
        self,
        mode: str = AGENT_TOKEN,
        *,
        scope: str | None = None,
        optional: bool = False,
        deferred: bool = False,
    ) -> Callable[[F], F]:
        """Protect a view with one access mode; the identity is on ``flask.g.aauth``.

        ``g.aauth`` is an ``AgentIdentity`` (agent-token), a ``PersonIdentity``
        (person-token, auth-token) or a ``SessionIdentity`` (session-token); None for an
        unsigned request to an ``optional`` view.  Works on plain and ``async def`` views;
        an async view verifies with the async guard so key discovery does not block its
        event loop.
        """
        protection = Protection(mode, scope=scope, optional=optional, deferred=deferred)

        def decorate(view: F) -> F:
            label = protection_label(protection, view)
            for app in list(self._apps):
                _check_protection(app, guard_for(app).config, protection, label)
            if self._config is not None:
                self._config.check_protection(protection, label)
            self._protections.append((protection, label))
            if inspect.iscoroutinefunction(view):

                @functools.wraps(view)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    guard = guard_for()
                    current = request._get_current_object()  # type: ignore[attr-defined]
                    try:
                        held = _held_identity(current, protection)
                        if held is not None:
                            g.aauth = held
                        else:
                            http_request = to_http_request(current, guard)
                            g.aauth = await guard.acheck(http_request, protection)
                    except AAuthError as error:
                        return to_flask_response(error.to_response())
                    return await view(*args, **kwargs)

                return cast(F, async_wrapper)

            @functools.wraps(view)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                guard = guard_for()
                # The request object itself, once: each read through the proxy is a lookup.
                current = request._get_current_object()  # type: ignore[attr-defined]
                try:
                    held = _held_identity(current, protection)
                    if held is not None:
                        g.aauth = held
                    else:
                        g.aauth = guard.check(to_http_request(current, guard), protection)
                except AAuthError as error:
                    return to_flask_response(error.to_response())
                return view(*args, **kwargs)

            return cast(F, wrapper)

        return decorate


def _check_protection(
    app: Flask, config: ResourceConfig, protection: Protection, label: str
) -> None:
    try:
        config.check_protection(protection, label)
    except ConfigurationError as exc:
        raise ConfigurationError(f"AAuth configuration of Flask app {app.name!r}: {exc}") from exc


def guard_for(app: Flask | None = None) -> ResourceGuard:
    target = app if app is not None else current_app
    guard = target.extensions.get(EXTENSION_KEY)
    if not isinstance(guard, ResourceGuard):
        raise RuntimeError(f"AAuth is not set up on Flask app {target.name!r}: call init_app(app)")
    return guard


def _held_identity(current: Request, protection: Protection) -> Identity | None:
    """The identity of the held invocation this dispatch runs; None for a wire request."""
    held = current.environ.get(HELD_IDENTITY_KEY)
    if held is None:
        return None
    if not isinstance(held, PersonIdentity):
        raise ServerError("a held invocation without a person identity")
    # The poll checked the held scope; a view that changed since the hold is checked again.
    if protection.mode not in (PERSON_TOKEN, AUTH_TOKEN) or not protection.scopes <= held.scopes:
        raise Forbidden(
            "the auth token does not satisfy this endpoint any more", error="insufficient_scope"
        )
    return held


def _endpoint_names(guard: ResourceGuard) -> dict[str, str]:
    cfg = guard.config
    names = {
        WELL_KNOWN_PATH: "aauth_metadata",  # the name the metadata route has always had
        cfg.jwks_path: "aauth_jwks",
        cfg.pending_prefix: "aauth_pending",
    }
    if cfg.authorization_path:
        names[cfg.authorization_path] = "aauth_authorize"
    if cfg.revocation_path:
        names[cfg.revocation_path] = "aauth_revoke"
    return names


def _add_guard_routes(app: Flask, guard: ResourceGuard) -> None:
    methods: dict[str, list[str]] = {}
    for method, path in guard.routes():
        methods.setdefault(path, []).append(method)
    names = _endpoint_names(guard)
    for index, (path, allowed) in enumerate(methods.items()):
        # A trailing "/" marks a prefix: everything below it is the guard's to judge.
        rule = path + "<path:_tail>" if path.endswith("/") else path
        endpoint = names.get(path, f"aauth_route_{index}")
        app.add_url_rule(rule, endpoint=endpoint, view_func=_guard_endpoint, methods=allowed)


def _guard_endpoint(**_tail: str) -> Response:
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    guard = guard_for(app)
    try:
        current = request._get_current_object()  # type: ignore[attr-defined]
        answer = guard.handle(to_http_request(current, guard))
    except RequestRejected as rejected:
        return to_flask_response(rejected.to_response())
    if answer is None:
        answer = AAuthError("no such endpoint", error="not_found", status=404).to_response()
    elif isinstance(answer, Redispatch):
        answer = guard.finish(answer, _run_held(app, answer))
    return to_flask_response(answer)


def _run_held(app: Flask, redispatch: Redispatch) -> HttpResponse:
    """Dispatch the held request through ``app``'s own routing, identity pre-established.

    A fresh app context gives the held view its own ``g``; the poll's request context is
    restored afterwards.
    """
    environ = to_environ(redispatch.request, request.environ)
    environ[HELD_IDENTITY_KEY] = redispatch.identity
    try:
        with app.app_context(), app.request_context(environ):
            response = app.full_dispatch_request()
            try:
                return from_flask_response(response)
            finally:
                response.close()
    except Exception:
        # The poll must still be answered (and the held record finished), never left running.
        log.exception("the held invocation %s failed", redispatch.held_id)
        return ServerError().to_response()


def _render_error(error: AAuthError) -> Response:
    return to_flask_response(error.to_response())
