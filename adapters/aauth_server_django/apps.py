from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class AAuthConfig(AppConfig):
    name = "aauth_server_django"
    verbose_name = "AAuth"

    def ready(self) -> None:
        from .checks import check_aauth_settings

        checks.register(check_aauth_settings, "aauth")
