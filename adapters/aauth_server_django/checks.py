"""System checks that refuse an unusable or unsafe AAuth configuration at startup."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error
from django.core.exceptions import ImproperlyConfigured

from aauth_server.resource import ConfigurationError, ResourceConfig

from .conf import DevLoopbackInProduction, SettingsMissing, build_config


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
    return _trust_errors(config)


def _trust_errors(config: ResourceConfig) -> list[CheckMessage]:
    """aauth.E004: a person-token or auth-token view, and no Person Server to trust."""
    from django.urls import get_resolver

    from .decorators import DECLARED_MODES

    try:
        get_resolver().url_patterns  # noqa: B018 - imports the views, which declare their modes
    except Exception:  # noqa: S110 - a broken URLconf is Django's own check to report
        pass
    errors: list[CheckMessage] = []
    for mode in sorted(DECLARED_MODES):
        try:
            config.require_ps_trust(mode)
        except ConfigurationError as error:
            hint = 'Add "TRUSTED_PS": ["https://ps.example"] (or "TRUST_ANY_PS": True) to AAUTH.'
            errors.append(Error(str(error), hint=hint, id="aauth.E004"))
    return errors
