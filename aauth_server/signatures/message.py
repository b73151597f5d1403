"""RFC 9421 HTTP Message Signatures for requests: parse, build the base, sign, verify.

Only the RFC 9421 core lives here.  Which components must be covered, the ``created``
window and key resolution are the verifier's business (digest section 2.6); this module
answers "is this signature over this request valid under this key".
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple, Protocol
from urllib.parse import SplitResult, urlsplit

import http_sf
from http_sf.innerlist import ser_innerlist, ser_item_or_inner_list
from http_sf.item import ser_item

from ..errors import SignatureFailure
from ..fields import FieldError, reject_duplicate, sf_key
from ..http import HttpRequest
from .digest import content_digest, verify_content_digest


class Signer(Protocol):
    alg: str

    def sign(self, data: bytes) -> bytes: ...


class Verifier(Protocol):
    alg: str

    def verify(self, signature: bytes, data: bytes) -> bool: ...


AAUTH_COMPONENTS: tuple[str, ...] = ("@method", "@authority", "@path", "signature-key")
BODY_COMPONENTS: tuple[str, ...] = ("content-type", "content-digest")

Params = tuple[tuple[str, object], ...]


class ParsedSignature(NamedTuple):
    """One signature of a request: what its Signature-Input member says, and its bytes.

    A named tuple rather than a frozen dataclass: as immutable, and built for every request
    at a third of the cost."""

    label: str
    components: tuple[str, ...]
    component_params: tuple[Params, ...]
    created: int | None
    expires: int | None
    keyid: str | None
    alg: str | None
    signature_params: str
    signature: bytes


def _fail(detail: str) -> SignatureFailure:
    return SignatureFailure("invalid_signature", detail)


SfDict = dict[str, tuple[Any, dict[str, Any]]]


def _parse_dict(name: str, value: str | None) -> SfDict:
    if value is None:
        raise _fail(f"{name} is missing")
    try:
        parsed: SfDict = http_sf.parse(
            value.encode("ascii"), tltype="dictionary", on_duplicate_key=reject_duplicate
        )  # type: ignore[assignment]
    except (UnicodeEncodeError, ValueError) as exc:
        raise _fail(f"{name} is not a valid Structured Field Dictionary") from exc
    return parsed


_B64URL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _decode_base64url(text: str) -> bytes:
    # Unpadded only: the quirk we tolerate is one specific encoder's output, not any base64.
    if not text or len(text) % 4 == 1 or not _B64URL_CHARS.issuperset(text):
        raise _fail("Signature is not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise _fail("Signature is not unpadded base64url") from exc


_URL_TO_STD = str.maketrans("-_", "+/")

# SF Strings (matched whole, closing quote or not, so nothing inside one is touched and
# nothing is scanned twice), and Byte Sequences where an item starts: after the "=" of a
# member or parameter, or inside an Inner List.  A Token may hold ":", never after "=".
_STRING_OR_BYTE_SEQUENCE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|(?<=[=( ]):([A-Za-z0-9_-]*):')


def _urlsafe_byte_sequences(value: str) -> str:
    """``value`` with each unpadded base64url Byte Sequence spelled in standard base64.

    A widely used Python/Java stack sends ``sig=:<unpadded base64url>:`` (GUIDE section 5),
    which is no Structured Field: ``-`` and ``_`` are outside the Byte Sequence alphabet.
    Only that exact shape is rewritten (no ``+``, ``/`` or ``=`` mixed in); the rewritten
    field decodes to the bytes the signer encoded.  Linear in the length of ``value``.
    """

    def standard(match: re.Match[str]) -> str:
        content = match.group(1)
        if content is None or ("-" not in content and "_" not in content):
            return match.group(0)
        return f":{content.translate(_URL_TO_STD)}:"

    return _STRING_OR_BYTE_SEQUENCE.sub(standard, value)


def _parse_signature_dict(value: str | None, accept_base64url: bool) -> SfDict:
    try:
        return _parse_dict("Signature", value)
    except SignatureFailure:
        # Only a field the strict parser refused is looked at again: a valid one means
        # exactly what RFC 9651 says, whatever the setting.
        if not accept_base64url or value is None:
            raise
        rewritten = _urlsafe_byte_sequences(value)
        if rewritten == value:
            raise
    return _parse_dict("Signature", rewritten)


def _choose_label(inputs: SfDict) -> str:
    if len(inputs) == 1:
        return next(iter(inputs))
    if "sig" in inputs:
        return "sig"
    if not inputs:
        raise _fail("Signature-Input has no members")
    return next(iter(inputs))


# Fast path for the overwhelmingly common wire form: one member, canonical serialisation,
# plain component names and the usual parameters.  Anything else (several members, odd
# whitespace, duplicates, component parameters, non-canonical integers) takes the full
# Structured Field parser below, so both paths accept and reject exactly the same inputs.
_FAST_INPUT = re.compile(
    r'([a-z*][a-z0-9_\-.*]{0,63})=(\(((?:"[a-z0-9@_.\-]{1,64}")(?: "[a-z0-9@_.\-]{1,64}")*)?\)'
    r"((?:;(?:created|expires)=(?:0|[1-9][0-9]{0,14})"
    r'|;(?:keyid|alg|nonce|tag)="[\x20\x21\x23-\x5b\x5d-\x7e]{0,256}")*))'
)


@dataclass(frozen=True, slots=True)
class SignatureInput:
    """A Signature-Input value the fast form matched (:func:`signature_parts`): everything
    a :class:`ParsedSignature` holds but the signature bytes, and the covered names."""

    label: str
    #: What the Signature member must start with: ``label=:``.
    prefix: str
    components: tuple[str, ...]
    component_params: tuple[Params, ...]
    created: int | None
    expires: int | None
    keyid: str | None
    alg: str | None
    signature_params: str
    covered: frozenset[str]
    #: How the base's lines are made (one object per list of components).
    plan: _Plan = field(compare=False)


# Parsed Signature-Input values by raw value: an agent sends the same one for every request
# within a second (only ``created`` changes), so a busy agent's requests parse it once.
# Only values the fast form accepts are kept; bounded, emptied when full.
_INPUTS: dict[str, SignatureInput] = {}
_INPUTS_MAX = 1024


def _fast_input(value: str) -> SignatureInput | None:
    hit = _INPUTS.get(value)
    if hit is not None:
        return hit
    m_in = _FAST_INPUT.fullmatch(value)
    if m_in is None:
        return None
    chosen, signature_params, inner, raw_params = m_in.groups()
    # The pattern admits only '"name"' items joined by single spaces, names without quotes
    # or spaces: stripping the outer quotes and splitting on '" "' yields exactly the names.
    names = tuple(inner[1:-1].split('" "')) if inner else ()
    covered = frozenset(names)
    if len(covered) != len(names):
        return None
    params: dict[str, str | int] = {}
    for item in raw_params.split(";")[1:]:
        key, _, raw = item.partition("=")
        if key in params:
            return None
        params[key] = raw[1:-1] if raw.startswith('"') else int(raw)
    created, expires = params.get("created"), params.get("expires")
    keyid, alg = params.get("keyid"), params.get("alg")
    entry = SignatureInput(
        label=chosen,
        prefix=chosen + "=:",
        components=names,
        component_params=((),) * len(names),
        created=created if isinstance(created, int) else None,
        expires=expires if isinstance(expires, int) else None,
        keyid=keyid if isinstance(keyid, str) else None,
        alg=alg if isinstance(alg, str) else None,
        signature_params=signature_params,
        covered=covered,
        plan=_plan(names, ((),) * len(names)),
    )
    if len(_INPUTS) >= _INPUTS_MAX:
        _INPUTS.clear()  # many distinct values (an attacker's): start over, stay bounded
    _INPUTS[value] = entry
    return entry


def _fast_signature_bytes(b64: str, accept_base64url: bool) -> bytes | None:
    """The bytes of a byte sequence as the full path decodes them, or None to let it decide.

    Standard base64 with or without padding is what http_sf accepts (RFC 9651 4.2.7: no
    failure on missing padding); the url-safe alphabet unpadded is the quirk that
    :func:`_urlsafe_byte_sequences` admits.  A mix of the two alphabets, padding on the
    url-safe form, or any other character is left to the full path.
    """
    if "-" in b64 or "_" in b64:
        if not accept_base64url or "+" in b64 or "/" in b64 or "=" in b64:
            return None
        b64 = b64.translate(_URL_TO_STD)
    elif b64 and len(b64) % 4 == 0 and not b64.endswith("==="):
        # Already padded as below would pad it (at most two "=", so the unpadded part is
        # never 1 modulo 4): the very string the general case decodes.
        try:
            return binascii.a2b_base64(b64, strict_mode=True)
        except (binascii.Error, ValueError):
            return None
    unpadded = b64.rstrip("=")
    if not unpadded or len(b64) - len(unpadded) > 2 or len(unpadded) % 4 == 1:
        return None
    try:
        # What http_sf does with the content once re-padded: base64.b64decode(...,
        # validate=True), which is exactly this call (strict: nothing outside the alphabet).
        return binascii.a2b_base64(unpadded + "=" * (-len(unpadded) % 4), strict_mode=True)
    except (binascii.Error, ValueError):
        return None


def signature_parts(
    input_value: str, signature_value: str, accept_base64url: bool = True
) -> tuple[SignatureInput, bytes] | None:
    """What :func:`parse_signature_fast` reads, without building the
    :class:`ParsedSignature`: the Signature-Input member (parsed once per value) and the
    signature's bytes; None when the values are not in the common form."""
    entry = _INPUTS.get(input_value)
    if entry is None:
        entry = _fast_input(input_value)
        if entry is None:
            return None
    # The whole Signature value must be "label=:<content>:" (one member, nothing around it).
    prefix = entry.prefix
    if not signature_value.startswith(prefix) or signature_value[-1] != ":":
        return None
    signature = _fast_signature_bytes(signature_value[len(prefix) : -1], accept_base64url)
    if not signature:
        return None
    return entry, signature


def _parse_fast_parts(
    input_value: str, signature_value: str, label: str | None, accept_base64url: bool
) -> tuple[ParsedSignature, frozenset[str]] | None:
    parts = signature_parts(input_value, signature_value, accept_base64url)
    if parts is None:
        return None
    entry, signature = parts
    if label is not None and label != entry.label:
        return None
    return (
        ParsedSignature(
            entry.label,
            entry.components,
            entry.component_params,
            entry.created,
            entry.expires,
            entry.keyid,
            entry.alg,
            entry.signature_params,
            signature,
        ),
        entry.covered,
    )


def _parse_fast(
    input_value: str, signature_value: str, label: str | None, accept_base64url: bool = True
) -> ParsedSignature | None:
    parts = _parse_fast_parts(input_value, signature_value, label, accept_base64url)
    return None if parts is None else parts[0]


def parse_signature_fast(
    input_value: str, signature_value: str, *, accept_base64url: bool = True
) -> tuple[ParsedSignature, frozenset[str]] | None:
    """What :func:`parse_signature` returns for these field values, with the set of covered
    component names; None when the values are not in the common form (then only
    :func:`parse_signature` decides, and it may refuse them)."""
    return _parse_fast_parts(input_value, signature_value, None, accept_base64url)


def parse_signature(
    request: HttpRequest, *, label: str | None = None, accept_base64url: bool = True
) -> ParsedSignature:
    """Read the signature ``label`` (or the one a verifier should pick) from the request."""
    input_value = request.header("signature-input")
    signature_value = request.header("signature")
    if input_value is not None and signature_value is not None:
        fast = _parse_fast(input_value, signature_value, label, accept_base64url)
        if fast is not None:
            return fast
    inputs = _parse_dict("Signature-Input", input_value)
    signatures = _parse_signature_dict(signature_value, accept_base64url)
    chosen = _choose_label(inputs) if label is None else label
    if chosen not in inputs:
        raise _fail(f"Signature-Input has no member {chosen!r}")
    if chosen not in signatures:
        raise _fail(f"Signature has no member {chosen!r}")

    member = inputs[chosen]
    items, sig_params = member
    if not isinstance(items, list):
        raise _fail("Signature-Input member is not an Inner List")
    names: list[str] = []
    comp_params: list[Params] = []
    seen: set[tuple[str, frozenset[tuple[str, object]]]] = set()
    for name, params in items:
        if not isinstance(name, str):
            raise _fail("component identifiers must be Strings")
        identity = (name, frozenset(params.items()))
        if identity in seen:
            raise _fail(f"component {name!r} is covered twice")
        seen.add(identity)
        names.append(name)
        comp_params.append(tuple(params.items()))

    created = sig_params.get("created")
    expires = sig_params.get("expires")
    keyid = sig_params.get("keyid")
    alg = sig_params.get("alg")
    # bool is an int subclass: `created=?1` must not pass as 1.
    for pname, pvalue in (("created", created), ("expires", expires)):
        if pvalue is not None and type(pvalue) is not int:
            raise _fail(f"{pname} must be an Integer")
    for pname, pvalue in (("keyid", keyid), ("alg", alg)):
        if pvalue is not None and type(pvalue) is not str:
            raise _fail(f"{pname} must be a String")

    raw_sig = signatures[chosen][0]
    if isinstance(raw_sig, bytes):
        signature = raw_sig
    elif accept_base64url and isinstance(raw_sig, (str, http_sf.Token)):
        signature = _decode_base64url(str(raw_sig))
    else:
        raise _fail("Signature member is not a Byte Sequence")
    if not signature:
        raise _fail("Signature is empty")

    return ParsedSignature(
        label=chosen,
        components=tuple(names),
        component_params=tuple(comp_params),
        created=created,
        expires=expires,
        keyid=keyid,
        alg=alg,
        signature_params=ser_innerlist(member),
        signature=signature,
    )


# --- derived components (RFC 9421 section 2.2) ---------------------------------------

_DEFAULT_PORTS = {"https": "443", "http": "80"}


def _authority(raw: str, url: SplitResult) -> str:
    netloc = url.netloc.rpartition("@")[2].lower()
    if netloc.startswith("["):
        host, _, rest = netloc.partition("]")
        host += "]"
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = netloc.partition(":")
    if not host:
        raise _fail("request URL has no host")
    if not port or port == _DEFAULT_PORTS.get(url.scheme.lower()):
        return host
    return f"{host}:{port}"


def _target_uri(raw: str, url: SplitResult) -> str:
    uri = raw.partition("#")[0]
    if url.path:
        return uri
    # An absent path is "/" (RFC 9110 4.2.3); everything before any "?" is scheme://authority.
    base, mark, query = uri.partition("?")
    return f"{base}/{mark}{query}"


def _request_target(raw: str, url: SplitResult) -> str:
    # urlsplit drops an empty query, but "/p?" and "/p" are different targets.
    has_query = "?" in raw.partition("#")[0]
    return f"{url.path or '/'}?{url.query}" if has_query else url.path or "/"


#: Derived components that depend on the request URL only (``@method`` is the other one).
_DERIVED: dict[str, Callable[[str, SplitResult], str]] = {
    "@authority": _authority,
    "@path": lambda raw, url: url.path or "/",
    "@query": lambda raw, url: "?" + url.query,
    "@target-uri": _target_uri,
    "@scheme": lambda raw, url: url.scheme.lower(),
    "@request-target": _request_target,
}


@lru_cache(maxsize=1024)
def _url_component(name: str, raw: str) -> str:
    """The value of derived component ``name`` for the request URL ``raw``, checked for line
    breaks.  A resource serves a handful of URLs to many requests: each is derived once
    (bounded; failures are raised every time, never kept)."""
    try:
        url = urlsplit(raw)
    except ValueError as exc:  # an authority no URL parser accepts ("[", "]")
        raise _fail("the request URL is malformed") from exc
    value = _DERIVED[name](raw, url)
    if "\n" in value or "\r" in value:
        raise _fail(f"component {name!r} contains a line break")
    return value


# Known Structured Field types for the `sf` parameter; other fields cannot be re-serialised.
_SF_TYPES = {
    "signature-key": "dictionary",
    "content-digest": "dictionary",
    "signature-input": "dictionary",
    "signature": "dictionary",
    "aauth-capabilities": "list",
}


def _structured_value(name: str, value: str, params: Params) -> str:
    """The `sf` / `key` forms of a field (RFC 9421 sections 2.1.1 and 2.1.2)."""
    keys = {k for k, _ in params}
    if keys - {"sf", "key"}:
        raise _fail(f"unsupported parameters on component {name!r}")
    opts = dict(params)
    if "sf" in opts and opts["sf"] is not True:
        raise _fail("the sf parameter must be a bare Boolean")
    key = opts.get("key")
    tltype = "dictionary" if key is not None else _SF_TYPES.get(name)
    if tltype is None:
        raise _fail(f"the Structured Field type of {name!r} is unknown")
    try:
        parsed: Any = http_sf.parse(value.encode("ascii"), tltype=tltype)
    except (UnicodeEncodeError, ValueError) as exc:
        raise _fail(f"{name} is not a valid Structured Field") from exc
    if key is None:
        return http_sf.ser(parsed)
    if not isinstance(key, str) or key not in parsed:
        raise _fail(f"{name} has no member {key!r}")
    return ser_item_or_inner_list(parsed[key])


def _identifier(name: str, params: Params) -> str:
    if params:
        return ser_item((name, dict(params)))  # type: ignore[arg-type]
    return f'"{name}"'


# How each covered component's line is made, worked out once per list of components (an
# agent covers the same ones on every request): (kind, name, line prefix).  Kinds: "m"
# @method, "u" a URL-derived component, "f" a plain field, "p" a component with parameters
# (the general code below), "e" an error raised when the line is reached, in order.
class _Plan:
    """The steps of a list of components.  Compared and hashed by identity (one object per
    list while it is in ``_PLANS``), so a template key hashes in constant time."""

    __slots__ = ("steps",)

    def __init__(self, steps: tuple[tuple[str, str, str], ...]) -> None:
        self.steps = steps


_PLANS: dict[tuple[tuple[str, ...], tuple[Params, ...]], _Plan] = {}
_PLANS_MAX = 256


def _plan(components: tuple[str, ...], component_params: tuple[Params, ...]) -> _Plan:
    key = (components, component_params)
    plan = _PLANS.get(key)
    if plan is not None:
        return plan
    steps: list[tuple[str, str, str]] = []
    for name, params in zip(components, component_params, strict=True):
        if name.startswith("@"):
            if name != "@method" and name not in _DERIVED:
                steps.append(("e", name, f"unsupported derived component {name!r}"))
            elif params:
                steps.append(
                    ("e", name, f"parameters on derived component {name!r} are not supported")
                )
            else:
                steps.append(("m" if name == "@method" else "u", name, f'"{name}": '))
        elif name != name.lower() or '"' in name or "\\" in name:
            steps.append(("e", name, f"invalid field component {name!r}"))
        else:
            steps.append(("p" if params else "f", name, f'"{name}": '))
    plan = _Plan(tuple(steps))
    if len(_PLANS) >= _PLANS_MAX:
        _PLANS.clear()
    _PLANS[key] = plan
    return plan


# The base of a request in the common form, worked out once per (components, method, URL):
# the text between the covered fields' values, every derived component already in it (and
# checked for line breaks), and the names of the fields, in order.  A plan with an error or
# with component parameters has no template (the general code below decides).  Only what the
# method and URL determine is kept, never a field value, a signature or a base; bounded
# (entries, and URLs of at most 2048 characters), emptied when full whatever clients send.
_Template = tuple[tuple[str, ...], tuple[str, ...]]
_TEMPLATES: dict[tuple[_Plan, str, str], _Template | None] = {}
_TEMPLATES_MAX = 512
_TEMPLATE_URL_MAX = 2048


def _template(plan: _Plan, method: str, url: str) -> _Template | None:
    key = (plan, method, url)
    try:
        return _TEMPLATES[key]
    except KeyError:
        pass
    texts: list[str] = []
    names: list[str] = []
    text = ""
    template: _Template | None = None
    try:
        for kind, name, prefix in plan.steps:
            if kind == "u":
                text += prefix + _url_component(name, url) + "\n"
            elif kind == "m" and "\n" not in method and "\r" not in method:
                text += prefix + method + "\n"
            elif kind == "f":
                texts.append(text + prefix)
                names.append(name)
                text = "\n"
            else:  # parameters, an error, a method with a line break: the general code
                raise LookupError
    except (LookupError, SignatureFailure):
        pass  # a failure is not kept: the general code raises it, in order, every time
    else:
        texts.append(text + '"@signature-params": ')
        template = (tuple(texts), tuple(names))
    if len(url) <= _TEMPLATE_URL_MAX:  # a long URL is worked out every time, never kept
        if len(_TEMPLATES) >= _TEMPLATES_MAX:
            _TEMPLATES.clear()
        _TEMPLATES[key] = template
    return template


def signature_base(request: HttpRequest, parsed: ParsedSignature) -> bytes:
    """The RFC 9421 section 2.5 signature base, as bytes."""
    plan = _plan(parsed.components, parsed.component_params)
    return _base(request, plan, parsed.component_params, parsed.signature_params)


def _base(
    request: HttpRequest, plan: _Plan, component_params: tuple[Params, ...], signature_params: str
) -> bytes:
    method, url = request.method, request.url
    template = _TEMPLATES.get((plan, method, url))
    if template is None:
        template = _template(plan, method, url)
    if template is not None:
        texts, names = template
        pieces = [texts[0]]
        fields = request.combined_headers()
        for name, text in zip(names, texts[1:]):  # noqa: B905 - one text more than names
            value = fields.get(name)
            if value is None:
                raise _fail(f"covered field {name!r} is absent")
            if "\n" in value or "\r" in value:
                raise _fail(f"component {name!r} contains a line break")
            pieces.append(value)
            pieces.append(text)
        pieces.append(signature_params)
        try:
            return "".join(pieces).encode("ascii")
        except UnicodeEncodeError as exc:
            raise _fail("signature base is not ASCII") from exc
    return _general_base(request, component_params, signature_params, plan)


def _general_base(
    request: HttpRequest, component_params: tuple[Params, ...], signature_params: str, plan: _Plan
) -> bytes:
    lines: list[str] = []
    # The plan has one step per component (zip(strict=True) built it).
    for (kind, name, prefix), params in zip(plan.steps, component_params):  # noqa: B905
        if kind == "u":
            lines.append(prefix + _url_component(name, request.url))
            continue
        if kind == "m":
            value = request.method
        elif kind == "e":
            raise _fail(prefix)
        else:
            value_or_none = request.header(name)
            if value_or_none is None:
                raise _fail(f"covered field {name!r} is absent")
            if kind == "p":
                value = _structured_value(name, value_or_none, params)
                prefix = f"{_identifier(name, params)}: "
            else:
                value = value_or_none
        if "\n" in value or "\r" in value:
            raise _fail(f"component {name!r} contains a line break")
        lines.append(prefix + value)
    lines.append(f'"@signature-params": {signature_params}')
    try:
        return "\n".join(lines).encode("ascii")
    except UnicodeEncodeError as exc:
        raise _fail("signature base is not ASCII") from exc


def sign_request(
    request: HttpRequest,
    signer: Signer,
    *,
    label: str = "sig",
    components: Sequence[str] = AAUTH_COMPONENTS,
    created: int,
    expires: int | None = None,
    keyid: str | None = None,
    digest_alg: str = "sha-256",
) -> list[tuple[str, str]]:
    """The header lines to add to ``request`` so it carries a signature by ``signer``.

    Never emits the ``alg`` parameter: AAuth takes the algorithm from the key.
    """
    try:
        sf_key(label)
    except FieldError as exc:
        raise ValueError(str(exc)) from exc
    if len(set(components)) != len(components):
        raise ValueError("a component is listed twice")
    added: list[tuple[str, str]] = []
    target = request
    if "content-digest" in components and request.header("Content-Digest") is None:
        added.append(("Content-Digest", content_digest(request.body, digest_alg)))
        target = HttpRequest(request.method, request.url, [*request.headers, *added], request.body)

    sig_params: dict[str, object] = {"created": created}
    if expires is not None:
        sig_params["expires"] = expires
    if keyid is not None:
        sig_params["keyid"] = keyid
    serialized = ser_innerlist(([(c, {}) for c in components], sig_params))  # type: ignore[arg-type]
    draft = ParsedSignature(
        label=label,
        components=tuple(components),
        component_params=tuple(() for _ in components),
        created=created,
        expires=expires,
        keyid=keyid,
        alg=None,
        signature_params=serialized,
        signature=b"",
    )
    signature = signer.sign(signature_base(target, draft))
    added.append(("Signature-Input", f"{label}={serialized}"))
    added.append(("Signature", f"{label}=:{base64.b64encode(signature).decode('ascii')}:"))
    return added


def verify_signature(request: HttpRequest, parsed: ParsedSignature, key: Verifier) -> None:
    """Verify ``parsed`` over ``request`` with ``key``; a covered digest must match the body."""
    base = signature_base(request, parsed)
    _verify_base(request, parsed.components, parsed.signature, base, key)


def verify_signature_parts(
    request: HttpRequest, signature_input: SignatureInput, signature: bytes, key: Verifier
) -> None:
    """:func:`verify_signature` for what :func:`signature_parts` returned."""
    base = _base(
        request,
        signature_input.plan,
        signature_input.component_params,
        signature_input.signature_params,
    )
    _verify_base(request, signature_input.components, signature, base, key)


def _verify_base(
    request: HttpRequest,
    components: tuple[str, ...],
    signature: bytes,
    base: bytes,
    key: Verifier,
) -> None:
    try:
        ok = key.verify(signature, base)
    except (ValueError, TypeError):
        ok = False
    if not ok:
        raise _fail("signature does not verify")
    if "content-digest" in components:
        verify_content_digest(request.header("content-digest"), request.body)
