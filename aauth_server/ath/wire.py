"""Reading ATH request bodies: one JSON object, size-limited, with typed field accessors.

Every malformed input becomes an :class:`ATHError` with the code the endpoint owes it; no
parsing failure reaches the caller as a 500.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from .. import safejson
from ..http import HttpRequest
from .errors import ATHError

MAX_STRING = 2048
MAX_LIST = 64


def json_body(request: HttpRequest, limit: int) -> dict[str, Any]:
    """The request's JSON object, or the ATH error a bad body deserves."""
    if len(request.body) > limit:
        raise ATHError("PAYLOAD_TOO_LARGE", f"the request body exceeds {limit} bytes")
    media = (request.header("content-type") or "").split(";", 1)[0].strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        raise ATHError(
            "UNSUPPORTED_MEDIA_TYPE", "ATH request bodies are JSON (Content-Type: application/json)"
        )
    try:
        value = json_document(request.body)
    except ValueError as exc:
        raise ATHError("INVALID_REQUEST", "the request body is not valid JSON") from exc
    if not isinstance(value, dict):
        raise ATHError("INVALID_REQUEST", "the request body must be a JSON object")
    return value


def json_document(raw: bytes) -> Any:
    """Strict JSON (no repeated member, no NaN) nested at most ``safejson.MAX_DEPTH`` deep;
    every failure is ``ValueError``: what each ATH body and fetched document is read with."""
    return safejson.loads(raw, decoder=safejson.STRICT)


def text(
    body: Mapping[str, Any],
    name: str,
    *,
    required: bool = True,
    code: str = "INVALID_REQUEST",
    limit: int = MAX_STRING,
) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise ATHError(code, f"{name} is required", {"field": name})
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ATHError(
            code,
            f"{name} must be a non-empty string of at most {limit} characters",
            {"field": name},
        )
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ATHError(code, f"{name} contains control characters", {"field": name})
    return value


def required_text(
    body: Mapping[str, Any], name: str, *, code: str = "INVALID_REQUEST", limit: int = MAX_STRING
) -> str:
    value = text(body, name, required=True, code=code, limit=limit)
    assert value is not None
    return value


def text_list(
    body: Mapping[str, Any],
    name: str,
    *,
    required: bool = True,
    limit: int = MAX_LIST,
    item_limit: int = 256,
) -> list[str] | None:
    value = body.get(name)
    if value is None:
        if required:
            raise ATHError("INVALID_REQUEST", f"{name} is required", {"field": name})
        return None
    if not isinstance(value, list) or len(value) > limit:
        raise ATHError(
            "INVALID_REQUEST", f"{name} must be a list of at most {limit} strings", {"field": name}
        )
    out: list[str] = []
    for item in value:
        if (
            not isinstance(item, str)
            or not item
            or len(item) > item_limit
            or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in item)
        ):
            raise ATHError(
                "INVALID_REQUEST",
                f"{name} must hold non-empty strings without spaces",
                {"field": name},
            )
        if item not in out:
            out.append(item)
    return out


def digest(*parts: str) -> str:
    """A fixed-length store id for values that may hold any character."""
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()


def new_id(prefix: str, nbytes: int = 16) -> str:
    return prefix + secrets.token_hex(nbytes)


def absolute_url(value: str, *, dev_loopback: bool) -> bool:
    """An https URL (loopback http with ``dev_loopback``) without userinfo or fragment."""
    if any(ord(c) <= 0x20 or c in "\\\x7f" for c in value) or len(value) > MAX_STRING:
        return False
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return False
    if parts.fragment or parts.username or parts.password or not parts.hostname:
        return False
    if "#" in value:
        return False
    if parts.scheme == "https":
        return True
    loopback = parts.hostname in ("127.0.0.1", "localhost")
    return dev_loopback and parts.scheme == "http" and loopback and port is not None
