"""System checks that refuse an unusable or unsafe AAuth configuration at startup."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error
from django.core.exceptions import ImproperlyConfigured

from .conf import DevLoopbackInProduction, SettingsMissing, build_config


def check_aauth_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    try:
        build_config()
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
    return []
