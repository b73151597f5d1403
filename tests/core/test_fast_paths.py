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
from types import MappingProxyType
from typing import Any

import http_sf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aauth_server.errors import AAuthError, SignatureFailure
from aauth_server.http import HttpRequest, compact_json_encoder, json_bytes
from aauth_server.keys.jwk import PrivateKey, b64url_encode, structurally_complete
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
