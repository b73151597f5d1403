"""RFC 9421 message signatures, RFC 9530 ``Content-Digest`` and the ``Signature-Key`` header."""

from __future__ import annotations

from .digest import SUPPORTED_DIGEST_ALGS, content_digest, verify_content_digest
from .message import (
    AAUTH_COMPONENTS,
    BODY_COMPONENTS,
    ParsedSignature,
    Signer,
    Verifier,
    parse_signature,
    sign_request,
    signature_base,
    verify_signature,
)
from .signature_key import (
    SCHEMES,
    SchemeSpec,
    SignatureKey,
    SignatureKeys,
    parse_signature_key,
    register_scheme,
    select_signature_key,
    serialize_signature_key,
)

__all__ = [
    "AAUTH_COMPONENTS",
    "BODY_COMPONENTS",
    "SCHEMES",
    "SUPPORTED_DIGEST_ALGS",
    "ParsedSignature",
    "SchemeSpec",
    "SignatureKey",
    "SignatureKeys",
    "Signer",
    "Verifier",
    "content_digest",
    "parse_signature",
    "parse_signature_key",
    "register_scheme",
    "select_signature_key",
    "serialize_signature_key",
    "sign_request",
    "signature_base",
    "verify_content_digest",
    "verify_signature",
]
