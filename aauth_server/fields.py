"""Codecs for the AAuth response and request header fields (RFC 9651 Structured Fields).

Serialisers emit the canonical form the drafts show (``", "`` between members, ``"; "``
before AAuth-Requirement parameters).  Parsers accept any valid Structured Field and
ignore unknown members and parameters, as the drafts require.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import http_sf

_TOKEN_RE = re.compile(r"^[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*$")
_KEY_RE = re.compile(r"^[a-z*][a-z0-9_\-.*]*$")


class FieldError(ValueError):
    """A header value that is not the Structured Field it must be."""


def sf_string(value: str) -> str:
    """Serialise an RFC 9651 String."""
    if any(ord(c) < 0x20 or ord(c) > 0x7E for c in value):
        raise FieldError("SF String may hold printable ASCII only")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sf_token(value: str) -> str:
    if not _TOKEN_RE.match(value):
        raise FieldError(f"not an SF Token: {value!r}")
    return value


def sf_key(value: str) -> str:
    if not _KEY_RE.match(value):
        raise FieldError(f"not an SF key: {value!r}")
    return value


def token_list(values: Iterable[str]) -> str:
    """``Accept-Signature-Scheme`` / ``Accept-Signature-Alg`` / ``AAuth-Capabilities``."""
    return ", ".join(sf_token(v) for v in values)


def signature_error(code: str, required_input: Iterable[str] | None = None) -> str:
    out = "error=" + sf_token(code)
    if required_input is not None:
        out += ", required_input=(" + " ".join(sf_string(c) for c in required_input) + ")"
    return out


def aauth_requirement(requirement: str, params: Mapping[str, str] | None = None) -> str:
    out = "requirement=" + sf_token(requirement)
    for k, v in (params or {}).items():
        out += "; " + sf_key(k) + "=" + sf_string(v)
    return out


def reject_duplicate(key: str, context: str) -> None:
    """``on_duplicate_key`` hook for http_sf: refuse instead of "last one wins".

    RFC 9651 lets the last duplicate win; a signer and a verifier using different parsers
    could then disagree on what was signed or which digest counts, so signed fields refuse.
    """
    raise ValueError(f"duplicate {context} key {key!r}")


def _parse_dict(value: str) -> dict[str, tuple[object, dict[str, object]]]:
    try:
        parsed: Any = http_sf.parse(value.encode("ascii"), tltype="dictionary")
    except (UnicodeEncodeError, http_sf.StructuredFieldError, ValueError) as exc:
        raise FieldError(str(exc)) from exc
    return cast(dict[str, tuple[object, dict[str, object]]], parsed)


@dataclass(frozen=True, slots=True)
class Requirement:
    requirement: str
    params: dict[str, object] = field(default_factory=dict)

    @property
    def resource_token(self) -> str | None:
        v = self.params.get("resource-token")
        return v if isinstance(v, str) else None

    @property
    def url(self) -> str | None:
        v = self.params.get("url")
        return v if isinstance(v, str) else None

    @property
    def code(self) -> str | None:
        v = self.params.get("code")
        return v if isinstance(v, str) else None


def parse_aauth_requirement(value: str) -> Requirement:
    d = _parse_dict(value)
    if "requirement" not in d:
        raise FieldError("AAuth-Requirement has no requirement member")
    item, params = d["requirement"]
    if not isinstance(item, http_sf.Token):
        raise FieldError("requirement must be a Token")
    return Requirement(str(item), dict(params))


@dataclass(frozen=True, slots=True)
class SignatureErrorField:
    code: str
    required_input: tuple[str, ...] | None = None


def parse_signature_error(value: str) -> SignatureErrorField:
    d = _parse_dict(value)
    if "error" not in d:
        raise FieldError("Signature-Error has no error member")
    item, _ = d["error"]
    if not isinstance(item, http_sf.Token):
        raise FieldError("error must be a Token")
    required: tuple[str, ...] | None = None
    if "required_input" in d:
        inner, _ = d["required_input"]
        if not isinstance(inner, list) or not all(isinstance(m[0], str) for m in inner):
            raise FieldError("required_input must be an Inner List of Strings")
        required = tuple(str(m[0]) for m in inner)
    return SignatureErrorField(str(item), required)


def parse_token_list(value: str | None) -> tuple[str, ...]:
    """``AAuth-Capabilities``: an SF List of Tokens; non-Token members are ignored."""
    if not value:
        return ()
    try:
        parsed: Any = http_sf.parse(value.encode("ascii"), tltype="list")
    except (UnicodeEncodeError, http_sf.StructuredFieldError, ValueError) as exc:
        raise FieldError(str(exc)) from exc
    return tuple(str(m[0]) for m in parsed if isinstance(m[0], http_sf.Token))
