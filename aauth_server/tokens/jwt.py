"""Compact JWS for AAuth tokens: parse once, mint with joserfc, verify against one key.

Parsing and verification are separate steps because the verifier needs the header
(``typ``, ``kid``) and payload (``iss``, ``dwk``) to find the key before it can check
the signature.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from joserfc import jws
from joserfc.errors import JoseError

if TYPE_CHECKING:
    from ..keys.jwk import PrivateKey, PublicKey

__all__ = [
    "TOKEN_ERROR_CODES",
    "TokenError",
    "UnverifiedJWT",
    "decode_unverified",
    "sign_jwt",
    "verify_jwt_signature",
]

TOKEN_ERROR_CODES = frozenset(
    {"invalid_jwt", "expired_jwt", "clock_skew", "unsupported_algorithm", "invalid_key"}
)

_TO_STD = bytes.maketrans(b"-_", b"+/")
# Header members that change how the JWS is processed; we implement none of them, and
# RFC 7515 4.1.11 says an unknown "crit" extension must make the token invalid.
_UNSUPPORTED_HEADER = ("crit", "b64")


class TokenError(Exception):
    """A token that must not be accepted; ``code`` is its ``Signature-Error`` code."""

    def __init__(self, code: str, detail: str) -> None:
        if code not in TOKEN_ERROR_CODES:
            raise ValueError(f"not a token error code: {code}")
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class UnverifiedJWT:
    raw: str
    header: Mapping[str, object]
    payload: Mapping[str, object]
    signing_input: bytes
    signature: bytes


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _b64url_decode(segment: bytes, what: str) -> bytes:
    # binascii in strict mode validates in C; '+', '/' and '=' are not base64url.
    if b"+" in segment or b"/" in segment or b"=" in segment or len(segment) % 4 == 1:
        raise TokenError("invalid_jwt", f"{what} is not unpadded base64url")
    try:
        data = binascii.a2b_base64(
            segment.translate(_TO_STD) + b"=" * (-len(segment) % 4), strict_mode=True
        )
    except binascii.Error as exc:
        raise TokenError("invalid_jwt", f"{what} is not base64url") from exc
    # Leftover bits must be zero, so each token has exactly one spelling.
    if _b64url(data) != segment:
        raise TokenError("invalid_jwt", f"{what} is not canonical base64url")
    return data


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate member name")
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# One decoder, built once: json.loads with hooks would build a new one per call.
_DECODER = json.JSONDecoder(object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = _DECODER.decode(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise TokenError("invalid_jwt", f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise TokenError("invalid_jwt", f"{what} is not a JSON object")
    return value


def decode_unverified(token: str, *, max_length: int = 16384) -> UnverifiedJWT:
    """Split and parse a compact JWS without trusting anything in it."""
    if not isinstance(token, str):
        raise TokenError("invalid_jwt", "token is not a string")
    if len(token) > max_length:
        raise TokenError("invalid_jwt", f"token longer than {max_length} characters")
    if not token.isascii():
        raise TokenError("invalid_jwt", "token is not ASCII")
    raw = token.encode("ascii")
    parts = raw.split(b".")
    if len(parts) != 3:
        raise TokenError("invalid_jwt", "token is not three dot-separated segments")
    header_seg, payload_seg, signature_seg = parts
    if not header_seg or not payload_seg:
        raise TokenError("invalid_jwt", "token has an empty header or payload")
    header = _json_object(_b64url_decode(header_seg, "header"), "header")
    for name in _UNSUPPORTED_HEADER:
        if name in header:
            raise TokenError("invalid_jwt", f"header member {name!r} is not supported")
    payload = _json_object(_b64url_decode(payload_seg, "payload"), "payload")
    signature = _b64url_decode(signature_seg, "signature")
    return UnverifiedJWT(
        raw=token,
        header=header,
        payload=payload,
        signing_input=raw[: len(header_seg) + 1 + len(payload_seg)],
        signature=signature,
    )


def _compact_json(value: Mapping[str, object]) -> bytes:
    # ensure_ascii matches joserfc's own header encoding, so a mapping header
    # always round-trips through jws.serialize_compact unchanged.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def sign_jwt(
    header: Mapping[str, object] | bytes,
    payload: Mapping[str, object] | bytes,
    key: PrivateKey,
) -> str:
    """Mint a compact JWS. Bytes are signed exactly as given; mappings keep their key order."""
    header_bytes = header if isinstance(header, bytes) else _compact_json(header)
    payload_bytes = payload if isinstance(payload, bytes) else _compact_json(payload)
    try:
        parsed = _json_object(header_bytes, "header")
        _json_object(payload_bytes, "payload")
    except TokenError as exc:
        raise ValueError(exc.detail) from exc
    if parsed.get("alg") != key.alg:
        raise ValueError(f"header alg {parsed.get('alg')!r} does not match key alg {key.alg!r}")
    jose_key: Any = key.joserfc_key
    try:
        if _compact_json(parsed) == header_bytes:
            return jws.serialize_compact(parsed, payload_bytes, jose_key, algorithms=[key.alg])
        # joserfc re-serialises the header it is given; for caller-supplied header bytes
        # in any other spelling, sign the exact bytes with joserfc's algorithm instead.
        registry = jws.JWSRegistry(algorithms=[key.alg])
        alg = registry.get_alg(key.alg)
        alg.check_key(jose_key)
        signing_input = _b64url(header_bytes) + b"." + _b64url(payload_bytes)
        signature = alg.sign(signing_input, jose_key)
    except JoseError as exc:
        raise ValueError(f"cannot sign with this key: {exc}") from exc
    return (signing_input + b"." + _b64url(signature)).decode("ascii")


def verify_jwt_signature(jwt: UnverifiedJWT, key: PublicKey, *, allow_eddsa: bool = False) -> None:
    """Check the header ``alg`` against the key's own ``alg``, then the signature.

    The algorithm always comes from the key; the header may only confirm it.
    """
    alg = jwt.header.get("alg")
    if not isinstance(alg, str):
        raise TokenError("invalid_jwt", "header alg missing")
    # Refused whatever the key says, so a misconfigured key can never turn them on.
    if alg == "none" or alg.startswith("HS"):
        raise TokenError("invalid_jwt", f"header alg {alg!r} is never accepted")
    if alg != key.alg and not (allow_eddsa and alg == "EdDSA" and key.alg == "Ed25519"):
        raise TokenError("invalid_jwt", f"header alg {alg!r} does not match key alg {key.alg!r}")
    if not key.verify(jwt.signature, jwt.signing_input):
        raise TokenError("invalid_jwt", "signature does not verify")
