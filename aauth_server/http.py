"""Framework-neutral request and response types.

Adapters convert their framework's request into :class:`HttpRequest` and render
:class:`HttpResponse` back; the core never sees a framework object.
"""

from __future__ import annotations

import ipaddress
import json
import json.encoder
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

Headers = list[tuple[str, str]]

#: The default cap on a request body the core reads (protected endpoints, PS and AS
#: endpoints); a larger body answers ``413`` before authentication.
DEFAULT_MAX_BODY = 1024 * 1024


@dataclass(slots=True)
class HttpRequest:
    """A request as the core sees it.

    ``url`` is the absolute public URL (scheme, authority, path, query).  ``headers``
    keeps every header line in wire order with its raw value: signed fields must
    never be re-serialised.
    """

    method: str
    url: str
    headers: Headers = field(default_factory=list)
    body: bytes = b""
    # Lower-cased name -> combined value, built on first lookup: verification reads a
    # dozen fields per request.  Treat ``headers`` as immutable once a lookup happened.
    _combined: dict[str, str] | None = field(default=None, init=False, repr=False, compare=False)

    def header_values(self, name: str) -> list[str]:
        """Every value of ``name`` (case-insensitive), in wire order."""
        lname = name.lower()
        return [v for k, v in self.headers if k.lower() == lname]

    def header(self, name: str) -> str | None:
        """The field value as RFC 9110 combines repeated lines (``", "``), or None."""
        combined = self._combined
        if combined is None:
            combined = self.combined_headers()
        # Most callers already pass the lower-cased name: skip lower() when it is found.
        found = combined.get(name)
        return found if found is not None else combined.get(name.lower())

    def combined_headers(self) -> dict[str, str]:
        """Lower-cased name -> the value :meth:`header` answers, for every field: for code
        that reads several fields in a row.  The caller must not change it."""
        combined = self._combined
        if combined is None:
            combined = {}
            repeated: dict[str, list[str]] = {}
            for k, v in self.headers:
                lname = k.lower()
                value = v.strip()
                if lname in combined:
                    _repeat(combined, repeated, lname, value)
                else:
                    combined[lname] = value
            if repeated:
                _join_repeated(combined, repeated)
            self._combined = combined
        return combined

    @classmethod
    def from_wire(
        cls,
        method: str,
        url: str,
        headers: Headers,
        combined: dict[str, str],
        body: bytes = b"",
    ) -> HttpRequest:
        """A request whose :meth:`header` index an adapter built while decoding the header
        lines (:func:`decode_header_lines`): the same request as ``HttpRequest(method, url,
        headers, body)``, without a second pass over the lines on the first lookup.
        ``combined`` must be what :func:`decode_header_lines` returned with ``headers``."""
        request = cls(method, url, headers, body)
        request._combined = combined
        return request

    @property
    def path(self) -> str:
        try:
            return urlsplit(self.url).path or "/"
        except ValueError:
            # urlsplit refuses some authorities (an unbalanced "[" or "]"); the path after
            # them is still plain.  Adapters refuse such a Host before the core sees it.
            rest = self.url.partition("#")[0].partition("?")[0]
            _, sep, after = rest.partition("://")
            slash = after.find("/") if sep else rest.find("/")
            return (after if sep else rest)[slash:] if slash >= 0 else "/"


def decode_header_lines(
    lines: Iterable[tuple[bytes, bytes]],
) -> tuple[Headers, dict[str, str], list[str]]:
    """Header lines as ASGI and most servers hand them (``latin-1`` bytes), in one pass:
    the decoded lines in wire order, the combined index :meth:`HttpRequest.header` reads
    (lower-cased name -> values stripped and joined with ``", "``, exactly as it builds it),
    and every raw ``Host`` value in order (for the one-Host rule of RFC 9112 3.2).  Give the
    first two to :meth:`HttpRequest.from_wire`."""
    headers: Headers = []
    combined: dict[str, str] = {}
    repeated: dict[str, list[str]] = {}
    hosts: list[str] = []
    append = headers.append
    names = _NAMES
    for raw_name, raw_value in lines:
        # A server sees the same few names on every request: each is decoded and
        # lower-cased once (the same strings every time, so later lookups compare by identity).
        try:
            known = names.get(raw_name)
        except TypeError:  # a mutable name (bytearray): decoded every time
            known = None
        if known is None:
            known = _remember_name(raw_name)
        name, lname = known
        value = raw_value.decode("latin-1")
        append((name, value))
        if lname == "host":
            hosts.append(value)
        if lname in combined:
            _repeat(combined, repeated, lname, value.strip())
        else:
            combined[lname] = value.strip()
    if repeated:
        _join_repeated(combined, repeated)
    return headers, combined, hosts


def _repeat(
    combined: dict[str, str], repeated: dict[str, list[str]], lname: str, value: str
) -> None:
    """Note one more line of a field already in ``combined``; :func:`_join_repeated` joins
    them all once at the end (adding each to the joined string so far would copy it per line:
    quadratic in the number of lines a client repeats)."""
    parts = repeated.get(lname)
    if parts is None:
        repeated[lname] = [combined[lname], value]
    else:
        parts.append(value)


def _join_repeated(combined: dict[str, str], repeated: dict[str, list[str]]) -> None:
    for lname, parts in repeated.items():
        combined[lname] = ", ".join(parts)


#: Decoded header names, by raw name: (name, lower-cased name).  Bounded whatever clients
#: send: emptied when full.
_NAMES: dict[bytes, tuple[str, str]] = {}
_NAMES_MAX = 512
_NAME_MAX = 64


def _remember_name(raw_name: bytes) -> tuple[str, str]:
    name = raw_name.decode("latin-1")
    known = (name, name.lower())
    # Only immutable names (a bytearray key could change later) of a sane length are kept.
    if type(raw_name) is bytes and len(raw_name) <= _NAME_MAX:
        if len(_NAMES) >= _NAMES_MAX:
            _NAMES.clear()
        _NAMES[raw_name] = known
    return known


#: Larger than any count, length or number of seconds a server reads from the wire, and
#: still a 64-bit signed integer (what SQL and every store take).
MAX_UINT = 2**62


def small_uint(text: str | None, maximum: int = MAX_UINT) -> int | None:
    """An unsigned decimal integer read from the wire (``Prefer: wait=N``, ``Retry-After``,
    ``Content-Length``, a page's ``before`` or ``limit``), the one way every reader takes it.

    ASCII digits only, surrounding whitespace aside: a sign, an exponent, a fraction, an
    empty value or another script's digits (``"-1"``, ``"1e9"``, ``"٣"``, ``"²"``) are
    malformed and give None (the caller treats the value as absent); any number of digits
    past ``maximum`` gives ``maximum`` (never a huge int handed on, never a ``ValueError``).
    """
    if text is None:
        return None
    text = text.strip()
    if not text or not text.isascii() or not text.isdigit():
        return None
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(maximum)):
        return maximum
    return min(int(digits), maximum)


def prefer_wait(request: HttpRequest, maximum: int = MAX_UINT) -> int | None:
    """``wait=N`` of RFC 7240 ``Prefer`` (the first one), through :func:`small_uint`; None
    when absent or malformed (a preference a server does not understand is ignored)."""
    for value in request.header_values("prefer"):
        for preference in value.split(","):
            name, _, rest = preference.split(";", 1)[0].partition("=")
            if name.strip().lower() == "wait":
                text = rest.strip()
                if len(text) >= 2 and text[0] == text[-1] == '"':
                    text = text[1:-1]
                return small_uint(text, maximum)
    return None


class MalformedHost(ValueError):
    """A ``Host`` that is not an RFC 3986 ``host[:port]``: the request gets ``400``."""


#: RFC 3986 ``reg-name`` / IPv4 (unreserved, pct-encoded, sub-delims but ","), then an
#: optional port; never empty (RFC 9110 4.2.1: an "http" URI with an empty host is
#: invalid).  A comma is how a server joins two Host lines (and no DNS name has one).
_REG_NAME_HOST = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+;=]|%[0-9A-Fa-f]{2})+(?::[0-9]{0,5})?")
_IP_LITERAL_HOST = re.compile(r"\[([0-9A-Fa-f:.]+)\](?::[0-9]{0,5})?")


def checked_host(host: str) -> str:
    """``host`` when it is a valid ``Host`` value (RFC 9110 7.2), else :class:`MalformedHost`.

    Every character a URL parser could read as structure (``@``, ``/``, ``?``, ``#``,
    ``[``, ``]`` outside an IPv6 literal, whitespace) is refused, so the URL the core builds
    from it parses back to exactly this authority.
    """
    if host in _GOOD_HOSTS:  # a server sees a handful of Host values, request after request
        return host
    if len(host) > 255:
        raise MalformedHost("Host is too long")
    if _REG_NAME_HOST.fullmatch(host):
        _remember_host(host)
        return host
    literal = _IP_LITERAL_HOST.fullmatch(host)
    if literal:
        try:
            ipaddress.IPv6Address(literal.group(1))
        except ValueError:
            pass
        else:
            _remember_host(host)
            return host
    raise MalformedHost("Host is not a valid host[:port]")


#: Host values :func:`checked_host` accepted (only those: a refusal is decided every time).
#: Bounded whatever clients send: emptied when full.
_GOOD_HOSTS: set[str] = set()
_GOOD_HOSTS_MAX = 256


def _remember_host(host: str) -> None:
    if len(_GOOD_HOSTS) >= _GOOD_HOSTS_MAX:
        _GOOD_HOSTS.clear()
    _GOOD_HOSTS.add(host)


def request_host(request: HttpRequest) -> str | None:
    """The request's one ``Host`` value (None without one); :class:`MalformedHost` for two
    Host lines (RFC 9112 3.2) or a value that is not ``host[:port]``."""
    hosts = request.header_values("host")
    if len(hosts) > 1:
        raise MalformedHost("more than one Host line")
    return checked_host(hosts[0].strip()) if hosts else None


def public_url(
    scheme: str, host: str | None, target: str, *, public_origin: str | None, default_host: str
) -> str:
    """The absolute URL a request was sent to: ``public_origin`` wins over ``Host``
    (``Forwarded`` is never trusted); without a Host, ``default_host``.  Raises
    :class:`MalformedHost` for a Host no URL can be built from, even when ``public_origin``
    wins: a request that malformed is refused alike whatever the configuration."""
    checked = default_host if host is None else checked_host(host)
    if public_origin:
        return public_origin.rstrip("/") + target
    return f"{scheme}://{checked}{target}"


@dataclass(slots=True)
class HttpResponse:
    status: int
    headers: Headers = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for k, v in self.headers:
            if k.lower() == lname:
                return v
        return None

    @classmethod
    def json(
        cls,
        status: int,
        payload: Any,
        *,
        headers: Headers | None = None,
        content_type: str = "application/json",
    ) -> HttpResponse:
        body = json_bytes(payload)
        hdrs: Headers = [("Content-Type", content_type)]
        hdrs.extend(headers or [])
        return cls(status, hdrs, body)


def compact_json_encoder(*, ensure_ascii: bool, allow_nan: bool = True) -> Callable[[Any], str]:
    """``JSONEncoder(separators=(",", ":"), ...).encode``, set up once instead of per call.

    ``JSONEncoder.encode`` builds a fresh C encoder (and a closure) on every call; this keeps
    one.  It runs without the cycle bookkeeping, so a cycle (or a structure too deep to
    encode) is handed to ``JSONEncoder.encode`` itself, which raises exactly what it always
    did.  Output is byte-for-byte ``JSONEncoder.encode``'s.
    """
    encoder = json.JSONEncoder(
        separators=(",", ":"), ensure_ascii=ensure_ascii, allow_nan=allow_nan
    )
    # The C accelerators JSONEncoder.iterencode itself uses (absent only without _json).
    make = getattr(json.encoder, "c_make_encoder", None)
    quote = getattr(
        json.encoder, "c_encode_basestring_ascii" if ensure_ascii else "c_encode_basestring", None
    )
    if make is None or quote is None:  # pragma: no cover - CPython always has them
        return encoder.encode
    run = make(None, encoder.default, quote, None, ":", ",", False, False, allow_nan)

    def encode(value: Any) -> str:
        try:
            return "".join(run(value, 0))
        except RecursionError:
            return encoder.encode(value)

    return encode


_encode_response = compact_json_encoder(ensure_ascii=False)


def json_bytes(payload: Any) -> bytes:
    """The one JSON serialisation every response uses, so adapters answer byte-for-byte alike."""
    return _encode_response(payload).encode("utf-8")
