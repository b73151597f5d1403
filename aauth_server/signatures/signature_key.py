"""The ``Signature-Key`` request header (draft-hardt-httpbis-signature-key, digest 2.4).

An SF Dictionary keyed by signature label; each member is a Token naming the scheme and
its parameters carry the scheme data.  Schemes are data in :data:`SCHEMES` so a deployment
can register more; which schemes a verifier *accepts* is the verifier's decision.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

import http_sf

from ..errors import SignatureFailure
from ..fields import FieldError, reject_duplicate

ParamValue = str | bytes | bool | int


class SignatureKey(NamedTuple):
    """One member of the field: label, scheme and the scheme's parameters.  A named tuple
    rather than a frozen dataclass: as immutable, and built for each new value at a third
    of the cost."""

    label: str
    scheme: str
    params: Mapping[str, ParamValue]
    #: Parameters whose SF type has no place in ``params`` (Token, Decimal, Date,
    #: Display String).  Kept so validation can tell "absent" from "wrongly typed".
    other_params: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class SchemeSpec:
    name: str
    required: Mapping[str, type]
    optional: Mapping[str, type] = field(default_factory=dict)
    forbidden: frozenset[str] = frozenset()


def _spec(
    name: str,
    required: Mapping[str, type],
    optional: Mapping[str, type] | None = None,
    forbidden: Iterable[str] = (),
) -> SchemeSpec:
    return SchemeSpec(
        name,
        MappingProxyType(dict(required)),
        MappingProxyType(dict(optional or {})),
        frozenset(forbidden),
    )


SCHEMES: dict[str, SchemeSpec] = {
    s.name: s
    for s in (
        _spec(
            "hwk",
            {"kty": str, "alg": str},
            {"crv": str, "x": str, "y": str, "n": str, "e": str},
            forbidden=("kid",),
        ),
        _spec("jkt-jwt", {"jwt": str}, {"cache": bool}),
        _spec("jwks_uri", {"id": str, "dwk": str, "kid": str}),
        _spec("jwks", {"url": str, "kid": str}),
        _spec("jwt", {"jwt": str}, {"cache": bool}),
        _spec("self-jwt", {"jwt": str}),
        _spec("x509", {"x5u": str, "x5t": bytes}),
        _spec("cached", {"cid": str}),
    )
}


def register_scheme(spec: SchemeSpec) -> None:
    """Add or replace a scheme's parameter rules."""
    SCHEMES[spec.name] = spec
    _SELECTED.clear()  # entries validated under the old rules


class SignatureKeys(dict[str, SignatureKey]):
    """The parsed members, plus the labels whose member was not a Token."""

    __slots__ = ("non_token_labels",)

    def __init__(self) -> None:
        super().__init__()
        self.non_token_labels: frozenset[str] = frozenset()


# The one form an AAuth agent sends on every request: a single ``jwt`` member whose token
# is plain base64url.  Matching it directly gives the same result as the full parser
# (a String of these characters needs no unescaping) without walking a long string
# character by character; every other form takes the full parser.  The form is
# ``label=jwt;jwt="<token>"`` (one space allowed after ";"), the label at most 64
# characters, the token 1 to 16384 of [A-Za-z0-9_-.]: the head checked by a regex, the
# token's characters by deleting the alphabet in C (bytes.translate), a third of a
# character-class regex's time over a token of several hundred characters.
_FAST_JWT_HEAD = re.compile(r'([a-z*][a-z0-9_\-.*]{0,63})=jwt; ?jwt="')
_TOKEN_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-."
_TOKEN_MAX = 16384


def _fast_jwt(value: str) -> tuple[str, str] | None:
    """(label, token) when ``value`` is the one-``jwt``-member form, else None."""
    head = _FAST_JWT_HEAD.match(value)
    if head is None or value[-1] != '"':
        return None
    token = value[head.end() : -1]
    if (
        not 0 < len(token) <= _TOKEN_MAX
        or not token.isascii()
        or token.encode("ascii").translate(None, _TOKEN_ALPHABET)
    ):
        return None
    return head.group(1), token


def parse_signature_key(value: str) -> SignatureKeys:
    """Parse the field; raises :class:`FieldError` when it is no SF Dictionary."""
    fast = _fast_jwt(value)
    if fast is not None:
        result = SignatureKeys()
        label, token = fast
        result[label] = SignatureKey(label, "jwt", MappingProxyType({"jwt": token}), frozenset())
        return result
    try:
        members: dict[str, tuple[Any, dict[str, Any]]] = http_sf.parse(
            value.encode("ascii"), tltype="dictionary", on_duplicate_key=reject_duplicate
        )  # type: ignore[assignment]
    except (UnicodeEncodeError, ValueError) as exc:
        raise FieldError(f"Signature-Key is not a Structured Field Dictionary: {exc}") from exc
    result = SignatureKeys()
    rejected: set[str] = set()
    for label, (item, raw_params) in members.items():
        if not isinstance(item, http_sf.Token):
            rejected.add(label)
            continue
        params: dict[str, ParamValue] = {}
        other: set[str] = set()
        for name, pvalue in raw_params.items():
            if isinstance(pvalue, (str, bytes, bool, int)):
                params[name] = pvalue
            else:
                other.add(name)
        result[label] = SignatureKey(label, str(item), MappingProxyType(params), frozenset(other))
    result.non_token_labels = frozenset(rejected)
    return result


_CACHE_MAX = 1024
# An OrderedDict: evicting its oldest entry is O(1), where pop(next(iter(dict))) walks the
# holes earlier evictions left in a plain dict (every new agent token is a new value here).
_cache: OrderedDict[str, SignatureKeys] = OrderedDict()


def _parse_cached(value: str) -> SignatureKeys:
    hit = _cache.get(value)
    if hit is not None:
        return hit
    parsed = parse_signature_key(value)
    if len(_cache) >= _CACHE_MAX:
        # Oldest-inserted first; a concurrent eviction may already have emptied it.
        with suppress(KeyError):
            _cache.popitem(last=False)
    _cache[value] = parsed
    return parsed


def _has_type(value: ParamValue, expected: type) -> bool:
    # Exact type: a Boolean is not an Integer, and SF types must not blur.
    return type(value) is expected


def _validate(key: SignatureKey, spec: SchemeSpec) -> None:
    present_forbidden = spec.forbidden and spec.forbidden & (set(key.params) | key.other_params)
    if present_forbidden:
        raise SignatureFailure(
            "invalid_key",
            f"{key.scheme} forbids parameter(s) {', '.join(sorted(present_forbidden))}",
        )
    for name, expected in spec.required.items():
        pvalue = key.params.get(name)
        if pvalue is None or not _has_type(pvalue, expected):
            raise SignatureFailure(
                "invalid_signature", f"{key.scheme} needs a {expected.__name__} {name!r}"
            )
    for name, expected in spec.optional.items():
        if name in key.other_params or (
            name in key.params and not _has_type(key.params[name], expected)
        ):
            raise SignatureFailure(
                "invalid_signature", f"{key.scheme} parameter {name!r} must be {expected.__name__}"
            )


# Members that passed selection, by (raw value, label, accepted schemes as a tuple): an agent
# sends the same Signature-Key on every request.  Only successes are kept; emptied when full
# and whenever a scheme's rules change.
_SELECTED: dict[tuple[str, str, tuple[str, ...] | None], SignatureKey] = {}


def select_signature_key(
    value: str | None, label: str, *, accept_schemes: Collection[str] | None = None
) -> SignatureKey:
    """The validated member for ``label``; unknown schemes are returned unvalidated.

    With ``accept_schemes``, a scheme outside it answers ``unsupported_scheme`` before its
    parameters are looked at (digest 2.6 step 4 comes before key resolution in step 5).
    """
    if value is not None and (accept_schemes is None or type(accept_schemes) is tuple):
        cache_key = (value, label, accept_schemes)
        hit = _SELECTED.get(cache_key)
        if hit is None:
            hit = _select(value, label, accept_schemes)
            if len(_SELECTED) >= _CACHE_MAX:
                _SELECTED.clear()
            _SELECTED[cache_key] = hit
        return hit
    return _select(value, label, accept_schemes)


def _select(value: str | None, label: str, accept_schemes: Collection[str] | None) -> SignatureKey:
    if value is None:
        raise SignatureFailure("invalid_signature", "Signature-Key is missing")
    try:
        members = _parse_cached(value)
    except FieldError as exc:
        raise SignatureFailure("invalid_signature", "Signature-Key is malformed") from exc
    key = members.get(label)
    if key is None:
        if label in members.non_token_labels:
            raise SignatureFailure("invalid_signature", f"Signature-Key {label!r} is not a Token")
        raise SignatureFailure("invalid_signature", f"Signature-Key has no member {label!r}")
    if accept_schemes is not None and key.scheme not in accept_schemes:
        raise SignatureFailure(
            "unsupported_scheme",
            f"scheme {key.scheme!r} is not accepted here",
            accept_schemes=tuple(accept_schemes),
        )
    spec = SCHEMES.get(key.scheme)
    if spec is not None:
        _validate(key, spec)
    return key


def serialize_signature_key(entries: Iterable[SignatureKey]) -> str:
    """Canonical compact form: ``sig=jwt;jwt="..."``, members joined by ``", "``."""
    members: dict[str, object] = {}
    for entry in entries:
        if entry.label in members:
            raise ValueError(f"label {entry.label!r} appears twice")
        members[entry.label] = (http_sf.Token(entry.scheme), dict(entry.params))
    try:
        return http_sf.ser(members)  # type: ignore[arg-type]
    except ValueError as exc:
        raise FieldError(f"cannot serialise Signature-Key: {exc}") from exc
