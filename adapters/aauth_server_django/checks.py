"""System checks that refuse an unusable or unsafe AAuth configuration at startup, and
:func:`startup`, the same checks for servers that never run system checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error
from django.core.exceptions import ImproperlyConfigured
from django.urls import get_resolver

from aauth_server.resource import ConfigurationError, ResourceConfig
from aauth_server.resource.config import check_store_reachable

from .conf import DevLoopbackInProduction, InvalidSettings, SettingsMissing, build_config, get_guard
from .decorators import PROTECTIONS


def check_aauth_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    try:
        config = build_config()
    except SettingsMissing as error:
        if getattr(settings, "AAUTH_PERSON", None) and getattr(settings, "AAUTH", None) is None:
            return []  # a Person-Server-only project: no resource to configure
        hint = 'Add AAUTH = {"ISSUER": "https://your-resource.example"} to your settings.'
        return [Error(str(error), hint=hint, id="aauth.E001")]
    except DevLoopbackInProduction as error:
        hint = "Remove DEV_LOOPBACK, or run with DEBUG = True on a development machine only."
        return [Error(str(error), hint=hint, id="aauth.E003")]
    except ImproperlyConfigured as error:
        return [Error(str(error), id="aauth.E002")]
    errors: list[CheckMessage] = [
        Error(message, id="aauth.E005") for message in protection_errors(config)
    ]
    try:
        guard = get_guard()
    except ImproperlyConfigured as error:
        return [*errors, Error(str(error), id="aauth.E002")]
    if config.startup_store_check:
        try:
            check_store_reachable(guard.store, config.store)
        except ConfigurationError as error:
            errors.append(Error(str(error), id="aauth.E004"))
    return errors


def protection_errors(config: ResourceConfig) -> list[str]:
    """Every decorated view the configuration cannot serve, after importing the URLconf
    (which decorates the views it routes to)."""
    get_resolver().url_patterns  # noqa: B018 - the import decorates the project's views
    messages: list[str] = []
    for protection, label in PROTECTIONS:
        try:
            config.check_protection(protection, label)
        except ConfigurationError as error:
            messages.append(f"settings.AAUTH: {error}")
    return messages


def startup() -> None:
    """Build the guard, import the URLconf and check every ``@aauth_required`` view and the
    store now; raise :class:`ImproperlyConfigured` naming the first broken rule.

    ASGI and WSGI servers do not run system checks: call this in ``asgi.py``/``wsgi.py``
    after ``get_asgi_application()``/``get_wsgi_application()``, so a misconfiguration stops
    the server instead of answering the first request with a 500.
    """
    config = build_config()
    guard = get_guard()
    problems = protection_errors(config)
    if problems:
        raise InvalidSettings("; ".join(problems))
    if config.startup_store_check:
        try:
            check_store_reachable(guard.store, config.store)
        except ConfigurationError as error:
            raise InvalidSettings(f"settings.AAUTH: {error}") from error
