"""RFC 9421 core: published vectors, our derived AAuth vectors, aauth-go, malformed input."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from aauth_server.errors import SignatureFailure
from aauth_server.http import HttpRequest
from aauth_server.signatures import (
    AAUTH_COMPONENTS,
    BODY_COMPONENTS,
    ParsedSignature,
    parse_signature,
    select_signature_key,
    sign_request,
    signature_base,
    verify_signature,
)
from tests.vectors import vectors_dir


def _load(name: str) -> Any:
    return json.loads((vectors_dir() / name).read_text(encoding="utf-8"))


def _b64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class EdSigner:
    alg = "Ed25519"

    def __init__(self, jwk: Mapping[str, str]) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(_b64u(jwk["d"]))

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)


class EdVerifier:
    alg = "Ed25519"

    def __init__(self, jwk: Mapping[str, Any]) -> None:
        self._key = Ed25519PublicKey.from_public_bytes(_b64u(jwk["x"]))

    def verify(self, signature: bytes, data: bytes) -> bool:
        try:
            self._key.verify(signature, data)
        except InvalidSignature:
            return False
        return True


class ES256Verifier:
    alg = "ES256"

    def __init__(self, jwk: Mapping[str, Any]) -> None:
        numbers = ec.EllipticCurvePublicNumbers(
            int.from_bytes(_b64u(jwk["x"]), "big"),
            int.from_bytes(_b64u(jwk["y"]), "big"),
            ec.SECP256R1(),
        )
        self._key = numbers.public_key()

    def verify(self, signature: bytes, data: bytes) -> bool:
        if len(signature) != 64:
            return False
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        try:
            self._key.verify(der, data, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True


def _verifier(jwk: Mapping[str, Any]) -> EdVerifier | ES256Verifier:
    return ES256Verifier(jwk) if jwk["kty"] == "EC" else EdVerifier(jwk)


def _request(spec: Mapping[str, Any], extra: Mapping[str, str] | None = None) -> HttpRequest:
    headers = list(spec.get("headers", {}).items()) + list((extra or {}).items())
    body = spec.get("body")
    return HttpRequest(spec["method"], spec["url"], headers, (body or "").encode("utf-8"))


def _with(request: HttpRequest, lines: Sequence[tuple[str, str]]) -> HttpRequest:
    return HttpRequest(request.method, request.url, [*request.headers, *lines], request.body)


def _code(exc: pytest.ExceptionInfo[SignatureFailure]) -> str:
    return exc.value.error


# --- RFC 9421 B.2.6 -------------------------------------------------------------------

B26 = _load("rfc9421-b26.json")


def test_b26_base_signature_and_verification() -> None:
    sig = B26["signature"]
    request = _request(B26["request"], B26["expected_headers"])
    parsed = parse_signature(request)
    assert parsed.label == "sig-b26"
    assert parsed.components == tuple(sig["covered_components"])
    assert parsed.created == sig["params"]["created"]
    assert parsed.keyid == sig["params"]["keyid"]
    assert parsed.signature_params == sig["signature_params"]
    assert signature_base(request, parsed) == sig["signature_base"].encode()
    assert parsed.signature == base64.b64decode(sig["signature_bytes_b64"])
    verify_signature(request, parsed, EdVerifier(B26["key"]["jwk_public"]))


def test_b26_sign_direction_reproduces_headers() -> None:
    sig = B26["signature"]
    lines = sign_request(
        _request(B26["request"]),
        EdSigner(B26["key"]["jwk_private"]),
        label=sig["label"],
        components=sig["covered_components"],
        created=sig["params"]["created"],
        keyid=sig["params"]["keyid"],
    )
    assert lines == list(B26["expected_headers"].items())


def test_b26_wrong_key_is_invalid_signature() -> None:
    request = _request(B26["request"], B26["expected_headers"])
    other = {
        "x": base64.urlsafe_b64encode(
            Ed25519PrivateKey.generate().public_key().public_bytes_raw()
        ).decode()
    }
    with pytest.raises(SignatureFailure) as exc:
        verify_signature(request, parse_signature(request), EdVerifier(other))
    assert _code(exc) == "invalid_signature"


# --- aauth-derived C.3 .. C.7 ---------------------------------------------------------

DERIVED = _load("aauth-derived.json")
SIGNED = {case["id"]: case for case in DERIVED["signed_requests"]}


def _derived_verifier(request: HttpRequest, label: str) -> EdVerifier:
    """The key the AAuth verifier would reach: cnf.jwk of the token, or the JWKS entry."""
    key = select_signature_key(request.header("Signature-Key"), label)
    if key.scheme == "jwt":
        jwt = key.params["jwt"]
        assert isinstance(jwt, str)
        payload = json.loads(_b64u(jwt.split(".")[1]))
        return EdVerifier(payload["cnf"]["jwk"])
    assert key.scheme == "jwks_uri"
    for document in DERIVED["jwks_documents"].values():
        for jwk in document["keys"]:
            if jwk["kid"] == key.params["kid"]:
                return EdVerifier(jwk)
    raise AssertionError("no key")


@pytest.mark.parametrize("case_id", sorted(SIGNED))
def test_derived_sign_direction(case_id: str) -> None:
    case = SIGNED[case_id]
    inputs, expected = case["inputs"], case["expected"]
    signer = EdSigner(DERIVED["keys"][inputs["signer"]]["jwk_private"])
    request = _request(inputs["request"])
    lines = sign_request(
        request,
        signer,
        label=inputs["label"],
        components=inputs["covered_components"],
        created=inputs["created"],
    )
    assert lines == list(expected["headers"].items())
    signed = _with(request, lines)
    parsed = parse_signature(signed)
    assert signature_base(signed, parsed) == expected["signature_base"].encode()


@pytest.mark.parametrize("case_id", sorted(SIGNED))
def test_derived_verify_direction(case_id: str) -> None:
    case = SIGNED[case_id]
    inputs, expected = case["inputs"], case["expected"]
    request = _request(inputs["request"], expected["headers"])
    parsed = parse_signature(request, label=inputs["label"])
    assert parsed.components == tuple(inputs["covered_components"])
    assert parsed.created == inputs["created"]
    assert parsed.alg is None and parsed.keyid is None
    assert signature_base(request, parsed) == expected["signature_base"].encode()
    verify_signature(request, parsed, _derived_verifier(request, parsed.label))


# --- a tiny stand-in for the verifier's coverage and window rules ---------------------


def _policy_then_verify(
    request: HttpRequest,
    key: EdVerifier | ES256Verifier,
    *,
    now: int,
    required: Sequence[str] = AAUTH_COMPONENTS,
    window: int = 60,
) -> str:
    """digest 2.6 steps 1-3 and 7, in order; returns "valid" or the Signature-Error code."""
    try:
        parsed = parse_signature(request)
        missing = [c for c in required if c not in parsed.components]
        if missing:
            return "invalid_input"
        if parsed.created is None or now - parsed.created > window:
            return "invalid_signature"
        if parsed.created - now > window:
            return "clock_skew"
        verify_signature(request, parsed, key)
    except SignatureFailure as failure:
        return failure.error
    return "valid"


GO_SIGS = _load("aauth-go/http-signature.json")["cases"]


def _tampered(request: HttpRequest, tamper: Mapping[str, Any]) -> HttpRequest:
    method = tamper.get("method") or request.method
    url = tamper.get("url") or request.url
    body = tamper["body"].encode() if "body" in tamper else request.body
    headers = list(request.headers)
    for name, value in tamper.get("headers", {}).items():
        kept = [(k, v) for k, v in headers if k.lower() != name.lower()]
        headers = [*kept, (name, value)]
    return HttpRequest(method, url, headers, body)


@pytest.mark.parametrize("case", GO_SIGS, ids=[c["name"] for c in GO_SIGS])
def test_aauth_go_http_signature(case: dict[str, Any]) -> None:
    original = _request(case["request"], case["signed"])
    request = _tampered(original, case["tamper"]) if "tamper" in case else original
    created = parse_signature(original).created
    assert created is not None
    rules = case.get("verify", {})
    required = list(AAUTH_COMPONENTS) + list(rules.get("required_components", []))
    if rules.get("require_body_coverage"):
        required += BODY_COMPONENTS
    outcome = _policy_then_verify(
        request,
        _verifier(case["signing_key"]),
        now=created + rules.get("at_offset", 0),
        required=required,
        window=rules.get("window_seconds", 60),
    )
    assert outcome == case["expect"]


ED_GO_SIGS = [c for c in GO_SIGS if c["signing_key"]["kty"] == "OKP"]


@pytest.mark.parametrize("case", ED_GO_SIGS, ids=[c["name"] for c in ED_GO_SIGS])
def test_aauth_go_sign_direction(case: dict[str, Any]) -> None:
    signed = _request(case["request"], case["signed"])
    parsed = parse_signature(signed)
    assert parsed.created is not None
    lines = sign_request(
        _request(case["request"]),
        EdSigner(case["signing_key"]),
        components=parsed.components,
        created=parsed.created,
    )
    assert dict(lines) == case["signed"]


def test_aauth_go_signature_key_is_signed_as_sent() -> None:
    case = GO_SIGS[0]
    request = _request(case["request"], case["signed"])
    base = signature_base(request, parse_signature(request)).decode()
    assert '"signature-key": sig=jwt; jwt="eyJhbGciOiJFZDI1NTE5In0.e30.c2ln"' in base.split("\n")


# --- negative variants of the derived cases that this layer decides -------------------

T = DERIVED["clock"]["T"]
AGENT = EdSigner(DERIVED["keys"]["agent"]["jwk_private"])
AGENT_PUBLIC = EdVerifier(DERIVED["keys"]["agent"]["jwk_private"])


def _resigned(
    case_id: str, *, created: int = T, components: Sequence[str] | None = None
) -> HttpRequest:
    inputs = SIGNED[case_id]["inputs"]
    request = _request(inputs["request"])
    comps = inputs["covered_components"] if components is None else components
    return _with(request, sign_request(request, AGENT, components=comps, created=created))


@pytest.mark.parametrize(
    ("variant", "request_", "required", "expected"),
    [
        ("C.9-1", _resigned("C.3", created=T - 61), AAUTH_COMPONENTS, "invalid_signature"),
        ("C.9-2", _resigned("C.3", created=T + 61), AAUTH_COMPONENTS, "clock_skew"),
        (
            "C.9-3",
            _resigned("C.3", components=AAUTH_COMPONENTS[:3]),
            AAUTH_COMPONENTS,
            "invalid_input",
        ),
        (
            "C.9-6",
            _resigned(
                "C.4",
                components=["@method", "@authority", "@path", "content-type", "signature-key"],
            ),
            AAUTH_COMPONENTS + BODY_COMPONENTS,
            "invalid_input",
        ),
    ],
)
def test_derived_negative_variants(
    variant: str, request_: HttpRequest, required: Sequence[str], expected: str
) -> None:
    assert _policy_then_verify(request_, AGENT_PUBLIC, now=T, required=required) == expected


def test_c9_4_alg_parameter_is_reported_and_ignored() -> None:
    request = _request(SIGNED["C.3"]["inputs"]["request"])
    params = '("@method" "@authority" "@path" "signature-key");created=' + str(T) + ';alg="ed25519"'
    draft = parse_signature(_resigned("C.3"))._replace(signature_params=params, signature=b"")
    signature = AGENT.sign(signature_base(request, draft))
    signed = _with(
        request,
        [
            ("Signature-Input", f"sig={params}"),
            ("Signature", f"sig=:{base64.b64encode(signature).decode()}:"),
        ],
    )
    parsed = parse_signature(signed)
    assert parsed.alg == "ed25519"
    verify_signature(signed, parsed, AGENT_PUBLIC)


def test_c9_5_body_changed_by_one_byte_is_invalid_signature() -> None:
    signed = _resigned("C.4")
    tampered = HttpRequest(signed.method, signed.url, signed.headers, signed.body[:-1] + b"]")
    with pytest.raises(SignatureFailure) as exc:
        verify_signature(tampered, parse_signature(tampered), AGENT_PUBLIC)
    assert _code(exc) == "invalid_signature"
    verify_signature(signed, parse_signature(signed), AGENT_PUBLIC)


# --- derived components ---------------------------------------------------------------


def _base_for(
    url: str, components: Sequence[str], headers: Sequence[tuple[str, str]] = ()
) -> list[str]:
    request = HttpRequest("GET", url, list(headers))
    parsed = ParsedSignature(
        "sig", tuple(components), tuple(() for _ in components), 1, None, None, None, "()", b"x"
    )
    return signature_base(request, parsed).decode().split("\n")[:-1]


@pytest.mark.parametrize(
    ("url", "component", "value"),
    [
        ("https://Example.COM:443/a", "@authority", "example.com"),
        ("http://example.com:80/a", "@authority", "example.com"),
        ("https://example.com:8443/a", "@authority", "example.com:8443"),
        ("http://example.com:443/a", "@authority", "example.com:443"),
        ("https://user@[::1]:443/a", "@authority", "[::1]"),
        ("https://[::1]:9000/a", "@authority", "[::1]:9000"),
        ("https://example.com", "@path", "/"),
        ("https://example.com/a%20b/c", "@path", "/a%20b/c"),
        ("https://example.com/a?x=1&y=2", "@query", "?x=1&y=2"),
        ("https://example.com/a", "@query", "?"),
        ("https://example.com/a?", "@query", "?"),
        ("https://example.com/a?x=1#frag", "@target-uri", "https://example.com/a?x=1"),
        ("https://example.com?x=1", "@target-uri", "https://example.com/?x=1"),
        ("HTTPS://example.com/a", "@scheme", "https"),
        ("https://example.com/a?x=1", "@request-target", "/a?x=1"),
        ("https://example.com/a?", "@request-target", "/a?"),
        ("https://example.com", "@request-target", "/"),
    ],
)
def test_derived_component_values(url: str, component: str, value: str) -> None:
    assert _base_for(url, [component]) == [f'"{component}": {value}']


def test_method_is_taken_as_sent() -> None:
    request = HttpRequest("patch", "https://example.com/")
    parsed = ParsedSignature("sig", ("@method",), ((),), 1, None, None, None, "()", b"x")
    assert signature_base(request, parsed).startswith(b'"@method": patch\n')


@pytest.mark.parametrize("component", ["@status", "@query-param", "@signature-params", "@nope"])
def test_unknown_derived_component_is_invalid(component: str) -> None:
    with pytest.raises(SignatureFailure) as exc:
        _base_for("https://example.com/", [component])
    assert _code(exc) == "invalid_signature"


def test_repeated_header_lines_are_trimmed_and_joined() -> None:
    lines = _base_for("https://e.example/", ["x-list"], [("X-List", " a "), ("x-list", "b,  c")])
    assert lines == ['"x-list": a, b,  c']


def test_header_value_is_never_reserialised() -> None:
    lines = _base_for(
        "https://e.example/", ["signature-key"], [("Signature-Key", 'sig=jwt;  jwt="a"')]
    )
    assert lines == ['"signature-key": sig=jwt;  jwt="a"']


def test_empty_header_value_is_covered() -> None:
    assert _base_for("https://e.example/", ["x-empty"], [("X-Empty", "")]) == ['"x-empty": ']


def test_sf_and_key_parameters() -> None:
    headers = [
        ("Signature-Key", 'sig=jwt;  jwt="a", other=hwk'),
        ("Example-Dict", " a=1,    b=2;x=1;y=2, c=(a   b c)"),
    ]
    request = HttpRequest("GET", "https://e.example/", headers)
    raw = (
        '("signature-key";sf "example-dict";key="b" "example-dict";key="c" '
        '"signature-key";key="sig");created=1'
    )
    signed = _with(request, [("Signature-Input", f"sig={raw}"), ("Signature", "sig=:AAAA:")])
    parsed = parse_signature(signed)
    assert signature_base(signed, parsed).decode().split("\n") == [
        '"signature-key";sf: sig=jwt;jwt="a", other=hwk',
        '"example-dict";key="b": 2;x=1;y=2',
        '"example-dict";key="c": (a b c)',
        '"signature-key";key="sig": jwt;jwt="a"',
        f'"@signature-params": {raw}',
    ]


@pytest.mark.parametrize(
    "component",
    [
        '"x-dict";bs',
        '"x-dict";req',
        '"x-dict";tr',
        '"x-dict";key="missing"',
        '"x-dict";sf=?0',
        '"x-unknown-type";sf',
        '"@method";req',
    ],
)
def test_unsupported_component_parameters_are_invalid(component: str) -> None:
    headers = [("X-Dict", "a=1"), ("X-Unknown-Type", "a=1")]
    signed = HttpRequest(
        "GET",
        "https://e.example/",
        [
            *headers,
            ("Signature-Input", f"sig=({component});created=1"),
            ("Signature", "sig=:AAAA:"),
        ],
    )
    parsed = parse_signature(signed)
    with pytest.raises(SignatureFailure) as exc:
        signature_base(signed, parsed)
    assert _code(exc) == "invalid_signature"


# --- malformed signatures -------------------------------------------------------------

GOOD_INPUT = 'sig=("@method" "@authority" "@path" "signature-key");created=1730217600'
GOOD_SIG = "sig=:" + base64.b64encode(b"\x01" * 64).decode() + ":"


def _signed(
    signature_input: str | None = GOOD_INPUT,
    signature: str | None = GOOD_SIG,
    *extra: tuple[str, str],
) -> HttpRequest:
    headers = [("Signature-Key", 'sig=jwt;jwt="x"'), *extra]
    if signature_input is not None:
        headers.append(("Signature-Input", signature_input))
    if signature is not None:
        headers.append(("Signature", signature))
    return HttpRequest("GET", "https://resource.example/api", headers)


@pytest.mark.parametrize(
    ("signature_input", "signature"),
    [
        (None, GOOD_SIG),
        (GOOD_INPUT, None),
        ('sig=("@method" "@path"', GOOD_SIG),  # unterminated inner list
        ("sig=@method", GOOD_SIG),  # not an inner list
        ('sig=("@method" @path);created=1', GOOD_SIG),  # bare item is not a String
        ("sig=(@method);created=1", GOOD_SIG),
        ('sig=("@method" "@method");created=1', GOOD_SIG),  # duplicate component
        ('sig=("@method");created="1"', GOOD_SIG),  # non-integer created
        ('sig=("@method");created=1.5', GOOD_SIG),
        ('sig=("@method");created=?1', GOOD_SIG),  # Boolean is not an Integer
        ('sig=("@method");created=1;expires="2"', GOOD_SIG),
        ('sig=("@method");created=1;keyid=k', GOOD_SIG),  # keyid as Token
        ('sig=("@method");created=1;alg=ed25519', GOOD_SIG),
        ('sig=("@method");created=1;created=2', GOOD_SIG),  # duplicate parameter
        ('sig=("@method");created=1, sig=("@path");created=1', GOOD_SIG),  # duplicate label
        ('sig=("@method");created=1', "sig=:AAAA"),  # broken Byte Sequence
        ('sig=("@method");created=1', "sig=:AA$A:"),
        ('sig=("@method");created=1', "sig=::"),  # empty signature
        ('sig=("@method");created=1', 'sig=""'),
        ('sig=("@method");created=1', "sig=(:AAAA:)"),
        ('sig=("@method");created=1', "sig=12"),
        ('sig=("@method");created=1', "other=:AAAA:"),  # label mismatch
        ('other=("@method");created=1', GOOD_SIG),
        ('sig=("@method");created=1', "sig=:AAAA:, sig=:AAAB:"),
        ('sig=("@method");created=1;keyid="\u00e9"', GOOD_SIG),  # not ASCII
    ],
)
def test_malformed_signature_fields(signature_input: str | None, signature: str | None) -> None:
    with pytest.raises(SignatureFailure) as exc:
        parse_signature(_signed(signature_input, signature))
    assert _code(exc) == "invalid_signature"
    assert exc.value.status == 401


def test_same_component_with_different_parameters_is_not_a_duplicate() -> None:
    parsed = parse_signature(_signed('sig=("x-d" "x-d";key="a");created=1', GOOD_SIG))
    assert parsed.components == ("x-d", "x-d")
    assert parsed.component_params == ((), (("key", "a"),))


def test_signature_params_are_canonicalised() -> None:
    parsed = parse_signature(
        _signed('sig=(  "@method"   "@path" );created=1;keyid="k";nonce="n"', GOOD_SIG)
    )
    assert parsed.signature_params == '("@method" "@path");created=1;keyid="k";nonce="n"'


def test_label_choice() -> None:
    two = 'a=("@method");created=1, sig=("@path");created=2'
    sigs = "a=:AAAA:, sig=:AAAB:"
    assert parse_signature(_signed(two, sigs)).label == "sig"
    assert parse_signature(_signed(two, sigs), label="a").created == 1
    assert (
        parse_signature(
            _signed('b=("@method");created=1, a=("@path");created=2', "a=:AAAA:, b=:AAAB:")
        ).label
        == "b"
    )
    assert parse_signature(_signed('only=("@method");created=1', "only=:AAAA:")).label == "only"
    with pytest.raises(SignatureFailure):
        parse_signature(_signed(two, sigs), label="missing")


def test_repeated_signature_lines_combine() -> None:
    request = HttpRequest(
        "GET",
        "https://e.example/",
        [
            ("Signature-Input", 'a=("@method");created=1'),
            ("Signature", "a=:AAAA:"),
            ("Signature-Input", 'sig=("@path");created=2'),
            ("Signature", "sig=:AAAB:"),
        ],
    )
    parsed = parse_signature(request)
    assert (parsed.label, parsed.components, parsed.signature) == (
        "sig",
        ("@path",),
        b"\x00\x00\x01",
    )


RAW = bytes(range(1, 65))
B64URL = base64.urlsafe_b64encode(RAW).decode().rstrip("=")


@pytest.mark.parametrize(
    ("member", "accepted_when_on"),
    [
        (f'"{B64URL}"', True),  # unpadded base64url String
        (f'"{base64.urlsafe_b64encode(RAW).decode()}"', False),  # padded: not the quirk
        (f'"{base64.b64encode(RAW).decode()}"', False),  # standard alphabet in a String
        ('"A"', False),  # impossible length
        (f"a{B64URL[1:]}", None),  # Token form, checked below
    ],
)
def test_base64url_signature_setting(member: str, accepted_when_on: bool | None) -> None:
    request = _signed(GOOD_INPUT, f"sig={member}")
    with pytest.raises(SignatureFailure):
        parse_signature(request, accept_base64url=False)
    if accepted_when_on is None:
        assert parse_signature(request).signature == _b64u(member)
    elif accepted_when_on:
        assert parse_signature(request).signature == RAW
    else:
        with pytest.raises(SignatureFailure):
            parse_signature(request)


def test_padded_byte_sequence_is_always_accepted() -> None:
    request = _signed(GOOD_INPUT, f"sig=:{base64.b64encode(RAW).decode()}:")
    assert parse_signature(request, accept_base64url=False).signature == RAW


def test_uncovered_header_absent_is_invalid() -> None:
    request = _signed('sig=("@method" "content-type");created=1', GOOD_SIG)
    with pytest.raises(SignatureFailure) as exc:
        signature_base(request, parse_signature(request))
    assert _code(exc) == "invalid_signature"


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "caf\u00e9"])
def test_unsafe_header_values_are_invalid(value: str) -> None:
    request = _signed('sig=("x-v");created=1', GOOD_SIG, ("X-V", value))
    with pytest.raises(SignatureFailure):
        signature_base(request, parse_signature(request))


def test_verifier_exception_is_invalid_signature() -> None:
    class Broken:
        alg = "Ed25519"

        def verify(self, signature: bytes, data: bytes) -> bool:
            raise ValueError("bad key")

    request = _signed()
    with pytest.raises(SignatureFailure) as exc:
        verify_signature(request, parse_signature(request), Broken())
    assert _code(exc) == "invalid_signature"


def test_covered_digest_must_be_present() -> None:
    request = _resigned("C.4")
    without = HttpRequest(
        request.method,
        request.url,
        [(k, v) for k, v in request.headers if k != "Content-Digest"],
        request.body,
    )
    with pytest.raises(SignatureFailure):
        verify_signature(without, parse_signature(without), AGENT_PUBLIC)


# --- sign_request ---------------------------------------------------------------------


def test_sign_request_emits_expires_and_keyid_in_order_and_never_alg() -> None:
    request = _request(SIGNED["C.3"]["inputs"]["request"])
    lines = sign_request(request, AGENT, created=T, expires=T + 30, keyid="agent-1")
    assert [name for name, _ in lines] == ["Signature-Input", "Signature"]
    assert (
        lines[0][1] == f'sig=("@method" "@authority" "@path" "signature-key");'
        f'created={T};expires={T + 30};keyid="agent-1"'
    )
    parsed = parse_signature(_with(request, lines))
    assert (parsed.expires, parsed.keyid, parsed.alg) == (T + 30, "agent-1", None)
    verify_signature(_with(request, lines), parsed, AGENT_PUBLIC)


def test_sign_request_keeps_an_existing_digest_and_supports_sha512() -> None:
    request = _request(SIGNED["C.4"]["inputs"]["request"])
    comps = AAUTH_COMPONENTS + BODY_COMPONENTS
    lines = sign_request(request, AGENT, components=comps, created=T, digest_alg="sha-512")
    assert lines[0][0] == "Content-Digest" and lines[0][1].startswith("sha-512=:")
    signed = _with(request, lines)
    verify_signature(signed, parse_signature(signed), AGENT_PUBLIC)
    again = sign_request(signed, AGENT, label="sig2", components=comps, created=T)
    assert [name for name, _ in again] == ["Signature-Input", "Signature"]


@pytest.mark.parametrize(
    "kwargs",
    [{"label": "Sig"}, {"label": "1sig"}, {"components": ["@method", "@method"]}],
)
def test_sign_request_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        sign_request(_request(SIGNED["C.3"]["inputs"]["request"]), AGENT, created=T, **kwargs)


def test_sign_request_needs_the_signature_key_header_first() -> None:
    request = HttpRequest("GET", "https://resource.example/api")
    with pytest.raises(SignatureFailure):
        sign_request(request, AGENT, created=T)
