"""Every shortcut on the token-endpoint path answers exactly as the general path it skips.

Each fast path here (issue 4 item 10) is checked against the code it shortcuts, on ordinary
and on hostile input: the same value, or the same exception type and message.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import http_sf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aauth_server.errors import AAuthError, SignatureFailure
from aauth_server.http import HttpRequest, compact_json_encoder, json_bytes
from aauth_server.keys.jwk import PrivateKey, b64url_encode, structurally_complete
from aauth_server.resource.identity import AgentIdentity
from aauth_server.revocation import json_body
from aauth_server.signatures import digest, message
from aauth_server.signatures.digest import content_digest, verify_content_digest
from aauth_server.signatures.message import parse_signature, sign_request
from aauth_server.tokens import jwt as jwt_module
from aauth_server.tokens.aauth import TYP_AGENT, _new_jti
from aauth_server.tokens.jwt import TokenError, decode_unverified, sign_jwt
from aauth_server.verifier import RequestVerifier, VerifierConfig
from tests.support import AP_ISSUER, World

Outcome = tuple[str, object]


def outcome(fn: Callable[[], object]) -> Outcome:
    """What a call did: its value, or its exception's type and message (and code)."""
    try:
        return ("ok", fn())
    except (AAuthError, TokenError) as exc:
        return (
            type(exc).__name__,
            (getattr(exc, "error", None), getattr(exc, "code", None), str(exc)),
        )
    except Exception as exc:  # the reference raised something else: it must match too
        return (type(exc).__name__, str(exc))


# -- Content-Digest: the exact canonical sha-256 string skips the Structured Field parse --------

BODY = b'{"resource_token":"a.b.c","presented_token":"d.e.f"}'
CANONICAL = content_digest(BODY)
B64 = CANONICAL[len("sha-256=:") : -1]
SHA512 = content_digest(BODY, "sha-512")
DIGEST_VALUES = [
    CANONICAL,
    CANONICAL + " ",
    " " + CANONICAL,
    CANONICAL + ";p=1",
    CANONICAL + ", " + CANONICAL,  # a duplicate member
    CANONICAL + ", " + SHA512,
    SHA512,
    "SHA-256=:" + B64 + ":",
    "sha-256=:" + B64.rstrip("=") + ":",  # unpadded
    "sha-256=:" + B64.replace("+", "-").replace("/", "_") + ":",  # base64url alphabet
    "sha-256=:" + B64[:-2] + "A=:",  # another digest
    "sha-256=" + B64,
    "sha-256=:" + B64,
    "sha-256=:" + B64 + ":x",
    "md5=:" + B64 + ":",
    "",
    "sha-256=:\u00e9:",
    content_digest(b"another body"),
]


@pytest.mark.parametrize("value", DIGEST_VALUES)
def test_content_digest_fast_path_answers_as_the_full_parse(value: str) -> None:
    fast = outcome(lambda: verify_content_digest(value, BODY))
    assert fast == outcome(lambda: digest._verify_parsed(value, BODY))


@given(st.binary(max_size=64), st.integers(0, 60), st.sampled_from(["", " ", ":", ";", "=", ","]))
def test_content_digest_fast_path_on_edited_values(body: bytes, at: int, edit: str) -> None:
    value = content_digest(body)
    value = value[:at] + edit + value[at:]
    assert outcome(lambda: verify_content_digest(value, body)) == outcome(
        lambda: digest._verify_parsed(value, body)
    )


# -- JSON members of a token: one scan when the text is exactly one object ------------------------


def reference_json_object(data: bytes, what: str) -> dict[str, Any]:
    """The decoder call the fast path shortcuts (the code before it existed)."""
    try:
        value = jwt_module._DECODER.decode(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise TokenError("invalid_jwt", f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise TokenError("invalid_jwt", f"{what} is not a JSON object")
    return value


JSON_TEXTS = [
    b'{"a":1}',
    b'{"a":{"b":[1,2,{"c":null}]},"d":"\\u00e9"}',
    b'{"a":1} ',
    b' {"a":1}',
    b'{"a":1}\n',
    b'{"a":1}x',
    b'{"a":1}{"b":2}',
    b'{"a":1,"a":2}',
    b'{"a":{"b":1,"b":1}}',
    b'{"a":NaN}',
    b'{"a":Infinity}',
    b'{"a":-Infinity}',
    b'{"a":1e999}',
    b'{"a":',
    b"{",
    b"{}",
    b"[1]",
    b'"{"',
    b"",
    b'{"a":"\xff"}',
    b'{"a":"\\ud800"}',
    b'{"a":"\x01"}',
    b"{" * 100_000,
    b'{"a":' * 3000 + b"1" + b"}" * 3000,
]


@pytest.mark.parametrize("data", JSON_TEXTS, ids=lambda d: repr(d[:24]))
def test_json_object_fast_path_matches_the_decoder(data: bytes) -> None:
    fast = outcome(lambda: jwt_module._json_object(data, "payload"))
    assert fast == outcome(lambda: reference_json_object(data, "payload"))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(
    st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=5),
    st.sampled_from(["", " ", "x", "}", ","]),
)
def test_json_object_fast_path_on_generated_objects(obj: dict[str, Any], tail: str) -> None:
    data = (json.dumps(obj, ensure_ascii=False) + tail).encode("utf-8")
    assert outcome(lambda: jwt_module._json_object(data, "h")) == outcome(
        lambda: reference_json_object(data, "h")
    )


# -- token headers: parsed once per distinct segment --------------------------------------------

KEY = PrivateKey.generate(kid="k1")


def token(header: Mapping[str, object], payload: Mapping[str, object] | None = None) -> str:
    return sign_jwt(header, payload or {"iss": "https://ps.example"}, KEY)


def test_a_repeated_header_is_parsed_to_equal_independent_copies() -> None:
    raw = token({"alg": "Ed25519", "typ": "aa-person+jwt", "kid": "k1"})
    first = decode_unverified(raw)
    assert first.header == {"alg": "Ed25519", "typ": "aa-person+jwt", "kid": "k1"}
    first.header["typ"] = "changed"  # type: ignore[index]
    second = decode_unverified(raw)
    assert second.header == {"alg": "Ed25519", "typ": "aa-person+jwt", "kid": "k1"}
    assert second.header is not decode_unverified(raw).header


def test_refused_headers_stay_refused_every_time() -> None:
    for header in ({"alg": "Ed25519", "crit": ["x"]}, {"alg": "Ed25519", "b64": False}):
        raw = token(header)
        for _ in range(2):
            with pytest.raises(TokenError, match="is not supported"):
                decode_unverified(raw)
    segment = b64url_encode(b'{"alg":"Ed25519","alg":"Ed25519"}')
    for _ in range(2):
        with pytest.raises(TokenError, match="duplicate"):
            decode_unverified(f"{segment}.e30.AAAA")


def test_headers_with_nested_members_are_not_shared() -> None:
    jwk = dict(KEY.public.jwk)
    raw = token({"alg": "Ed25519", "typ": "jkt-s256+jwt", "jwk": jwk})
    first = decode_unverified(raw)
    first.header["jwk"]["x"] = "changed"  # type: ignore[index]
    assert decode_unverified(raw).header["jwk"] == jwk


def test_the_header_cache_stays_bounded() -> None:
    headers = jwt_module._HEADERS
    for n in range(jwt_module._HEADERS_MAX + 50):
        decode_unverified(token({"alg": "Ed25519", "typ": "aa-person+jwt", "kid": f"k{n}"}))
        assert len(headers) <= jwt_module._HEADERS_MAX
    raw = token({"alg": "Ed25519", "typ": "aa-person+jwt", "kid": "last"})
    assert decode_unverified(raw).header["kid"] == "last"


def test_a_header_segment_is_checked_as_strictly_on_a_hit() -> None:
    raw = token({"alg": "Ed25519", "typ": "aa-person+jwt", "kid": "k1"})
    decode_unverified(raw)
    header, payload, signature = raw.split(".")
    for bad in (header + "=", header.replace("e", "+", 1), header[:-1] + "\u00e9"):
        with pytest.raises(TokenError):
            decode_unverified(f"{bad}.{payload}.{signature}")


# -- JSON encoding with one prebuilt encoder ----------------------------------------------------

ENCODER_OPTIONS = [(True, False), (False, True)]  # (ensure_ascii, allow_nan)


@pytest.mark.parametrize("options", ENCODER_OPTIONS)
@settings(max_examples=300)
@given(
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
        ),
        max_leaves=16,
    )
)
def test_compact_encoder_matches_json_encoder(options: tuple[bool, bool], value: object) -> None:
    ascii_only, allow_nan = options
    reference = json.JSONEncoder(
        separators=(",", ":"), ensure_ascii=ascii_only, allow_nan=allow_nan
    )
    encode = compact_json_encoder(ensure_ascii=ascii_only, allow_nan=allow_nan)
    assert outcome(lambda: encode(value)) == outcome(lambda: reference.encode(value))


@pytest.mark.parametrize("options", ENCODER_OPTIONS)
def test_compact_encoder_refuses_what_json_encoder_refuses(options: tuple[bool, bool]) -> None:
    ascii_only, allow_nan = options
    encode = compact_json_encoder(ensure_ascii=ascii_only, allow_nan=allow_nan)
    reference = json.JSONEncoder(
        separators=(",", ":"), ensure_ascii=ascii_only, allow_nan=allow_nan
    )
    cycle: dict[str, object] = {}
    cycle["self"] = cycle
    looped: list[object] = []
    looped.append({"a": looped})
    deep: object = 1
    for _ in range(100_000):
        deep = [deep]
    for value in (cycle, looped, deep, {"a": b"bytes"}, {"a": {1, 2}}, {(1, 2): 1}, math.nan):
        assert outcome(lambda: encode(value)) == outcome(lambda: reference.encode(value))
    # The encoder stays usable after each failure.
    assert encode({"a": [1, "é"]}) == reference.encode({"a": [1, "é"]})


def test_json_bytes_and_token_payloads_are_unchanged() -> None:
    payload = {"auth_token": "a.b.c", "expires_in": 3600, "note": "é\u2028"}
    assert json_bytes(payload) == json.dumps(
        payload, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")
    raw = sign_jwt({"alg": "Ed25519"}, {"sub": "é", "n": 1.5}, KEY)
    assert raw.split(".")[1] == b64url_encode(b'{"sub":"\\u00e9","n":1.5}')
    with pytest.raises(ValueError, match="not a JSON object"):
        sign_jwt({"alg": "Ed25519"}, {"n": math.inf}, KEY)


# -- request bodies: UTF-8 objects skip the encoding detection ----------------------------------


def reference_json_body(body: bytes) -> object:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return "invalid_request: the body is not JSON"
    return value if isinstance(value, dict) else "invalid_request: the body is not a JSON object"


def fast_json_body(body: bytes) -> object:
    try:
        return dict(json_body(HttpRequest("POST", "https://ps.example/token", [], body)))
    except AAuthError as exc:
        return f"{exc.error}: {exc.detail}"


BODIES = [
    b'{"a":1}',
    b'{"a":"\\ud800"}',  # a lone surrogate escape
    b'{"a":"\xed\xa0\x80"}',  # an encoded lone surrogate: surrogatepass lets it through
    b'{"a":"\xff"}',
    b'{"a":1} trailing',
    b'{"a":1,"a":2}',
    b"{",
    b"{\x00",
    '{"a":1}'.encode("utf-16-le"),
    '{"a":1}'.encode("utf-16-be"),
    '{"a":1}'.encode("utf-32-le"),
    '{"a":1}'.encode("utf-8-sig"),
    '{"a":1}'.encode("utf-16"),
    b"[1]",
    b" {}",
    b"",
    b"{" * 100_000,
]


@pytest.mark.parametrize("body", BODIES, ids=lambda b: repr(b[:16]))
def test_json_body_answers_as_json_loads(body: bytes) -> None:
    assert fast_json_body(body) == reference_json_body(body)


@given(st.binary(max_size=40))
def test_json_body_on_arbitrary_bytes(tail: bytes) -> None:
    body = b"{" + tail
    assert fast_json_body(body) == reference_json_body(body)


# -- small helpers --------------------------------------------------------------------------------


def test_header_lookup_is_case_insensitive_either_way() -> None:
    request = HttpRequest(
        "GET",
        "https://ps.example/",
        [
            ("Signature-Input", "a"),
            ("signature-input", "b"),
            ("X-Empty", ""),
            ("Content-Type", "t"),
        ],
    )
    for name in ("signature-input", "Signature-Input", "SIGNATURE-INPUT"):
        assert request.header(name) == "a, b"
    assert request.header("x-empty") == ""
    assert request.header("X-EMPTY") == ""
    assert request.header("content-type") == "t"
    assert request.header("missing") is None
    assert request.header("Missing") is None


@given(st.binary(max_size=80))
def test_b64url_encode_is_unpadded_urlsafe_base64(data: bytes) -> None:
    assert b64url_encode(data) == base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def test_new_jti_is_16_random_bytes_in_base64url() -> None:
    seen = {_new_jti() for _ in range(200)}
    assert len(seen) == 200
    for jti in seen:
        assert len(jti) == 22 and len(base64.urlsafe_b64decode(jti + "==")) == 16
        assert set(jti) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class _Jwk(dict[str, object]):
    pass


@pytest.mark.parametrize(
    ("jwk", "complete"),
    [
        ({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}, True),
        (MappingProxyType({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}), True),
        (_Jwk(kty="EC", crv="P-256", x="AA", y="BB"), True),
        ({"kty": "EC", "crv": "P-256", "x": "AA"}, False),
        ({"kty": "OKP", "crv": "Ed25519", "x": 1}, False),
        ({"kty": ["OKP"], "crv": "Ed25519", "x": "AAAA"}, False),
        ({"kty": {"a": 1}}, False),
        ({"kty": "oct", "k": "AAAA"}, False),
        ([("kty", "OKP")], False),
        ("OKP", False),
        (None, False),
    ],
)
def test_structurally_complete(jwk: object, complete: bool) -> None:
    assert structurally_complete(jwk) is complete


# -- Signature-Input: the fast form yields what the full Structured Field parse yields -------------


COMPONENT = st.sampled_from(
    ["@method", "@authority", "@path", "signature-key", "content-digest", "x.y_z-1", "@",
     "A", "a b", 'a"b', ""]
)  # fmt: skip
PARAMS = st.lists(
    st.sampled_from(
        [";created=1", ";created=01", ";created=-1", ";expires=2", ";keyid=\"k 1\"",
         ";alg=\"ed25519\"", ";nonce=\"n\"", ";tag=\"t\"", ";keyid=k", ";created=?1",
         ";other=1", ";created=1;created=2"]
    ),
    max_size=3,
)  # fmt: skip
SEPARATOR = st.sampled_from([" ", " ", " ", "  ", "\t", ""])


@settings(max_examples=400)
@given(
    st.lists(COMPONENT, max_size=6),
    SEPARATOR,
    PARAMS,
    st.sampled_from(["sig", "sig2", "Sig"]),
    st.sampled_from(["sig", "sig2"]),
    st.sampled_from([bytes(64), b"\xfb" * 47, b"x"]),
    st.sampled_from([str, lambda s: s.rstrip("="), lambda s: s.replace("/", "_"), lambda s: ""]),
    st.sampled_from(["", ";p", ", other=:AAAA:", " "]),
)
def test_fast_signature_parse_equals_the_full_parse(
    components: list[str],
    sep: str,
    params: list[str],
    label: str,
    sig_label: str,
    signature: bytes,
    spell: Callable[[str], str],
    sig_tail: str,
) -> None:
    inner = sep.join(f'"{c}"' for c in components)
    encoded = spell(base64.b64encode(signature).decode())
    request = HttpRequest(
        "POST",
        "https://ps.example/token",
        [
            ("Signature-Input", f"{label}=({inner}){''.join(params)}"),
            ("Signature", f"{sig_label}=:{encoded}:{sig_tail}"),
        ],
    )
    fast = outcome(lambda: parse_signature(request))
    real_fast = message._parse_fast
    try:
        message._parse_fast = lambda *args: None
        full = outcome(lambda: parse_signature(request))
    finally:
        message._parse_fast = real_fast
    assert fast == full


def test_fast_digest_path_is_taken_for_what_sign_request_emits() -> None:
    request = HttpRequest(
        "POST", "https://ps.example/token", [("Content-Type", "a/b")], os.urandom(40)
    )
    lines = dict(
        sign_request(request, PrivateKey.generate(), components=("content-digest",), created=1)
    )
    assert lines["Content-Digest"] == content_digest(request.body)
    assert (
        lines["Content-Digest"]
        == "sha-256=:" + base64.b64encode(hashlib.sha256(request.body).digest()).decode() + ":"
    )
    with pytest.raises(SignatureFailure, match="does not match"):
        verify_content_digest(lines["Content-Digest"], request.body + b" ")


# -- the verified-token cache: a hit resolves to the first verification, checks still run --------


class _Revocations:
    def __init__(self) -> None:
        self.revoked: set[tuple[str, str]] = set()
        self.lookups = 0

    def is_revoked(self, iss: str, jti: str) -> bool:
        self.lookups += 1
        return (iss, jti) in self.revoked

    async def ais_revoked(self, iss: str, jti: str) -> bool:
        return self.is_revoked(iss, jti)

    def first_use(self, key: str, ttl: float) -> bool:
        return True

    async def afirst_use(self, key: str, ttl: float) -> bool:
        return True


def test_a_cached_agent_token_still_has_its_request_checked_and_its_revocation_looked_up() -> None:
    world = World()
    state = _Revocations()
    verifier = RequestVerifier(
        world.discovery(), VerifierConfig(revocable_types=(TYP_AGENT,)), state=state
    )
    first = verifier.verify(world.signed())
    second = verifier.verify(world.signed(path="/other"))
    assert len(verifier._tokens) == 1 and state.lookups == 2
    for name in ("key", "typ", "token", "claims", "issuer", "scheme", "label"):
        assert getattr(second, name) == getattr(first, name)
    with pytest.raises(SignatureFailure, match="does not verify"):
        verifier.verify(world.signed(key=PrivateKey.generate()))
    state.revoked.add((AP_ISSUER, str(first.claims["jti"])))
    with pytest.raises(SignatureFailure) as revoked:
        verifier.verify(world.signed())
    assert revoked.value.error == "revoked_jwt"


# -- Signature: the unpadded base64url dialect, fast path and full parser alike -----------------

URLSAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _spellings() -> dict[str, Callable[[bytes], str]]:
    def url(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode()

    def std(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return {
        "standard-padded": std,
        "standard-unpadded": lambda r: std(r).rstrip("="),
        "urlsafe-unpadded": lambda r: url(r).rstrip("="),
        "urlsafe-padded": url,
        "urlsafe-one-pad": lambda r: url(r).rstrip("=") + "=",
        "mixed-alphabets": lambda r: "+-" + url(r).rstrip("="),
        "mixed-alphabets-slash": lambda r: url(r).rstrip("=") + "/_",
        "urlsafe-bad-length": lambda r: url(r).rstrip("=") + "-",
        "urlsafe-inner-pad": lambda r: "-=" + url(r).rstrip("="),
        "empty": lambda r: "",
    }


SPELLINGS = _spellings()


def _full_only(request: HttpRequest, accept: bool) -> Outcome:
    real_fast = message._parse_fast
    try:
        message._parse_fast = lambda *args: None
        return outcome(lambda: parse_signature(request, accept_base64url=accept))
    finally:
        message._parse_fast = real_fast


def _signature_request(signature_value: str) -> HttpRequest:
    return HttpRequest(
        "GET",
        "https://resource.example/whoami",
        [
            ("Signature-Input", 'sig=("@method" "@authority" "@path" "signature-key");created=1'),
            ("Signature", signature_value),
        ],
    )


@settings(max_examples=500)
@given(
    st.binary(min_size=0, max_size=80),
    st.sampled_from(sorted(SPELLINGS)),
    st.booleans(),
    st.sampled_from(["sig", "sig2"]),
    st.sampled_from(["", ";p", ";p=:a-b:", ", other=:AAAA:", ", other=:a-b:", " ", "x"]),
)
def test_dialect_fast_parse_equals_the_full_parse(
    raw: bytes, spelling: str, accept: bool, label: str, tail: str
) -> None:
    request = _signature_request(f"{label}=:{SPELLINGS[spelling](raw)}:{tail}")
    fast = outcome(lambda: parse_signature(request, accept_base64url=accept))
    assert fast == _full_only(request, accept)
    spelled = SPELLINGS[spelling](raw)
    if set(spelled) & set("-_") and (set(spelled) & set("+/=") or not accept):
        assert fast[0] != "ok"  # url-safe symbols only in the exact unpadded shape, when on
    faithful = ("standard-padded", "standard-unpadded") + (("urlsafe-unpadded",) if accept else ())
    if label == "sig" and raw and spelling in faithful and tail in ("", ";p", ", other=:AAAA:"):
        # Decodes to the bytes the signer encoded.
        assert fast[0] == "ok" and isinstance(fast[1], message.ParsedSignature)
        assert fast[1].signature == raw


@given(st.binary(min_size=1, max_size=80))
def test_dialect_is_read_by_the_fast_path_and_refused_when_off(raw: bytes) -> None:
    encoded = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    request = _signature_request(f"sig=:{encoded}:")
    input_value = request.header("signature-input")
    assert input_value is not None
    # The fast path itself answers (a dialect request costs no Structured Field parse).
    fast = message._parse_fast(input_value, f"sig=:{encoded}:", None, True)
    assert fast is not None and fast.signature == raw
    assert parse_signature(request).signature == raw
    if "-" in encoded or "_" in encoded:
        assert message._parse_fast(input_value, f"sig=:{encoded}:", None, False) is None
        with pytest.raises(SignatureFailure, match="not a valid Structured Field"):
            parse_signature(request, accept_base64url=False)
    else:  # plain unpadded base64: a valid Byte Sequence whatever the setting
        assert parse_signature(request, accept_base64url=False).signature == raw


def _sf_member_value() -> st.SearchStrategy[tuple[str, object]]:
    """(the dialect's spelling, the value the strict parser gives for the standard spelling)"""
    text = st.text(alphabet=' !#$%&()*+,-./:;<=>?@[]^_`{|}~"\\azAZ09', max_size=12)
    token = st.from_regex(r"[a-z][a-z0-9:/_\-.]{0,8}", fullmatch=True)
    raw = st.binary(max_size=24)
    return st.one_of(
        raw.map(lambda b: (":" + base64.urlsafe_b64encode(b).decode().rstrip("=") + ":", b)),
        raw.map(lambda b: (":" + base64.b64encode(b).decode() + ":", b)),
        text.map(lambda s: (http_sf.ser(s), s)),
        token.map(lambda t: (t, http_sf.Token(t))),
        st.integers(0, 999).map(lambda n: (str(n), n)),
    )


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[a-z][a-z0-9]{0,3}", fullmatch=True),
            _sf_member_value(),
            st.lists(
                st.tuples(st.from_regex(r"[a-z][a-z0-9]{0,3}", fullmatch=True), _sf_member_value()),
                max_size=2,
            ),
            st.booleans(),
        ),
        min_size=1,
        max_size=4,
        unique_by=lambda m: m[0],
    )
)
def test_dialect_rewrite_touches_only_byte_sequences(
    members: list[tuple[str, tuple[str, object], list[tuple[str, tuple[str, object]]], bool]],
) -> None:
    parts: list[str] = []
    expected: dict[str, object] = {}
    for key, (spelled, value), params, inner in members:
        unique = dict(params)
        text = "".join(f";{name}={p[0]}" for name, p in unique.items())
        wanted = {name: p[1] for name, p in unique.items()}
        if inner:  # the same item inside an Inner List
            parts.append(f"{key}=({spelled} {spelled}){text}")
            expected[key] = ([(value, {}), (value, {})], wanted)
        else:
            parts.append(f"{key}={spelled}{text}")
            expected[key] = (value, wanted)
    value = ", ".join(parts)
    assert message._parse_signature_dict(value, True) == expected
    if message._urlsafe_byte_sequences(value) != value:
        with pytest.raises(SignatureFailure, match="not a valid Structured Field"):
            message._parse_signature_dict(value, False)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # Inside a String nothing is rewritten, and the String stays what it was.
        ('sig=:AAAA:;note="=:a-b:"', {"sig": (b"\x00\x00\x00", {"note": "=:a-b:"})}),
        ('sig=:a-b_:;note="x\\"=:c-d:"', {"sig": (b"k\xe6\xff", {"note": 'x"=:c-d:'})}),
        # A Token may hold ":" but never starts with one: not a Byte Sequence.
        ("sig=:a-b_:, t=x:a-b:", {"sig": (b"k\xe6\xff", {}), "t": (http_sf.Token("x:a-b:"), {})}),
        ("sig=(:a-b_: :AAAA:)", {"sig": ([(b"k\xe6\xff", {}), (b"\x00\x00\x00", {})], {})}),
        ('sig="unterminated =:a-b:', None),
        ("sig=:a-b+:", None),  # two alphabets: nobody's encoder
        ("sig=:a-b_=:", None),  # padded url-safe: not the dialect
        ("sig=:a-b_", None),
        ("sig= :a-b_:", None),
        ("sig=:" + "-" * 16_000 + ":", {"sig": (b"\xfb\xef\xbe" * 4000, {})}),
        ('sig="' + '\\"' * 8_000, None),
        ("sig=" + "=:-" * 5_000, None),
    ],
    ids=lambda v: repr(v)[:40],
)
def test_dialect_rewrite_on_hostile_fields(value: str, expected: object) -> None:
    if expected is None:
        with pytest.raises(SignatureFailure, match="not a valid Structured Field"):
            message._parse_signature_dict(value, True)
    else:
        assert message._parse_signature_dict(value, True) == expected


def test_the_dialect_is_never_emitted() -> None:
    key = PrivateKey.generate()
    for n in range(64):
        request = HttpRequest("GET", f"https://resource.example/{n}", [("Signature-Key", "k")])
        lines = dict(sign_request(request, key, created=n))
        member = lines["Signature"].removeprefix("sig=:").removesuffix(":")
        assert len(member) % 4 == 0 and member.endswith("==")
        assert "-" not in member and "_" not in member
        assert base64.b64decode(member, validate=True) and http_sf.parse(
            lines["Signature"].encode(), tltype="dictionary"
        )


# -- the verifier's fast prelude and cached-token verification ----------------------------------
#
# RequestVerifier.fast_prelude reads steps 1-4 of digest 2.6 (fields, coverage, freshness,
# scheme) for requests in the common form, and verify_cached finishes a request whose token
# is already verified without the generator machinery; the guard answers agent-token
# endpoints from them.  Switched off, everything takes the full steps.  Every row of the
# hostile-request table, and edited variants of a request whose token is cached, must get
# the same answer (status, headers, body, or the same identity) both ways, first time and
# again (when the parse caches answer).


def _guard_outcome(guard: Any, request: HttpRequest, protection: Any = None) -> object:
    from aauth_server.resource.guard import DEFAULT_PROTECTION

    try:
        result = guard.check(request, protection or DEFAULT_PROTECTION)
    except AAuthError as exc:
        response = exc.to_response()
        return (response.status, response.headers, response.body)
    return result


def _without_fast_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RequestVerifier, "fast_prelude", lambda self, request: None)
    monkeypatch.setattr(RequestVerifier, "verify_fast", lambda self, request: None)


def _hostile_cases() -> list[Any]:
    from tests.core.test_hostile_requests import CASES

    return CASES


@pytest.mark.parametrize("case", _hostile_cases(), ids=lambda c: c.id)
def test_hostile_table_answers_alike_with_and_without_fast_paths(
    case: Any, hostile_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aauth_server.resource import ResourceGuard
    from tests.hostile import hostile_world

    world = hostile_world(hostile_server)
    request = case.build(world)
    fast_guard = ResourceGuard(case.config(world))
    fast = [_guard_outcome(fast_guard, request) for _ in range(2)]
    with monkeypatch.context() as patched:
        _without_fast_paths(patched)
        full_guard = ResourceGuard(case.config(world))
        full = [_guard_outcome(full_guard, request) for _ in range(2)]
    assert fast == full


def _edits() -> list[tuple[str, Callable[[World, HttpRequest], HttpRequest]]]:
    from tests.support import with_header

    def edit(
        name: str, change: Callable[[str], str]
    ) -> Callable[[World, HttpRequest], HttpRequest]:
        def apply(w: World, r: HttpRequest) -> HttpRequest:
            value = r.header(name)
            assert value is not None
            return with_header(r, name, change(value))

        return apply

    def resigned(**kw: Any) -> Callable[[World, HttpRequest], HttpRequest]:
        return lambda w, r: w.signed(**kw)

    return [
        ("unchanged", lambda w, r: r),
        ("another-path", lambda w, r: replace(r, url=r.url + "x")),
        ("another-method", lambda w, r: replace(r, method="POST")),
        ("another-host", lambda w, r: replace(r, url=r.url.replace("resource", "other"))),
        ("stale", resigned(created=w_now() - 61)),
        ("future", resigned(created=w_now() + 61)),
        ("edge-of-window", resigned(created=w_now() - 60)),
        ("other-label", resigned(label="agent")),
        (
            "extra-component",
            resigned(
                headers=[("X-A", "1")],
                components=["@method", "@authority", "@path", "signature-key", "x-a"],
            ),
        ),
        ("missing-component", resigned(components=["@method", "@authority", "@path"])),
        ("body", resigned(method="POST", body=b'{"a":1}')),
        ("aauth-authorization", lambda w, r: with_header(r, "Authorization", "AAuth abc")),
        ("bearer-authorization", lambda w, r: with_header(r, "Authorization", "Bearer abc")),
        ("expires-passed", edit("Signature-Input", lambda v: v + f";expires={w_now() - 1}")),
        ("input-space", edit("Signature-Input", lambda v: v.replace(" ", "  ", 1))),
        ("input-dup-param", edit("Signature-Input", lambda v: v + ";created=1")),
        ("input-other-label", edit("Signature-Input", lambda v: "x" + v)),
        (
            "signature-bit",
            edit("Signature", lambda v: v[:10] + ("A" if v[10] != "A" else "B") + v[11:]),
        ),
        (
            "signature-urlsafe",
            edit(
                "Signature",
                lambda v: v.replace("+", "-").replace("/", "_").rstrip(":").rstrip("=") + ":",
            ),
        ),
        ("signature-two-members", edit("Signature", lambda v: v + ", sig2=:AAAA:")),
        ("signature-empty", edit("Signature", lambda v: "sig=::")),
        ("key-other-scheme", edit("Signature-Key", lambda v: v.replace("=jwt;", "=jwks_uri;"))),
        ("key-space", edit("Signature-Key", lambda v: v.replace(";", "; "))),
        ("key-cache-flag", edit("Signature-Key", lambda v: v + ";cache")),
        ("key-bad-cache-flag", edit("Signature-Key", lambda v: v + ";cache=1")),
        ("key-truncated-token", edit("Signature-Key", lambda v: v[:-5] + '"')),
        (
            "key-other-token",
            lambda w, r: w.signed(
                token=w.memo("other", lambda: w.provider.issue(w.agent_key.public, "assistant"))
            ),
        ),
        ("huge-input", edit("Signature-Input", lambda v: v + ';nonce="' + "a" * 17000 + '"')),
    ]


_NOW = [0]


def w_now() -> int:
    return _NOW[0]


@pytest.mark.parametrize(("name", "make"), _edits(), ids=[name for name, _ in _edits()])
def test_requests_with_a_cached_token_answer_alike_with_and_without_fast_paths(
    name: str, make: Callable[[World, HttpRequest], HttpRequest], monkeypatch: pytest.MonkeyPatch
) -> None:
    from aauth_server.clock import FixedClock
    from aauth_server.resource import ResourceGuard

    world = World(clock=FixedClock(1_800_000_000))
    _NOW[0] = world.now()
    outcomes = []
    for fast in (True, False):
        with monkeypatch.context() as patched:
            if not fast:
                _without_fast_paths(patched)
            guard = ResourceGuard(world.resource_config())
            first = _guard_outcome(guard, world.signed())  # the agent token enters the cache
            request = make(world, world.signed())
            outcomes.append((first, _guard_outcome(guard, request), _guard_outcome(guard, request)))
    assert outcomes[0] == outcomes[1]
    if name == "unchanged":
        assert isinstance(outcomes[0][1], AgentIdentity)
        assert outcomes[0][1] is outcomes[0][0]  # the identity is kept per token


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["signature-input", "signature", "signature-key"]),
    st.integers(0, 2000),
    st.sampled_from(["", " ", ";", ",", '"', "=", ":", "-", "_", "+", "/", "a", "\t", "é"]),
    st.booleans(),
)
def test_edited_fields_answer_alike_with_and_without_fast_paths(
    name: str, at: int, insert: str, delete: bool
) -> None:
    from tests.support import with_header

    world = _EDIT_WORLD
    request = world.signed()
    value = request.header(name)
    assert value is not None
    at %= len(value) + 1
    edited = value[:at] + insert + value[at + (1 if delete else 0) :]
    request = with_header(request, name, edited)
    fast = [_guard_outcome(_EDIT_GUARDS[0], request) for _ in range(2)]
    original = RequestVerifier.fast_prelude, RequestVerifier.verify_fast
    try:
        RequestVerifier.fast_prelude = lambda self, request: None  # type: ignore[method-assign]
        RequestVerifier.verify_fast = lambda self, request: None  # type: ignore[method-assign]
        full = [_guard_outcome(_EDIT_GUARDS[1], request) for _ in range(2)]
    finally:
        RequestVerifier.fast_prelude, RequestVerifier.verify_fast = original  # type: ignore[method-assign]
    assert fast == full


def _edit_world() -> tuple[World, list[Any]]:
    from aauth_server.clock import FixedClock
    from aauth_server.resource import ResourceGuard

    world = World(clock=FixedClock(1_800_000_000))
    guards = [ResourceGuard(world.resource_config()) for _ in range(2)]
    for guard in guards:
        guard.check(world.signed())  # the agent token is cached in both
    return world, guards


_EDIT_WORLD, _EDIT_GUARDS = _edit_world()


def test_the_fast_paths_are_taken_for_what_agents_send() -> None:
    from aauth_server.clock import FixedClock
    from aauth_server.resource import ResourceGuard

    world = World(clock=FixedClock(1_800_000_000))
    guard = ResourceGuard(world.resource_config())
    body_verifier = RequestVerifier(
        world.discovery(), VerifierConfig(require_body_coverage=True), clock=world.clock
    )
    for verifier, request in (
        (guard.verifier, world.signed()),
        (body_verifier, world.signed("POST", body=b'{"a":1}')),
    ):
        prelude = verifier.fast_prelude(request)
        assert prelude is not None and prelude == verifier._prelude(request)
        assert verifier.verify_cached(request, prelude) is None  # the token is not cached yet
        verifier.verify(request)
        again = verifier.verify_cached(request, prelude)
        assert again is not None and again == verifier.verify(request)
    dialect = world.signed()
    raw = base64.b64decode(dialect.header("signature")[5:-1])  # type: ignore[index]
    spelled = with_signature(
        dialect, "sig=:" + base64.urlsafe_b64encode(raw).decode().rstrip("=") + ":"
    )
    assert verifier.fast_prelude(spelled) is not None


def with_signature(request: HttpRequest, value: str) -> HttpRequest:
    from tests.support import with_header

    return with_header(request, "Signature", value)


def test_the_parse_caches_stay_bounded_and_answer_alike() -> None:
    from aauth_server.signatures import signature_key

    for n in range(message._INPUTS_MAX + 10):
        value = f'sig=("@method");created={n}'
        parsed = message._parse_fast(value, "sig=:AAAA:", None)
        assert parsed is not None and parsed.created == n
        assert len(message._INPUTS) <= message._INPUTS_MAX
    for n in range(signature_key._CACHE_MAX + 10):
        value = f'sig=jwt;jwt="a.b.{n}"'
        entry = signature_key.select_signature_key(value, "sig", accept_schemes=("jwt",))
        assert entry.params["jwt"] == f"a.b.{n}"
        assert len(signature_key._SELECTED) <= signature_key._CACHE_MAX
    # A refusal is never kept: the same value is refused again, with the same error.
    for _ in range(2):
        with pytest.raises(SignatureFailure, match=r"not accepted here"):
            signature_key.select_signature_key('sig=hwk;kty="OKP"', "sig", accept_schemes=("jwt",))


def test_a_scheme_registered_later_is_validated_under_its_new_rules() -> None:
    from aauth_server.signatures import signature_key
    from aauth_server.signatures.signature_key import SCHEMES, SchemeSpec, register_scheme

    value = 'sig=custom;a="x"'
    before = SCHEMES.get("custom")
    try:
        assert signature_key.select_signature_key(value, "sig", accept_schemes=("custom",))
        register_scheme(SchemeSpec("custom", {"b": str}))
        with pytest.raises(SignatureFailure, match="needs a str 'b'"):
            signature_key.select_signature_key(value, "sig", accept_schemes=("custom",))
    finally:
        if before is None:
            SCHEMES.pop("custom", None)
        else:
            SCHEMES["custom"] = before
        signature_key._SELECTED.clear()


# -- the signature base: URL-derived components kept per URL --------------------------------------


def reference_signature_base(request: HttpRequest, parsed: message.ParsedSignature) -> bytes:
    """The signature base as built before URL-derived values were kept per URL."""
    from urllib.parse import urlsplit

    def authority(url: Any) -> str:
        netloc = url.netloc.rpartition("@")[2].lower()
        if netloc.startswith("["):
            host, _, rest = netloc.partition("]")
            host += "]"
            port = rest[1:] if rest.startswith(":") else ""
        else:
            host, _, port = netloc.partition(":")
        if not host:
            raise SignatureFailure("invalid_signature", "request URL has no host")
        if not port or port == {"https": "443", "http": "80"}.get(url.scheme.lower()):
            return host
        return f"{host}:{port}"

    def target_uri(url: Any) -> str:
        uri = request.url.partition("#")[0]
        if url.path:
            return uri
        base, mark, query = uri.partition("?")
        return f"{base}/{mark}{query}"

    def request_target(url: Any) -> str:
        has_query = "?" in request.url.partition("#")[0]
        return f"{url.path or '/'}?{url.query}" if has_query else url.path or "/"

    derived: dict[str, Callable[[Any], str]] = {
        "@method": lambda url: request.method,
        "@authority": authority,
        "@path": lambda url: url.path or "/",
        "@query": lambda url: "?" + url.query,
        "@target-uri": target_uri,
        "@scheme": lambda url: url.scheme.lower(),
        "@request-target": request_target,
    }
    lines = []
    url = None
    for name, params in zip(parsed.components, parsed.component_params, strict=True):
        if name.startswith("@"):
            derive = derived.get(name)
            if derive is None:
                raise SignatureFailure(
                    "invalid_signature", f"unsupported derived component {name!r}"
                )
            if params:
                raise SignatureFailure(
                    "invalid_signature",
                    f"parameters on derived component {name!r} are not supported",
                )
            if url is None:
                try:
                    url = urlsplit(request.url)
                except ValueError as exc:
                    raise SignatureFailure(
                        "invalid_signature", "the request URL is malformed"
                    ) from exc
            value = derive(url)
        else:
            if name != name.lower() or '"' in name or "\\" in name:
                raise SignatureFailure("invalid_signature", f"invalid field component {name!r}")
            value_or_none = request.header(name)
            if value_or_none is None:
                raise SignatureFailure("invalid_signature", f"covered field {name!r} is absent")
            value = (
                message._structured_value(name, value_or_none, params) if params else value_or_none
            )
        if "\n" in value or "\r" in value:
            raise SignatureFailure("invalid_signature", f"component {name!r} contains a line break")
        lines.append(
            f"{message._identifier(name, params)}: {value}" if params else f'"{name}": {value}'
        )
    lines.append(f'"@signature-params": {parsed.signature_params}')
    try:
        return "\n".join(lines).encode("ascii")
    except UnicodeEncodeError as exc:
        raise SignatureFailure("invalid_signature", "signature base is not ASCII") from exc


URLS = [
    "https://resource.example/whoami",
    "https://Resource.Example:443/a/b?x=1&y=2",
    "http://127.0.0.1:8000",
    "http://127.0.0.1:80/p?",
    "https://[::1]:8443/p#frag",
    "https://user@host.example/p?q#f",
    "https://host.example/p%0Aq",
    "https://host.example/p\nq",
    "https://host.example/caf\u00e9",
    "https:///nohost",
    "https://[::1/p",
    "https://host.example:99999/p",
    "/relative",
]
COMPONENT_SETS = [
    ("@method", "@authority", "@path", "signature-key"),
    ("@target-uri", "@scheme", "@request-target", "@query"),
    ("@authority", "@unknown"),
    ("x-a", "@path"),
    ("X-A",),
    ("x-missing",),
]


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("components", COMPONENT_SETS)
def test_signature_base_matches_the_reference(url: str, components: tuple[str, ...]) -> None:
    request = HttpRequest("GET", url, [("Signature-Key", 'sig=jwt;jwt="a.b.c"'), ("X-A", "v\r")])
    parsed = message.ParsedSignature(
        "sig", components, ((),) * len(components), 1, None, None, None, "()", b"x"
    )
    for _ in range(2):  # the second time from the per-URL cache
        assert outcome(lambda: message.signature_base(request, parsed)) == outcome(
            lambda: reference_signature_base(request, parsed)
        )


@settings(max_examples=300)
@given(
    st.text(alphabet="abAB09:/?#@[]%.\n\r \u00e9", max_size=30),
    st.sampled_from(COMPONENT_SETS[:2]),
)
def test_signature_base_matches_the_reference_on_odd_urls(
    tail: str, components: tuple[str, ...]
) -> None:
    request = HttpRequest("POST", "https://h.example" + tail, [("Signature-Key", "k")])
    parsed = message.ParsedSignature(
        "sig", components, ((),) * len(components), 1, None, None, None, "()", b"x"
    )
    assert outcome(lambda: message.signature_base(request, parsed)) == outcome(
        lambda: reference_signature_base(request, parsed)
    )


# -- base64url segments: one translation pass instead of three scans ----------------------------


def reference_b64url_decode(segment: bytes, what: str) -> bytes:
    """The segment decoder before '+', '/' and '=' were refused by the translation itself."""
    import binascii

    tail = len(segment) % 4
    if tail == 1 or b"+" in segment or b"/" in segment or b"=" in segment:
        raise TokenError("invalid_jwt", f"{what} is not unpadded base64url")
    std = segment.translate(bytes.maketrans(b"-_", b"+/"))
    try:
        data = binascii.a2b_base64(
            std + {2: b"==", 3: b"="}[tail] if tail else std, strict_mode=True
        )
    except binascii.Error as exc:
        raise TokenError("invalid_jwt", f"{what} is not base64url") from exc
    if tail and segment[-1] not in jwt_module._CANONICAL_LAST[tail]:
        raise TokenError("invalid_jwt", f"{what} is not canonical base64url")
    return data


@settings(max_examples=500)
@given(st.text(alphabet="AQgw09az-_+/=!. \n\u00e9", max_size=24))
def test_b64url_segment_decoding_matches_the_reference(text: str) -> None:
    segment = text.encode("utf-8")
    assert outcome(lambda: jwt_module._b64url_decode(segment, "payload")) == outcome(
        lambda: reference_b64url_decode(segment, "payload")
    )


@given(st.binary(max_size=40))
def test_b64url_segments_of_real_bytes_decode_back(data: bytes) -> None:
    segment = base64.urlsafe_b64encode(data).rstrip(b"=")
    assert jwt_module._b64url_decode(segment, "payload") == data
