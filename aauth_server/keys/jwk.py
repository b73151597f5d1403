"""JWK parsing, RFC 7638 thumbprints, and the two algorithms AAuth requires.

Only fully-specified JOSE algorithms are accepted (digest §2.2): ``Ed25519`` and ``ES256``.
Key material is decoded strictly (canonical unpadded base64url) because thumbprints are
computed over the encoded strings: two spellings of one key would give two thumbprints.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from ..errors import SignatureFailure

SUPPORTED_ALGS: tuple[str, ...] = ("Ed25519", "ES256")

#: RFC 7638 §3.2 required members (RFC 8037 §2 for OKP).
_REQUIRED: dict[str, tuple[str, ...]] = {
    "OKP": ("crv", "kty", "x"),
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
}
REQUIRED_MEMBERS: Mapping[str, tuple[str, ...]] = MappingProxyType(_REQUIRED)

# alg -> (kty, crv) it demands; a key disagreeing with its alg is invalid_key (digest §2.2).
_ALG_SHAPE: Mapping[str, tuple[str, str]] = MappingProxyType(
    {"Ed25519": ("OKP", "Ed25519"), "ES256": ("EC", "P-256")}
)
_COORD_LEN = 32
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


_TO_URL = bytes.maketrans(b"+/", b"-_")


def b64url_encode(data: bytes) -> str:
    # base64.urlsafe_b64encode without its Python-level hops: the same bytes, unpadded.
    return binascii.b2a_base64(data, newline=False).translate(_TO_URL).rstrip(b"=").decode("ascii")


def b64url_decode(data: str) -> bytes:
    """Decode base64url; correct ``=`` padding is tolerated, non-canonical input is not."""
    body = data.rstrip("=")
    if body != data and (len(data) % 4 or len(data) - len(body) > 2):
        raise ValueError("bad base64url padding")
    if not _B64URL.fullmatch(body) or len(body) % 4 == 1:
        raise ValueError("not base64url")
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    if b64url_encode(raw) != body:
        raise ValueError("non-canonical base64url")
    return raw


def structurally_complete(jwk: object) -> bool:
    # A dict (every parsed JWK) first: the Mapping ABC check is the slow one.
    if type(jwk) is not dict and not isinstance(jwk, Mapping):
        return False
    kty = jwk.get("kty")
    # A list or object kty (attacker-supplied JSON) is unhashable: not a key, not a crash.
    members = _REQUIRED.get(kty) if isinstance(kty, str) else None
    if members is None:
        return False
    for member in members:
        if not isinstance(jwk.get(member), str):
            return False
    return True


_THUMBPRINT_HASHES = {"sha-256": hashlib.sha256, "sha-512": hashlib.sha512}


def jwk_thumbprint(jwk: Mapping[str, object], hash_name: str = "sha-256") -> str:
    """RFC 7638 thumbprint (SHA-256 unless ``hash_name`` says ``sha-512``, as jkt-jwt may).

    Raises ValueError for an incomplete or unknown-kty key.
    """
    if not structurally_complete(jwk):
        raise ValueError("JWK lacks kty or its required members")
    members = REQUIRED_MEMBERS[str(jwk["kty"])]
    canonical = json.dumps(
        {m: jwk[m] for m in members}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return b64url_encode(_THUMBPRINT_HASHES[hash_name](canonical.encode("utf-8")).digest())


def _invalid(detail: str) -> SignatureFailure:
    return SignatureFailure("invalid_key", detail)


def _coordinate(jwk: Mapping[str, object], name: str) -> bytes:
    try:
        raw = b64url_decode(str(jwk[name]))
    except ValueError as exc:
        raise _invalid(f"JWK member {name!r} is not base64url") from exc
    if len(raw) != _COORD_LEN:
        raise _invalid(f"JWK member {name!r} has the wrong length")
    return raw


CryptoPublic = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


def _load_public(alg: str, jwk: Mapping[str, object]) -> CryptoPublic:
    if alg == "Ed25519":
        return ed25519.Ed25519PublicKey.from_public_bytes(_coordinate(jwk, "x"))
    x = int.from_bytes(_coordinate(jwk, "x"), "big")
    y = int.from_bytes(_coordinate(jwk, "y"), "big")
    try:
        return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    except ValueError as exc:
        raise _invalid("EC point is not on P-256") from exc


class PublicKey:
    """A verified-shape public key: immutable, equal and hashable by thumbprint and alg."""

    __slots__ = ("_crypto", "_ed25519_verify", "_joserfc", "alg", "jwk", "kid", "kty", "thumbprint")

    alg: str
    kty: str
    kid: str | None
    jwk: Mapping[str, str]
    thumbprint: str
    _crypto: CryptoPublic
    #: An Ed25519 key's own verify, looked up once (the ABC isinstance is not free).
    _ed25519_verify: Callable[[bytes, bytes], None] | None
    _joserfc: object | None

    def __init__(self, alg: str, jwk: Mapping[str, str], crypto: CryptoPublic) -> None:
        ed25519_verify = crypto.verify if isinstance(crypto, ed25519.Ed25519PublicKey) else None
        for name, value in (
            ("alg", alg),
            ("kty", jwk["kty"]),
            ("kid", jwk.get("kid")),
            ("jwk", MappingProxyType(dict(jwk))),
            ("thumbprint", jwk_thumbprint(jwk)),
            ("_crypto", crypto),
            ("_ed25519_verify", ed25519_verify),
            ("_joserfc", None),
        ):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("PublicKey is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and self.same_key(other)

    def __hash__(self) -> int:
        return hash(self.thumbprint)

    def __repr__(self) -> str:
        return f"PublicKey(alg={self.alg!r}, kid={self.kid!r}, thumbprint={self.thumbprint!r})"

    @classmethod
    def from_jwk(
        cls,
        jwk: Mapping[str, object],
        *,
        accept_algs: Sequence[str] = SUPPORTED_ALGS,
        allow_eddsa: bool = False,
    ) -> PublicKey:
        accepted = tuple(a for a in accept_algs if a in SUPPORTED_ALGS)

        def unsupported(detail: str) -> SignatureFailure:
            return SignatureFailure("unsupported_algorithm", detail, accept_algs=accepted)

        if not isinstance(jwk, Mapping):
            raise _invalid("JWK is not a JSON object")
        kty = jwk.get("kty")
        if not isinstance(kty, str):
            raise _invalid("JWK has no kty")
        if kty not in REQUIRED_MEMBERS:
            raise unsupported(f"key type {kty!r} is not supported")
        if not structurally_complete(jwk):
            raise _invalid(f"JWK lacks a required {kty} member")
        if "d" in jwk:
            raise _invalid("JWK carries private key material")
        kid = jwk.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise _invalid("JWK kid is not a string")
        alg = jwk.get("alg")
        if not isinstance(alg, str):
            raise unsupported("JWK has no alg")
        if alg == "EdDSA" and allow_eddsa and (kty, jwk.get("crv")) == _ALG_SHAPE["Ed25519"]:
            alg = "Ed25519"
        if alg not in accepted:
            raise unsupported(f"algorithm {alg!r} is not accepted")
        if (kty, jwk.get("crv")) != _ALG_SHAPE[alg]:
            raise _invalid(f"kty/crv do not match alg {alg!r}")
        crypto = _load_public(alg, jwk)
        public = {m: str(jwk[m]) for m in REQUIRED_MEMBERS[kty]}
        public["alg"] = alg
        if kid is not None:
            public["kid"] = kid
        return cls(alg, public, crypto)

    def verify(self, signature: bytes, data: bytes) -> bool:
        try:
            ed25519_verify = self._ed25519_verify
            if ed25519_verify is not None:
                ed25519_verify(signature, data)
                return True
            crypto = cast(ec.EllipticCurvePublicKey, self._crypto)  # not Ed25519: ES256
            if len(signature) != 2 * _COORD_LEN:
                return False
            r = int.from_bytes(signature[:_COORD_LEN], "big")
            s = int.from_bytes(signature[_COORD_LEN:], "big")
            crypto.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
            return True
        except (InvalidSignature, ValueError):
            return False

    def same_key(self, other: PublicKey) -> bool:
        return self.thumbprint == other.thumbprint and self.alg == other.alg

    @property
    def joserfc_key(self) -> object:
        if self._joserfc is None:
            object.__setattr__(self, "_joserfc", _joserfc_import(dict(self.jwk)))
        return self._joserfc


def _joserfc_import(jwk: Mapping[str, str]) -> object:
    # Imported lazily: signature verification must not pay for joserfc's import.
    from joserfc.jwk import ECKey, OKPKey

    data: dict[str, str | list[str]] = dict(jwk)
    if jwk["kty"] == "OKP":
        return OKPKey.import_key(data)
    return ECKey.import_key(data)


CryptoPrivate = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


class PrivateKey:
    """A signing key for our own servers and for tests (never parsed from requests)."""

    __slots__ = ("_crypto", "_ed25519_sign", "_joserfc", "alg", "kid", "public")

    def __init__(self, alg: str, crypto: CryptoPrivate, kid: str | None = None) -> None:
        self.alg = alg
        self.kid = kid
        self._crypto = crypto
        self._ed25519_sign: Callable[[bytes], bytes] | None = (
            crypto.sign if isinstance(crypto, ed25519.Ed25519PrivateKey) else None
        )
        self._joserfc: object | None = None
        self.public = PublicKey.from_jwk(self.public_jwk())

    @classmethod
    def generate(cls, alg: str = "Ed25519", *, kid: str | None = None) -> PrivateKey:
        if alg == "Ed25519":
            return cls(alg, ed25519.Ed25519PrivateKey.generate(), kid)
        if alg == "ES256":
            return cls(alg, ec.generate_private_key(ec.SECP256R1()), kid)
        raise ValueError(f"unsupported algorithm {alg!r}")

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, object]) -> PrivateKey:
        """Load a private JWK; raises ValueError when it is incomplete or inconsistent."""
        if not structurally_complete(jwk) or not isinstance(jwk.get("d"), str):
            raise ValueError("private JWK lacks kty, a required member, or d")
        shape = (jwk["kty"], jwk["crv"])
        default = next((a for a, s in _ALG_SHAPE.items() if s == shape), None)
        alg = jwk.get("alg", default)
        if alg is None or alg not in _ALG_SHAPE or _ALG_SHAPE[str(alg)] != shape:
            raise ValueError(f"unsupported private key {shape!r} with alg {alg!r}")
        kid = jwk.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise ValueError("kid is not a string")
        d = b64url_decode(str(jwk["d"]))
        crypto: CryptoPrivate
        if alg == "Ed25519":
            crypto = ed25519.Ed25519PrivateKey.from_private_bytes(d)
        else:
            crypto = ec.derive_private_key(int.from_bytes(d, "big"), ec.SECP256R1())
        key = cls(str(alg), crypto, kid)
        if any(key.public.jwk[m] != jwk[m] for m in REQUIRED_MEMBERS[str(jwk["kty"])]):
            raise ValueError("private JWK's public members do not match d")
        return key

    def sign(self, data: bytes) -> bytes:
        ed25519_sign = self._ed25519_sign
        if ed25519_sign is not None:
            return ed25519_sign(data)
        crypto = cast(ec.EllipticCurvePrivateKey, self._crypto)  # not Ed25519: ES256
        r, s = decode_dss_signature(crypto.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(_COORD_LEN, "big") + s.to_bytes(_COORD_LEN, "big")

    def public_jwk(self) -> dict[str, str]:
        jwk: dict[str, str]
        if isinstance(self._crypto, ed25519.Ed25519PrivateKey):
            raw = self._crypto.public_key().public_bytes_raw()
            jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw)}
        else:
            numbers = self._crypto.public_key().public_numbers()
            jwk = {
                "kty": "EC",
                "crv": "P-256",
                "x": b64url_encode(numbers.x.to_bytes(_COORD_LEN, "big")),
                "y": b64url_encode(numbers.y.to_bytes(_COORD_LEN, "big")),
            }
        jwk["alg"] = self.alg
        if self.kid is not None:
            jwk["kid"] = self.kid
        return jwk

    def private_jwk(self) -> dict[str, str]:
        if isinstance(self._crypto, ed25519.Ed25519PrivateKey):
            d = self._crypto.private_bytes_raw()
        else:
            d = self._crypto.private_numbers().private_value.to_bytes(_COORD_LEN, "big")
        return {**self.public_jwk(), "d": b64url_encode(d)}

    @property
    def joserfc_key(self) -> object:
        if self._joserfc is None:
            self._joserfc = _joserfc_import(self.private_jwk())
        return self._joserfc

    def __repr__(self) -> str:
        return f"PrivateKey(alg={self.alg!r}, kid={self.kid!r})"


__all__: list[str] = [
    "SUPPORTED_ALGS",
    "PrivateKey",
    "PublicKey",
    "b64url_decode",
    "b64url_encode",
    "jwk_thumbprint",
    "structurally_complete",
]
