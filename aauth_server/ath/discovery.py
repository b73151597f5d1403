"""The discovery documents: ``/.well-known/ath-app.json`` (native) and ``/.well-known/ath.json``
(gateway).  Neither lists the ATH endpoints: agents build them as ``base_url + "/ath/..."``,
so both documents and ``/ath/*`` are served under the same origin and prefix."""

from __future__ import annotations

from typing import Any

from ..http import HttpResponse
from .config import ATH_VERSION, ATHConfig

NATIVE_PATH = "/.well-known/ath-app.json"
GATEWAY_PATH = "/.well-known/ath.json"


def native_document(config: ATHConfig) -> dict[str, Any]:
    provider = config.providers[0]
    return {
        "ath_version": ATH_VERSION,
        "app_id": config.app_id,
        "name": config.name,
        "api_base": config.api_base,
        "auth": {
            "type": "oauth2",
            "authorization_endpoint": config.base_url + "/ath/consent",
            "token_endpoint": config.base_url + "/ath/oauth/token",
            "scopes_supported": list(provider.scopes),
            "agent_attestation_required": True,
        },
    }


def gateway_document(config: ATHConfig) -> dict[str, Any]:
    return {
        "ath_version": ATH_VERSION,
        "gateway_id": config.gateway_id,
        "agent_registration_endpoint": config.base_url + "/ath/agents/register",
        "supported_providers": [
            {
                "provider_id": p.provider_id,
                "display_name": p.display_name,
                "categories": list(p.categories),
                "available_scopes": list(p.scopes),
                "auth_mode": "OAUTH2",
                "agent_approval_required": p.agent_approval_required,
            }
            for p in config.providers
        ],
    }


def response(config: ATHConfig) -> HttpResponse:
    document = native_document(config) if config.mode == "native" else gateway_document(config)
    return HttpResponse.json(200, document, headers=[("Cache-Control", "public, max-age=300")])
