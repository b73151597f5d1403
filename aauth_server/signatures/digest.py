"""RFC 9530 ``Content-Digest``: the sender's digest of the body it signs.

AAuth does not pin an algorithm; we emit ``sha-256`` and accept ``sha-256`` and
``sha-512`` (digest section 13, item 5).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import http_sf

from ..errors import SignatureFailure
from ..fields import reject_duplicate

_HASHES: dict[str, Callable[[bytes], hashlib._Hash]] = {
    "sha-256": hashlib.sha256,
    "sha-512": hashlib.sha512,
}

SUPPORTED_DIGEST_ALGS: tuple[str, ...] = tuple(_HASHES)


def content_digest(body: bytes, alg: str = "sha-256") -> str:
    """The ``Content-Digest`` field value for ``body``: ``sha-256=:<base64>:``."""
    try:
        hasher = _HASHES[alg]
    except KeyError:
        raise ValueError(f"unsupported Content-Digest algorithm: {alg}") from None
    return f"{alg}=:{base64.b64encode(hasher(body).digest()).decode('ascii')}:"


def verify_content_digest(value: str | None, body: bytes) -> None:
    """Check ``value`` against ``body``; every failure is ``invalid_signature``.

    Unknown algorithms are ignored, but at least one supported member must be present
    and every supported member must match.
    """
    if value is None:
        raise SignatureFailure("invalid_signature", "Content-Digest is missing")
    # What every client sends: exactly our own serialisation of the body's sha-256.  Equal
    # strings parse to one matching sha-256 member, so the full parse would accept it too;
    # anything else (another spelling, parameters, more members, a mismatch) takes the
    # full path and its errors.
    if value == content_digest(body):
        return
    _verify_parsed(value, body)


def _verify_parsed(value: str, body: bytes) -> None:
    """The full check: parse the Dictionary, then compare every supported member."""
    try:
        members: dict[str, tuple[Any, dict[str, Any]]] = http_sf.parse(
            value.encode("ascii"), tltype="dictionary", on_duplicate_key=reject_duplicate
        )  # type: ignore[assignment]
    except (UnicodeEncodeError, ValueError) as exc:
        raise SignatureFailure("invalid_signature", "Content-Digest is malformed") from exc
    checked = False
    for alg, (digest, _params) in members.items():
        hasher = _HASHES.get(alg)
        if hasher is None:
            continue
        if not isinstance(digest, bytes):
            raise SignatureFailure(
                "invalid_signature", f"Content-Digest {alg} is not a Byte Sequence"
            )
        if not hmac.compare_digest(digest, hasher(body).digest()):
            raise SignatureFailure("invalid_signature", "Content-Digest does not match the body")
        checked = True
    if not checked:
        raise SignatureFailure(
            "invalid_signature", "Content-Digest has no sha-256 or sha-512 member"
        )
