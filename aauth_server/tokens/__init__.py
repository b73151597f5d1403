"""AAuth JWTs: compact JWS handling and the four token types."""

from __future__ import annotations

from .aauth import (
    DWK_ACCESS,
    DWK_AGENT,
    DWK_PERSON,
    DWK_RESOURCE,
    EXPECTED_DWK,
    MAX_LIFETIME,
    TYP_AGENT,
    TYP_AUTH,
    TYP_PERSON,
    TYP_RESOURCE,
    check_claims,
    check_header,
    mint_agent_token,
    mint_auth_token,
    mint_person_token,
    mint_resource_token,
    mint_token,
)
from .jwt import TokenError, UnverifiedJWT, decode_unverified, sign_jwt, verify_jwt_signature

__all__ = [
    "DWK_ACCESS",
    "DWK_AGENT",
    "DWK_PERSON",
    "DWK_RESOURCE",
    "EXPECTED_DWK",
    "MAX_LIFETIME",
    "TYP_AGENT",
    "TYP_AUTH",
    "TYP_PERSON",
    "TYP_RESOURCE",
    "TokenError",
    "UnverifiedJWT",
    "check_claims",
    "check_header",
    "decode_unverified",
    "mint_agent_token",
    "mint_auth_token",
    "mint_person_token",
    "mint_resource_token",
    "mint_token",
    "sign_jwt",
    "verify_jwt_signature",
]
