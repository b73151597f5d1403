"""``settings.AAUTH`` -> one cached :class:`ResourceGuard`, rebuilt when the settings change."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from aauth_server.resource import ConfigurationError, ResourceConfig, ResourceGuard

SETTING = "AAUTH"


class SettingsMissing(ImproperlyConfigured):
    """``AAUTH`` is absent or names no ``ISSUER`` (system check ``aauth.E001``)."""


class InvalidSettings(ImproperlyConfigured):
    """``AAUTH`` does not make a valid :class:`ResourceConfig` (``aauth.E002``)."""


class DevLoopbackInProduction(ImproperlyConfigured):
    """``DEV_LOOPBACK`` while ``DEBUG`` is off (``aauth.E003``)."""


_lock = threading.Lock()
_guard: ResourceGuard | None = None
_installed: ResourceGuard | None = None
_overrides: dict[str, Any] = {}


def configure(**overrides: Any) -> None:
    """Keyword arguments that win over ``settings.AAUTH`` (lower-case ResourceConfig fields).

    For what a settings file cannot hold well (a fetcher, a clock) or a value set in code.
    ``configure()`` with no arguments clears them.
    """
    global _guard
    with _lock:
        _overrides.clear()
        _overrides.update(overrides)
        _guard = None


def build_config() -> ResourceConfig:
    """The effective configuration, or an :class:`ImproperlyConfigured` that says what is wrong."""
    raw = getattr(settings, SETTING, None)
    if raw is not None and not isinstance(raw, Mapping):
        raise InvalidSettings(f"settings.{SETTING} must be a dict, not {type(raw).__name__}")
    mapping: Mapping[str, Any] = raw or {}
    has_issuer = any(key.lower() == "issuer" for key in mapping) or "issuer" in _overrides
    if not has_issuer:
        raise SettingsMissing(
            f"settings.{SETTING} is missing or has no ISSUER"
            if raw is None
            else f"settings.{SETTING} has no ISSUER"
        )
    try:
        config = ResourceConfig.from_mapping(mapping, **_overrides)
    except (ConfigurationError, TypeError) as error:
        raise InvalidSettings(f"settings.{SETTING}: {error}") from error
    if config.dev_loopback and not settings.DEBUG:
        # Refused at runtime as well as by the check: uvicorn/gunicorn never run checks.
        raise DevLoopbackInProduction(
            f"settings.{SETTING}['DEV_LOOPBACK'] is on while DEBUG is False: the loopback "
            "development setting must never reach production"
        )
    return config


def use_guard(guard: ResourceGuard | None) -> None:
    """Serve every request with ``guard`` (built in code) instead of ``settings.AAUTH``.

    For a configuration that lives in objects rather than settings; ``None`` goes back to
    the settings.  The ``DEV_LOOPBACK`` rule still applies: see :func:`get_guard`.
    """
    global _installed
    with _lock:
        _installed = guard


def get_guard() -> ResourceGuard:
    """The guard in use: the one given to :func:`use_guard`, else the process-wide guard
    for ``settings.AAUTH``, built on first use."""
    global _guard
    installed = _installed
    if installed is not None:
        if installed.config.dev_loopback and not settings.DEBUG:
            raise DevLoopbackInProduction(
                "the guard given to use_guard() has dev_loopback on while DEBUG is False"
            )
        return installed
    guard = _guard
    if guard is None:
        with _lock:
            if _guard is None:
                config = build_config()
                try:
                    _guard = ResourceGuard(config)
                except ConfigurationError as error:  # e.g. a store URL redis-py refuses
                    raise InvalidSettings(f"settings.{SETTING}: {error}") from error
            guard = _guard
    return guard


def reset_guard(*, setting: str, **kwargs: Any) -> None:
    global _guard
    # DEBUG takes part in the DEV_LOOPBACK rule, so it invalidates the guard too.
    if setting in (SETTING, "DEBUG"):
        with _lock:
            _guard = None


setting_changed.connect(reset_guard, dispatch_uid="aauth_server_django.reset_guard")
