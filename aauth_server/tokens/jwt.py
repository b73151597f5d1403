"""Compact JWS for AAuth tokens: parse once, mint, verify against one key.

Parsing and verification are separate steps because the verifier needs the header
(``typ``, ``kid``) and payload (``iss``, ``dwk``) to find the key before it can check
the signature.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from .. import safejson
from ..http import compact_json_encoder

if TYPE_CHECKING:
    from ..keys.jwk import PrivateKey, PublicKey

__all__ = [
    "TOKEN_ERROR_CODES",
    "TokenError",
    "UnverifiedJWT",
    "decode_unverified",
    "sign_jwt",
    "sign_typed",
    "verify_jwt_signature",
]

TOKEN_ERROR_CODES = frozenset(
    {"invalid_jwt", "expired_jwt", "clock_skew", "unsupported_algorithm", "invalid_key"}
)

_TO_STD = bytes.maketrans(b"-_+/=", b"+/!!!")
_PAD = {2: b"==", 3: b"="}
_URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# The last character of a 2- (3-) character tail carries 4 (2) unused low bits: only the
# characters whose value has them all zero are canonical (checked without re-encoding).
_CANONICAL_LAST = {
    2: frozenset(_URL_ALPHABET[0:64:16]),
    3: frozenset(_URL_ALPHABET[0:64:4]),
}
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


_TO_URL = bytes.maketrans(b"+/", b"-_")


def _b64url(data: bytes) -> bytes:
    # base64.urlsafe_b64encode, without its two Python-level hops.
    return binascii.b2a_base64(data, newline=False).translate(_TO_URL).rstrip(b"=")


def _b64url_decode(segment: bytes, what: str) -> bytes:
    # binascii in strict mode validates in C; '+', '/' and '=' are not base64url, so the one
    # translation pass turns them into "!", which strict mode refuses with everything else
    # outside the alphabet.
    tail = len(segment) % 4
    if tail == 1:
        raise TokenError("invalid_jwt", f"{what} is not unpadded base64url")
    std = segment.translate(_TO_STD)
    try:
        data = binascii.a2b_base64(std + _PAD[tail] if tail else std, strict_mode=True)
    except binascii.Error as exc:
        if b"+" in segment or b"/" in segment or b"=" in segment:
            raise TokenError("invalid_jwt", f"{what} is not unpadded base64url") from None
        raise TokenError("invalid_jwt", f"{what} is not base64url") from exc
    # Leftover bits must be zero, so each token has exactly one spelling.
    if tail and segment[-1] not in _CANONICAL_LAST[tail]:
        raise TokenError("invalid_jwt", f"{what} is not canonical base64url")
    return data


# One decoder, built once (no repeated member, no NaN): json.loads with hooks would build a
# new one per call.
_DECODER = safejson.STRICT
# The scanner decode() runs: (text, index) -> (value, end); StopIteration when no value.
_SCAN: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        text = data.decode("utf-8")
        value: Any = None
        # A text that opens with "{" and is one value to its last character is what
        # decode() returns through the very same scan (no whitespace to skip at either
        # end); anything else, and every error path, goes through decode() itself.
        if text[:1] == "{":
            try:
                value, end = _SCAN(text, 0)
            except StopIteration:
                end = -1
            if end != len(text):
                value = _DECODER.decode(text)
        else:
            value = _DECODER.decode(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise TokenError("invalid_jwt", f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise TokenError("invalid_jwt", f"{what} is not a JSON object")
    return value


# Parsed headers by their exact segment: an issuer signs every token under the same
# {"alg", "typ", "kid"}, so a verifier sees a handful of header segments over and over.
# Only accepted, flat (all-string) headers are kept, and each caller gets its own copy.
_HEADERS: dict[bytes, dict[str, Any]] = {}
_HEADERS_MAX = 256


def _header(segment: bytes) -> dict[str, Any]:
    hit = _HEADERS.get(segment)
    if hit is not None:
        return dict(hit)
    header = _json_object(_b64url_decode(segment, "header"), "header")
    for name in _UNSUPPORTED_HEADER:
        if name in header:
            raise TokenError("invalid_jwt", f"header member {name!r} is not supported")
    if all(type(value) is str for value in header.values()):
        if len(_HEADERS) >= _HEADERS_MAX:
            _HEADERS.clear()  # many distinct headers (an attacker's): start over, stay bounded
        _HEADERS[segment] = dict(header)
    return header


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
    header = _header(header_seg)
    payload = _json_object(_b64url_decode(payload_seg, "payload"), "payload")
    signature = _b64url_decode(signature_seg, "signature")
    # Positional: a frozen dataclass's keyword call costs twice as much (every token).
    return UnverifiedJWT(
        token, header, payload, raw[: len(header_seg) + 1 + len(payload_seg)], signature
    )


# allow_nan=False: NaN and Infinity are not JSON, and decode_unverified refuses them.
_encode = compact_json_encoder(ensure_ascii=True, allow_nan=False)


def _compact_json(value: Mapping[str, object]) -> bytes:
    # ensure_ascii matches joserfc's own header encoding, so tokens minted before signing
    # moved off joserfc keep their exact bytes.
    try:
        return _encode(value).encode("ascii")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not a JSON object: {exc}") from exc


@lru_cache(maxsize=256)
def _header_segment(alg: str, typ: str, kid: str) -> bytes:
    # A server mints under a handful of (alg, typ, kid) headers; encode each once.
    return _b64url(_compact_json({"alg": alg, "typ": typ, "kid": kid}))


def sign_jwt(
    header: Mapping[str, object] | bytes,
    payload: Mapping[str, object] | bytes,
    key: PrivateKey,
) -> str:
    """Mint a compact JWS. Bytes are signed exactly as given; mappings keep their key order."""
    if isinstance(header, bytes):
        try:
            alg = _json_object(header, "header").get("alg")
        except TokenError as exc:
            raise ValueError(exc.detail) from exc
        header_bytes = header
    else:
        alg = header.get("alg")
        header_bytes = _compact_json(header)
    payload_bytes = payload if isinstance(payload, bytes) else _compact_json(payload)
    try:
        # Also for a mapping: keys 1 and "1" would encode as a duplicate member.
        _json_object(payload_bytes, "payload")
    except TokenError as exc:
        raise ValueError(exc.detail) from exc
    if alg != key.alg:
        raise ValueError(f"header alg {alg!r} does not match key alg {key.alg!r}")
    return _sign(_b64url(header_bytes), payload_bytes, key)


def sign_typed(typ: str, payload: Mapping[str, object], key: PrivateKey) -> str:
    """:func:`sign_jwt` with the header ``{"alg": key.alg, "typ": typ, "kid": key.kid}``."""
    if not key.kid:
        raise ValueError("the signing key needs a kid")
    return _sign(_header_segment(key.alg, typ, key.kid), _compact_json(payload), key)


def _sign(header_segment: bytes, payload_bytes: bytes, key: PrivateKey) -> str:
    # The key signs directly: PrivateKey.sign already gives the JWS form (raw r||s for
    # ES256), and joserfc's serialize_compact would cost more than the signature itself.
    signing_input = header_segment + b"." + _b64url(payload_bytes)
    return (signing_input + b"." + _b64url(key.sign(signing_input))).decode("ascii")


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
