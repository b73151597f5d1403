"""The Flask extension: `AAuth(app)` or `AAuth()` + `init_app(app)`, and `@aauth.protect()`."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Flask, Response, current_app, g, request

from aauth_server.errors import AAuthError
from aauth_server.resource import (
    AGENT_TOKEN,
    WELL_KNOWN_PATH,
    ConfigurationError,
    Protection,
    ResourceConfig,
    ResourceGuard,
)

from .convert import to_flask_response, to_http_request

F = TypeVar("F", bound=Callable[..., Any])

EXTENSION_KEY = "aauth"
CONFIG_PREFIX = "AAUTH_"


class AAuth:
    """AAuth resource protection for one or more Flask apps.

    Settings come from ``app.config`` keys ``AAUTH_<FIELD>`` (the :class:`ResourceConfig`
    fields upper-cased); keyword arguments given here win over them, and a complete
    ``config=`` wins over both.
    """

    def __init__(
        self, app: Flask | None = None, *, config: ResourceConfig | None = None, **overrides: Any
    ) -> None:
        self._config = config
        self._overrides = overrides
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        app.extensions[EXTENSION_KEY] = ResourceGuard(self._config_for(app))
        app.add_url_rule(
            WELL_KNOWN_PATH, endpoint="aauth_metadata", view_func=_metadata, methods=["GET"]
        )
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

    def protect(self, mode: str = AGENT_TOKEN, *, optional: bool = False) -> Callable[[F], F]:
        """Require a verified AAuth agent on a view; the identity is on ``flask.g.aauth``.

        Works on plain and ``async def`` views; an async view verifies with the async
        guard so key discovery does not block its event loop.
        """
        protection = Protection(mode, optional=optional)

        def decorate(view: F) -> F:
            if inspect.iscoroutinefunction(view):

                @functools.wraps(view)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    guard = guard_for()
                    try:
                        g.aauth = await guard.acheck(to_http_request(request, guard), protection)
                    except AAuthError as error:
                        return to_flask_response(error.to_response())
                    return await view(*args, **kwargs)

                return cast(F, async_wrapper)

            @functools.wraps(view)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                guard = guard_for()
                try:
                    g.aauth = guard.check(to_http_request(request, guard), protection)
                except AAuthError as error:
                    return to_flask_response(error.to_response())
                return view(*args, **kwargs)

            return cast(F, wrapper)

        return decorate


def guard_for(app: Flask | None = None) -> ResourceGuard:
    target = app if app is not None else current_app
    guard = target.extensions.get(EXTENSION_KEY)
    if not isinstance(guard, ResourceGuard):
        raise RuntimeError(f"AAuth is not set up on Flask app {target.name!r}: call init_app(app)")
    return guard


def _metadata() -> Response:
    return to_flask_response(guard_for().metadata_response())


def _render_error(error: AAuthError) -> Response:
    return to_flask_response(error.to_response())
