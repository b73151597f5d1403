"""The Django mount built from ``settings.AAUTH_ACCESS`` (the path a project uses)."""

from __future__ import annotations

from typing import Any

import pytest
from aauth_server_django.access import build_access_config, get_access_server, use_access_server
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from aauth_server.keys.jwk import PrivateKey
from tests.adapters.harness_django import configure_django

KEY = PrivateKey.generate(kid="as-1")
SETTINGS: dict[str, Any] = {
    "ISSUER": "https://as.example",
    "SIGNING_KEY": KEY.private_jwk(),
    "TRUSTED_PS": ["https://ps.example"],
    "RECORDS": "sqlite://",
}


def test_settings_build_the_access_server() -> None:
    configure_django()
    use_access_server(None)
    with override_settings(AAUTH_ACCESS=SETTINGS):
        server = get_access_server()
        try:
            assert server.config.trusted_ps == ("https://ps.example",)
            assert server.config.signing_key.public_jwk() == KEY.public_jwk()
            assert get_access_server() is server  # one per settings
        finally:
            server.close()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"ISSUER": "https://as.example"}, "has no SIGNING_KEY"),
        ({**SETTINGS, "COLOUR": "blue"}, "unknown setting"),
        ({**SETTINGS, "TRUSTED_PS": []}, "trusted_ps"),
        (
            {
                **SETTINGS,
                "ISSUER": "http://127.0.0.1:9",
                "DEV_LOOPBACK": True,
                "TRUSTED_PS": ["http://127.0.0.1:8"],
            },
            "DEBUG is False",
        ),
    ],
)
def test_bad_settings_are_improperly_configured(settings: dict[str, Any], message: str) -> None:
    configure_django()
    with (
        override_settings(AAUTH_ACCESS=settings, DEBUG=False),
        pytest.raises(ImproperlyConfigured) as info,
    ):
        build_access_config()
    assert message in str(info.value)
