from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from joserfc import jws
from joserfc import jwt as jose_jwt
from joserfc.errors import BadSignatureError

from aauth_server.keys.jwk import PrivateKey, PublicKey, jwk_thumbprint
from aauth_server.tokens import (
    DWK_ACCESS,
    DWK_AGENT,
    DWK_PERSON,
    DWK_RESOURCE,
    MAX_LIFETIME,
    TYP_AGENT,
    TYP_AUTH,
    TYP_PERSON,
    TYP_RESOURCE,
    TokenError,
    UnverifiedJWT,
    check_claims,
    check_header,
    decode_unverified,
    mint_agent_token,
    mint_auth_token,
    mint_person_token,
    mint_resource_token,
    mint_token,
    sign_jwt,
    verify_jwt_signature,
)
from tests.vectors import vectors_dir

DERIVED: dict[str, Any] = json.loads(
    (vectors_dir() / "aauth-derived.json").read_text(encoding="utf-8")
)
GO_JWT: list[dict[str, Any]] = json.loads(
    (vectors_dir() / "aauth-go" / "jwt.json").read_text(encoding="utf-8")
)["cases"]
T: int = DERIVED["clock"]["T"]
VERIFY_AT: int = DERIVED["clock"]["verify_at"]
TOKENS = {t["id"]: t for t in DERIVED["tokens"]}
# Who each derived token is addressed to: person/auth tokens to the resource, the
# three-party resource token to the PS that issued the person token.
AUDIENCE = {
    TYP_AGENT: None,
    TYP_PERSON: "https://resource.example",
    TYP_AUTH: "https://resource.example",
    TYP_RESOURCE: "https://ps.example",
}
# aauth-go's agent tokens run from 2026 to 2100: legal (the 24 h agent ceiling is a
# SHOULD) but beyond our default policy, so their verification raises the ceiling.
GO_AGENT_CEILING = 75 * 365 * 86400


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _private(role: str) -> PrivateKey:
    entry = DERIVED["keys"][role]
    jwk = dict(entry["jwk_private"])
    if entry["kid"]:
        jwk["kid"] = entry["kid"]
    return PrivateKey.from_jwk(jwk)


def _discover(iss: str, dwk: str, kid: str) -> PublicKey:
    """Key resolution through the vector file's metadata and JWKS documents."""
    metadata = DERIVED["metadata_documents"][f"{iss}/.well-known/{dwk}"]
    assert metadata["issuer"] == iss
    keys = DERIVED["jwks_documents"][metadata["jwks_uri"]]["keys"]
    (jwk,) = [k for k in keys if k["kid"] == kid]
    return PublicKey.from_jwk(jwk)


def _verify(
    token: str,
    typ: str,
    key: PublicKey,
    *,
    now: float,
    audience: str | None = None,
    **options: Any,
) -> Mapping[str, object]:
    """The lead's verifier order: decode, typ, signature, claims."""
    jwt = decode_unverified(token)
    check_header(jwt, typ)
    verify_jwt_signature(jwt, key, allow_eddsa=options.get("allow_eddsa", False))
    return check_claims(jwt, typ=typ, now=now, audience=audience, **options)


def _code(exc: pytest.ExceptionInfo[TokenError]) -> str:
    return exc.value.code


# --- aauth-derived.json ---------------------------------------------------------------


@pytest.mark.parametrize("vector", DERIVED["tokens"], ids=lambda t: t["id"])
def test_derived_token_minted_byte_for_byte(vector: dict[str, Any]) -> None:
    inputs = vector["inputs"]
    token = sign_jwt(
        inputs["header_json"].encode("utf-8"),
        inputs["payload_json"].encode("utf-8"),
        _private(vector["signer"]),
    )
    assert token == vector["expected"]["jwt"]


@pytest.mark.parametrize("vector", DERIVED["tokens"], ids=lambda t: t["id"])
def test_derived_token_verifies_through_discovery(vector: dict[str, Any]) -> None:
    expected = vector["expected"]
    assert expected["verification"]["clock"] == VERIFY_AT
    jwt = decode_unverified(expected["jwt"])
    typ = check_header(jwt, vector["typ"])
    key = _discover(str(jwt.payload["iss"]), str(jwt.payload["dwk"]), str(jwt.header["kid"]))
    verify_jwt_signature(jwt, key)
    payload = check_claims(jwt, typ=typ, now=VERIFY_AT, audience=AUDIENCE[typ])
    assert payload == json.loads(vector["inputs"]["payload_json"])
    if AUDIENCE[typ] is not None:
        with pytest.raises(TokenError) as exc:
            check_claims(jwt, typ=typ, now=VERIFY_AT, audience="https://other.example")
        assert _code(exc) == "invalid_jwt"


def test_derived_tokens_reproduced_by_mint_helpers() -> None:
    cnf = DERIVED["agent_cnf_jwk"]
    minted = {
        "agent_token": mint_agent_token(
            _private("ap"),
            iss="https://agent.example",
            sub="aauth:assistant@agent.example",
            cnf_jwk=cnf,
            now=T,
            ps="https://ps.example",
            jti="at-0001",
        ),
        "person_token": mint_person_token(
            _private("ps"),
            iss="https://ps.example",
            aud="https://resource.example",
            sub="8f14e45fceea167a5a36dedd4bea2543",
            cnf_jwk=cnf,
            now=T,
            jti="pt-3ab910",
        ),
        "resource_token": mint_resource_token(
            _private("resource"),
            iss="https://resource.example",
            aud="https://ps.example",
            ps="https://ps.example",
            sub="8f14e45fceea167a5a36dedd4bea2543",
            presented_jti="pt-3ab910",
            agent_jkt=DERIVED["agent_jkt"],
            now=T,
            scope="data.read data.write",
            jti="rt-77c1",
        ),
        "auth_token": mint_auth_token(
            _private("ps"),
            iss="https://ps.example",
            dwk=DWK_PERSON,
            aud="https://resource.example",
            ps="https://ps.example",
            sub="8f14e45fceea167a5a36dedd4bea2543",
            cnf_jwk=cnf,
            now=T,
            scope="data.read data.write",
            jti="au-5d20",
        ),
    }
    for name, token in minted.items():
        assert token == TOKENS[name]["expected"]["jwt"], name


def _derived_payloads() -> dict[str, Mapping[str, object]]:
    payloads = {}
    for name, vector in TOKENS.items():
        jwt = decode_unverified(vector["expected"]["jwt"])
        typ = check_header(jwt, vector["typ"])
        payloads[name] = check_claims(jwt, typ=typ, now=VERIFY_AT, audience=AUDIENCE[typ])
    return payloads


def test_derived_token_cross_checks() -> None:
    p = _derived_payloads()
    agent, person, resource, auth = (
        p["agent_token"],
        p["person_token"],
        p["resource_token"],
        p["auth_token"],
    )
    person_cnf = person["cnf"]
    assert isinstance(person_cnf, dict)
    checks = {
        "resource_token.agent_jkt == RFC7638(person_token.cnf.jwk)": resource["agent_jkt"]
        == jwk_thumbprint(person_cnf["jwk"]),
        "resource_token.presented_jti == person_token.jti": resource["presented_jti"]
        == person["jti"],
        "resource_token.ps == person_token.iss": resource["ps"] == person["iss"],
        "resource_token.sub == person_token.sub": resource["sub"] == person["sub"],
        "person_token.aud == resource_token.iss": person["aud"] == resource["iss"],
        "auth_token.sub == resource_token.sub": auth["sub"] == resource["sub"],
        "auth_token.exp <= person_token.exp and auth_token.exp <= agent_token.exp": (
            int(str(auth["exp"])) <= int(str(person["exp"]))
            and int(str(auth["exp"])) <= int(str(agent["exp"]))
        ),
    }
    listed = [c["check"] for c in DERIVED["token_cross_checks"] if not c.get("negative")]
    assert sorted(listed) == sorted(checks)
    assert all(checks.values()), [name for name, ok in checks.items() if not ok]
    assert resource["agent_jkt"] == DERIVED["agent_jkt"]


def test_person_token_where_auth_token_required_fails_typ_check() -> None:
    (negative,) = [c for c in DERIVED["token_cross_checks"] if c.get("negative")]
    assert "typ" in negative["check"]
    jwt = decode_unverified(TOKENS["person_token"]["expected"]["jwt"])
    with pytest.raises(TokenError) as exc:
        check_header(jwt, TYP_AUTH)
    assert _code(exc) == "invalid_jwt"
    # Even a caller that skipped the typ check cannot read it as an auth token: no ps.
    with pytest.raises(TokenError):
        check_claims(jwt, typ=TYP_AUTH, now=VERIFY_AT, audience="https://resource.example")


# --- aauth-go/jwt.json -----------------------------------------------------------------

GOOD = [c for c in GO_JWT if "reject" not in c]
EXACT = [c for c in GOOD if "claims" in c and not c.get("randomized")]
REJECT = {c["name"]: c for c in GO_JWT if "reject" in c}


def _go_public(case: dict[str, Any]) -> PublicKey:
    return PublicKey.from_jwk({k: v for k, v in case["signing_key"].items() if k != "d"})


def _go_now(token: str) -> int:
    payload = decode_unverified(token).payload
    return (int(str(payload["iat"])) + int(str(payload["exp"]))) // 2


def _go_options(case: dict[str, Any]) -> dict[str, Any]:
    return {"max_lifetime": GO_AGENT_CEILING} if case["typ"] == TYP_AGENT else {}


@pytest.mark.parametrize("case", EXACT, ids=lambda c: c["name"])
def test_go_token_minted_byte_for_byte(case: dict[str, Any]) -> None:
    key = PrivateKey.from_jwk(case["signing_key"])
    header = {"alg": key.alg, "kid": case["kid"], "typ": case["typ"]}
    assert sign_jwt(header, case["claims"], key) == case["token"]


@pytest.mark.parametrize("case", GOOD, ids=lambda c: c["name"])
def test_go_good_token_verifies(case: dict[str, Any]) -> None:
    payload = _verify(
        case["token"],
        case["typ"],
        _go_public(case),
        now=_go_now(case["token"]),
        audience=case.get("audience"),
        **_go_options(case),
    )
    if "claims" in case:
        assert payload == case["claims"]
    if case.get("audience"):
        with pytest.raises(TokenError):
            _verify(
                case["token"],
                case["typ"],
                _go_public(case),
                now=_go_now(case["token"]),
                audience="https://elsewhere.example",
                **_go_options(case),
            )


@pytest.mark.parametrize(
    "case", [c for c in GOOD if c["typ"] == TYP_AGENT], ids=lambda c: c["name"]
)
def test_go_agent_tokens_exceed_default_agent_ceiling(case: dict[str, Any]) -> None:
    with pytest.raises(TokenError) as exc:
        _verify(case["token"], case["typ"], _go_public(case), now=_go_now(case["token"]))
    assert _code(exc) == "invalid_jwt"
    assert "exp - iat" in exc.value.detail


def test_go_good_tokens_fail_outside_their_validity() -> None:
    for case in GOOD:
        payload = decode_unverified(case["token"]).payload
        iat, exp = int(str(payload["iat"])), int(str(payload["exp"]))
        key, opts = _go_public(case), _go_options(case)
        aud = case.get("audience")
        with pytest.raises(TokenError) as exc:
            _verify(case["token"], case["typ"], key, now=exp, audience=aud, **opts)
        assert _code(exc) == "expired_jwt"
        with pytest.raises(TokenError) as exc:
            _verify(case["token"], case["typ"], key, now=iat - 61, audience=aud, **opts)
        assert _code(exc) == "clock_skew"


GO_REJECT_CODES = {
    "JWS alg EdDSA is rejected": "invalid_jwt",
    "JWS alg none is rejected": "invalid_jwt",
    "cnf.jwk without alg is rejected": "unsupported_algorithm",
    "cnf.jwk crv disagreeing with alg is rejected": "invalid_key",
    "iat absent is rejected": "invalid_jwt",
    "iss not a server identifier is rejected": "invalid_jwt",
    "person token carrying scope is rejected": "invalid_jwt",
}


def test_go_reject_table_is_complete() -> None:
    assert set(REJECT) == set(GO_REJECT_CODES)


@pytest.mark.parametrize("name", sorted(GO_REJECT_CODES))
def test_go_reject_case(name: str) -> None:
    case = REJECT[name]
    payload = decode_unverified(case["token"]).payload
    now = int(str(payload.get("iat", 1767225600))) + 10
    with pytest.raises(TokenError) as exc:
        _verify(
            case["token"],
            case["typ"],
            _go_public(case),
            now=now,
            audience=case.get("audience"),
            **_go_options(case),
        )
    assert _code(exc) == GO_REJECT_CODES[name]


@pytest.mark.parametrize(
    "name",
    [
        "cnf.jwk without alg is rejected",
        "cnf.jwk crv disagreeing with alg is rejected",
        "iat absent is rejected",
        "iss not a server identifier is rejected",
        "person token carrying scope is rejected",
    ],
)
def test_go_reject_cases_fail_on_claims_not_signature(name: str) -> None:
    case = REJECT[name]
    verify_jwt_signature(decode_unverified(case["token"]), _go_public(case))


def test_eddsa_header_accepted_only_with_compat_setting() -> None:
    case = REJECT["JWS alg EdDSA is rejected"]
    key = _go_public(case)
    payload = _verify(
        case["token"],
        case["typ"],
        key,
        now=_go_now(case["token"]),
        allow_eddsa=True,
        max_lifetime=GO_AGENT_CEILING,
    )
    assert payload["sub"] == "aauth:assistant@agent.example"


def test_eddsa_header_never_accepted_for_es256_key() -> None:
    es256 = PrivateKey.generate("ES256", kid="k")
    forged = _forge({"alg": "EdDSA", "typ": TYP_AGENT, "kid": "k"}, {"x": 1}, es256)
    with pytest.raises(TokenError):
        verify_jwt_signature(decode_unverified(forged), es256.public, allow_eddsa=True)


# --- own keys: negative cases ----------------------------------------------------------

AP = "https://agent.example"
PS = "https://ps.example"
RS = "https://resource.example"
SUB = "8f14e45fceea167a5a36dedd4bea2543"


@pytest.fixture(scope="module")
def signer() -> PrivateKey:
    return PrivateKey.generate("Ed25519", kid="test-key")


@pytest.fixture(scope="module")
def agent_key() -> PrivateKey:
    return PrivateKey.generate("ES256")


def _forge(header: Mapping[str, object], payload: Mapping[str, object], key: PrivateKey) -> str:
    """A token signed by ``key`` whatever its header says (sign_jwt refuses a wrong alg)."""
    signing_input = (
        _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(payload).encode())
    ).encode("ascii")
    return signing_input.decode("ascii") + "." + _b64(key.sign(signing_input))


def _payload(typ: str, agent_key: PrivateKey, **changes: object) -> dict[str, object]:
    cnf = {"jwk": agent_key.public_jwk()}
    base: dict[str, dict[str, object]] = {
        TYP_AGENT: {"iss": AP, "dwk": DWK_AGENT, "sub": "aauth:bot@agent.example", "cnf": cnf},
        TYP_PERSON: {"iss": PS, "dwk": DWK_PERSON, "aud": RS, "sub": SUB, "cnf": cnf},
        TYP_RESOURCE: {
            "iss": RS,
            "dwk": DWK_RESOURCE,
            "aud": PS,
            "ps": PS,
            "sub": SUB,
            "presented_jti": "pt-1",
            "agent_jkt": agent_key.public.thumbprint,
        },
        TYP_AUTH: {"iss": PS, "dwk": DWK_PERSON, "aud": RS, "ps": PS, "sub": SUB, "cnf": cnf},
    }
    payload: dict[str, object] = {**base[typ], "jti": "j-1", "iat": T, "exp": T + 300}
    for name, value in changes.items():
        if value is None:
            payload.pop(name, None)
        else:
            payload[name] = value
    return payload


def _token(signer: PrivateKey, typ: str, payload: Mapping[str, object]) -> str:
    return sign_jwt({"alg": signer.alg, "typ": typ, "kid": signer.kid}, payload, signer)


def _claims_error(
    signer: PrivateKey, typ: str, payload: Mapping[str, object], **options: Any
) -> str:
    token = _token(signer, typ, payload)
    options.setdefault("now", T + 10)
    options.setdefault("audience", AUDIENCE[typ] and (RS if typ != TYP_RESOURCE else PS))
    with pytest.raises(TokenError) as exc:
        _verify(token, typ, signer.public, **options)
    return _code(exc)


ALL_TYPES = [TYP_AGENT, TYP_PERSON, TYP_RESOURCE, TYP_AUTH]


@pytest.mark.parametrize("typ", ALL_TYPES)
def test_valid_baseline(signer: PrivateKey, agent_key: PrivateKey, typ: str) -> None:
    token = _token(signer, typ, _payload(typ, agent_key))
    aud = {TYP_AGENT: None, TYP_RESOURCE: PS}.get(typ, RS)
    assert _verify(token, typ, signer.public, now=T + 10, audience=aud)["jti"] == "j-1"


@pytest.mark.parametrize("typ", ALL_TYPES)
def test_exp_equal_to_now_is_expired(signer: PrivateKey, agent_key: PrivateKey, typ: str) -> None:
    payload = _payload(typ, agent_key)
    assert _claims_error(signer, typ, payload, now=T + 300) == "expired_jwt"
    # No skew tolerance on exp, however large the configured skew.
    assert _claims_error(signer, typ, payload, now=T + 300, clock_skew=3600) == "expired_jwt"
    _verify(
        _token(signer, typ, payload),
        typ,
        signer.public,
        now=T + 299,
        audience={TYP_AGENT: None, TYP_RESOURCE: PS}.get(typ, RS),
    )


@pytest.mark.parametrize("typ", ALL_TYPES)
def test_iat_in_future_beyond_skew(signer: PrivateKey, agent_key: PrivateKey, typ: str) -> None:
    payload = _payload(typ, agent_key, iat=T + 71, exp=T + 200)
    assert _claims_error(signer, typ, payload, now=T + 10) == "clock_skew"
    assert _claims_error(signer, typ, payload, now=T + 60, clock_skew=10) == "clock_skew"
    token = _token(signer, typ, _payload(typ, agent_key, iat=T + 70, exp=T + 200))
    aud = {TYP_AGENT: None, TYP_RESOURCE: PS}.get(typ, RS)
    _verify(token, typ, signer.public, now=T + 10, audience=aud)


@pytest.mark.parametrize("typ", ALL_TYPES)
def test_lifetime_ceiling_per_type(signer: PrivateKey, agent_key: PrivateKey, typ: str) -> None:
    limit = MAX_LIFETIME[typ]
    over = _payload(typ, agent_key, exp=T + limit + 1)
    assert _claims_error(signer, typ, over) == "invalid_jwt"
    at_limit = _token(signer, typ, _payload(typ, agent_key, exp=T + limit))
    aud = {TYP_AGENT: None, TYP_RESOURCE: PS}.get(typ, RS)
    _verify(at_limit, typ, signer.public, now=T + 10, audience=aud)
    zero = _payload(typ, agent_key, iat=T + 20, exp=T + 20)
    assert _claims_error(signer, typ, zero) == "invalid_jwt"


def test_lifetime_ceiling_can_rise_only_for_should_types(
    signer: PrivateKey, agent_key: PrivateKey
) -> None:
    jwt = decode_unverified(_token(signer, TYP_RESOURCE, _payload(TYP_RESOURCE, agent_key)))
    check_claims(jwt, typ=TYP_RESOURCE, now=T, audience=PS, max_lifetime=600)
    with pytest.raises(TokenError):
        check_claims(jwt, typ=TYP_RESOURCE, now=T, audience=PS, max_lifetime=60)
    person = decode_unverified(_token(signer, TYP_PERSON, _payload(TYP_PERSON, agent_key)))
    for typ in (TYP_PERSON, TYP_AUTH):
        with pytest.raises(ValueError):
            check_claims(person, typ=typ, now=T, max_lifetime=3601)


@pytest.mark.parametrize(
    ("field", "value"),
    [("iat", None), ("exp", None), ("iat", "1730217600"), ("exp", 1730217900.5), ("iat", True)],
)
def test_iat_and_exp_required_integers(
    signer: PrivateKey, agent_key: PrivateKey, field: str, value: object
) -> None:
    payload = _payload(TYP_AGENT, agent_key, **{field: value})
    assert _claims_error(signer, TYP_AGENT, payload) == "invalid_jwt"


def test_typ_checks(signer: PrivateKey, agent_key: PrivateKey) -> None:
    payload = _payload(TYP_PERSON, agent_key)
    for header in (
        {"alg": "Ed25519", "kid": "test-key"},
        {"alg": "Ed25519", "typ": "JWT", "kid": "test-key"},
        {"alg": "Ed25519", "typ": ["aa-person+jwt"], "kid": "test-key"},
        {"alg": "Ed25519", "typ": "AA-PERSON+JWT", "kid": "test-key"},
    ):
        jwt = decode_unverified(_forge(header, payload, signer))
        with pytest.raises(TokenError) as exc:
            check_header(jwt, TYP_PERSON)
        assert _code(exc) == "invalid_jwt"
    jwt = decode_unverified(_token(signer, TYP_PERSON, payload))
    assert check_header(jwt, [TYP_AUTH, TYP_PERSON]) == TYP_PERSON
    with pytest.raises(TokenError):
        check_header(jwt, TYP_AUTH)


def test_typ_checked_before_kid(signer: PrivateKey, agent_key: PrivateKey) -> None:
    no_kid = {"alg": "Ed25519", "typ": TYP_AGENT}
    jwt = decode_unverified(sign_jwt(no_kid, _payload(TYP_AGENT, agent_key), signer))
    with pytest.raises(TokenError) as exc:
        check_header(jwt, TYP_PERSON)
    assert "typ" in exc.value.detail
    with pytest.raises(TokenError) as exc:
        check_header(jwt, TYP_AGENT)
    assert "kid" in exc.value.detail


@pytest.mark.parametrize(
    ("typ", "dwk"),
    [
        (TYP_AGENT, DWK_PERSON),
        (TYP_PERSON, DWK_ACCESS),
        (TYP_PERSON, DWK_AGENT),
        (TYP_RESOURCE, DWK_PERSON),
        (TYP_AUTH, DWK_RESOURCE),
        (TYP_AUTH, "aauth-person"),
    ],
)
def test_dwk_mismatch(signer: PrivateKey, agent_key: PrivateKey, typ: str, dwk: str) -> None:
    assert _claims_error(signer, typ, _payload(typ, agent_key, dwk=dwk)) == "invalid_jwt"


def test_auth_token_accepts_both_documents(signer: PrivateKey, agent_key: PrivateKey) -> None:
    for dwk in (DWK_PERSON, DWK_ACCESS):
        token = _token(signer, TYP_AUTH, _payload(TYP_AUTH, agent_key, dwk=dwk))
        _verify(token, TYP_AUTH, signer.public, now=T, audience=RS)


def test_alg_header_must_match_key(signer: PrivateKey, agent_key: PrivateKey) -> None:
    payload = _payload(TYP_AGENT, agent_key)
    es256 = PrivateKey.generate("ES256", kid="test-key")
    ed_token = decode_unverified(_token(signer, TYP_AGENT, payload))
    with pytest.raises(TokenError) as exc:
        verify_jwt_signature(ed_token, es256.public)
    assert _code(exc) == "invalid_jwt"
    lying = _forge({"alg": "ES256", "typ": TYP_AGENT, "kid": "test-key"}, payload, signer)
    with pytest.raises(TokenError):
        verify_jwt_signature(decode_unverified(lying), signer.public)
    for alg in ("none", "HS256", None):
        header: dict[str, object] = {"typ": TYP_AGENT, "kid": "test-key"}
        if alg:
            header["alg"] = alg
        forged = decode_unverified(_forge(header, payload, signer))
        with pytest.raises(TokenError):
            verify_jwt_signature(forged, signer.public)
    with pytest.raises(ValueError):
        sign_jwt({"alg": "ES256", "typ": TYP_AGENT, "kid": "k"}, payload, signer)


def test_bad_signature(signer: PrivateKey, agent_key: PrivateKey) -> None:
    token = _token(signer, TYP_AGENT, _payload(TYP_AGENT, agent_key))
    jwt = decode_unverified(token)
    other = PrivateKey.generate("Ed25519", kid="test-key")
    with pytest.raises(TokenError) as exc:
        verify_jwt_signature(jwt, other.public)
    assert _code(exc) == "invalid_jwt"
    head, body, sig = token.split(".")
    tampered_body = _b64(json.dumps({**jwt.payload, "sub": "aauth:evil@agent.example"}).encode())
    with pytest.raises(TokenError):
        verify_jwt_signature(decode_unverified(f"{head}.{tampered_body}.{sig}"), signer.public)
    flipped = bytes([jwt.signature[0] ^ 1]) + jwt.signature[1:]
    with pytest.raises(TokenError):
        verify_jwt_signature(decode_unverified(f"{head}.{body}.{_b64(flipped)}"), signer.public)


def test_es256_round_trip(agent_key: PrivateKey) -> None:
    issuer = PrivateKey.generate("ES256", kid="es-1")
    token = _token(issuer, TYP_AGENT, _payload(TYP_AGENT, agent_key))
    assert json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "==")) == {
        "alg": "ES256",
        "typ": TYP_AGENT,
        "kid": "es-1",
    }
    _verify(token, TYP_AGENT, issuer.public, now=T)


def _seg(value: object) -> str:
    return _b64(value if isinstance(value, bytes) else json.dumps(value).encode())


GOOD_HEAD = _seg({"alg": "Ed25519", "typ": TYP_AGENT, "kid": "k"})
GOOD_BODY = _seg({"iss": AP})
GOOD_SIG = _b64(b"\x00" * 64)
NAN_BODY = _seg(b'{"a":NaN}')
DUP_BODY = _seg(b'{"a":1,"a":2}')
UTF16_HEAD = _seg(b"\xff\xfe")


@pytest.mark.parametrize(
    "token",
    [
        "",
        GOOD_HEAD,
        f"{GOOD_HEAD}.{GOOD_BODY}",
        f"{GOOD_HEAD}.{GOOD_BODY}.{GOOD_SIG}.x",
        f"{GOOD_HEAD}.{GOOD_BODY}.{GOOD_SIG}."[:-1] + "!",
        f".{GOOD_BODY}.{GOOD_SIG}",
        f"{GOOD_HEAD}..{GOOD_SIG}",
        f"{_seg(b'not json')}.{GOOD_BODY}.{GOOD_SIG}",
        f"{GOOD_HEAD}.{_seg(b'[1,2]')}.{GOOD_SIG}",
        f"{_seg(b'null')}.{GOOD_BODY}.{GOOD_SIG}",
        f"{GOOD_HEAD}.{NAN_BODY}.{GOOD_SIG}",
        f"{GOOD_HEAD}.{DUP_BODY}.{GOOD_SIG}",
        f"{UTF16_HEAD}.{GOOD_BODY}.{GOOD_SIG}",
        f"{GOOD_HEAD}=.{GOOD_BODY}.{GOOD_SIG}",
        f"{GOOD_HEAD}.{GOOD_BODY}.{GOOD_SIG[:-1]}B",
        f"{GOOD_HEAD}.{GOOD_BODY}.{GOOD_SIG[:-1]}+",
        f"{GOOD_HEAD} .{GOOD_BODY}.{GOOD_SIG}",
        f"{GOOD_HEAD}.{GOOD_BODY}.{GOOD_SIG}\u00e9",
        f"{_seg({'alg': 'Ed25519', 'crit': ['exp']})}.{GOOD_BODY}.{GOOD_SIG}",
        f"{_seg({'alg': 'Ed25519', 'b64': False})}.{GOOD_BODY}.{GOOD_SIG}",
        f"{GOOD_HEAD}.{_seg(b'{}')[:-1]}.{GOOD_SIG}",
    ],
)
def test_malformed_tokens(token: str) -> None:
    with pytest.raises(TokenError) as exc:
        decode_unverified(token)
    assert _code(exc) == "invalid_jwt"


def test_well_formed_decode() -> None:
    jwt = decode_unverified(f"{GOOD_HEAD}.{GOOD_BODY}.{GOOD_SIG}")
    assert jwt.header["typ"] == TYP_AGENT
    assert jwt.payload == {"iss": AP}
    assert jwt.signing_input == f"{GOOD_HEAD}.{GOOD_BODY}".encode()
    assert jwt.signature == b"\x00" * 64


def test_oversized_token(signer: PrivateKey, agent_key: PrivateKey) -> None:
    payload = _payload(TYP_AGENT, agent_key, padding="x" * 20000)
    token = _token(signer, TYP_AGENT, payload)
    with pytest.raises(TokenError) as exc:
        decode_unverified(token)
    assert _code(exc) == "invalid_jwt"
    assert decode_unverified(token, max_length=len(token)).payload["padding"] == "x" * 20000
    with pytest.raises(TokenError):
        decode_unverified(token, max_length=len(token) - 1)
    with pytest.raises(TokenError):
        decode_unverified(f"{GOOD_HEAD}.{_seg({'a': [[[[1]]]] * 10})}.{GOOD_SIG}", max_length=50)


@given(st.text(max_size=300))
def test_decode_raises_only_token_errors(text: str) -> None:
    try:
        decode_unverified(text)
    except TokenError as exc:
        assert exc.code == "invalid_jwt"


@given(st.binary(max_size=200), st.binary(max_size=200))
def test_decode_of_arbitrary_segments(header: bytes, payload: bytes) -> None:
    try:
        jwt = decode_unverified(f"{_b64(header)}.{_b64(payload)}.{GOOD_SIG}")
    except TokenError as exc:
        assert exc.code == "invalid_jwt"
    else:
        assert isinstance(jwt.header, dict) and isinstance(jwt.payload, dict)


def test_deeply_nested_json_is_invalid_jwt() -> None:
    deep = b"{" + b'"a":[' * 100000 + b"]" * 100000 + b"}"
    with pytest.raises(TokenError) as exc:
        decode_unverified(f"{GOOD_HEAD}.{_seg(deep)}.{GOOD_SIG}", max_length=10**7)
    assert _code(exc) == "invalid_jwt"


@pytest.mark.parametrize(
    ("typ", "changes", "code"),
    [
        (TYP_AGENT, {"iss": "https://Agent.example"}, "invalid_jwt"),
        (TYP_AGENT, {"iss": "http://127.0.0.1:8000"}, "invalid_jwt"),
        (TYP_AGENT, {"iss": None}, "invalid_jwt"),
        (TYP_AGENT, {"jti": None}, "invalid_jwt"),
        (TYP_AGENT, {"jti": ""}, "invalid_jwt"),
        (TYP_AGENT, {"jti": 7}, "invalid_jwt"),
        (TYP_AGENT, {"sub": "assistant@agent.example"}, "invalid_jwt"),
        (TYP_AGENT, {"sub": "aauth:bot@other.example"}, "invalid_jwt"),
        (TYP_AGENT, {"sub": "aauth:bot+w1@agent.example"}, "invalid_jwt"),
        (TYP_AGENT, {"ps": "https://ps.example/"}, "invalid_jwt"),
        (TYP_AGENT, {"parent_agent": "bot"}, "invalid_jwt"),
        (TYP_AGENT, {"parent_agent": "aauth:bot@agent.example"}, "invalid_jwt"),
        (
            TYP_AGENT,
            {"sub": "aauth:bot+w1@agent.example", "parent_agent": "aauth:other@agent.example"},
            "invalid_jwt",
        ),
        (
            TYP_AGENT,
            {"sub": "aauth:bot+w1@agent.example", "parent_agent": "aauth:bot+w0@agent.example"},
            "invalid_jwt",
        ),
        (TYP_AGENT, {"cnf": None}, "invalid_jwt"),
        (TYP_AGENT, {"cnf": {"jwk": "x"}}, "invalid_jwt"),
        (TYP_AGENT, {"cnf": {"kty": "OKP"}}, "invalid_jwt"),
        (TYP_PERSON, {"aud": None}, "invalid_jwt"),
        (TYP_PERSON, {"aud": []}, "invalid_jwt"),
        (TYP_PERSON, {"aud": ["https://resource.example", 3]}, "invalid_jwt"),
        (TYP_PERSON, {"aud": "https://other.example"}, "invalid_jwt"),
        (TYP_PERSON, {"sub": None}, "invalid_jwt"),
        (TYP_PERSON, {"sub": ""}, "invalid_jwt"),
        (TYP_PERSON, {"scope": "data.read"}, "invalid_jwt"),
        (TYP_PERSON, {"account": "alice"}, "invalid_jwt"),
        (TYP_PERSON, {"mission_s256": 5}, "invalid_jwt"),
        (TYP_RESOURCE, {"agent_jkt": None}, "invalid_jwt"),
        (TYP_RESOURCE, {"presented_jti": None}, "invalid_jwt"),
        (TYP_RESOURCE, {"ps": None}, "invalid_jwt"),
        (TYP_RESOURCE, {"sub": None}, "invalid_jwt"),
        (TYP_RESOURCE, {"aud": "https://as.example"}, "invalid_jwt"),
        (TYP_AUTH, {"ps": None}, "invalid_jwt"),
        (TYP_AUTH, {"ps": "ps.example"}, "invalid_jwt"),
        (TYP_AUTH, {"sub": None}, "invalid_jwt"),
        (TYP_AUTH, {"cnf": None}, "invalid_jwt"),
        (TYP_AUTH, {"scope": ["a"]}, "invalid_jwt"),
    ],
)
def test_claim_rules(
    signer: PrivateKey,
    agent_key: PrivateKey,
    typ: str,
    changes: dict[str, object],
    code: str,
) -> None:
    assert _claims_error(signer, typ, _payload(typ, agent_key, **changes)) == code


ED_JWK = {"kty": "OKP", "crv": "Ed25519", "x": DERIVED["agent_cnf_jwk"]["x"]}


@pytest.mark.parametrize(
    ("jwk", "code"),
    [
        (ED_JWK, "unsupported_algorithm"),
        ({**ED_JWK, "alg": "EdDSA"}, "unsupported_algorithm"),
        ({**ED_JWK, "alg": "HS256"}, "unsupported_algorithm"),
        ({**ED_JWK, "alg": "ES256"}, "invalid_key"),
        ({**ED_JWK, "crv": "X25519", "alg": "Ed25519"}, "invalid_key"),
        ({"kty": "OKP", "crv": "Ed25519", "alg": "Ed25519"}, "invalid_key"),
        ({"kty": "oct", "k": "AAAA", "alg": "HS256"}, "invalid_key"),
        ({**ED_JWK, "alg": "Ed25519", "d": "secret"}, "invalid_key"),
        ({**ED_JWK, "alg": "Ed25519", "kty": ["OKP"]}, "invalid_key"),
        ({**ED_JWK, "alg": "Ed25519", "kty": {"OKP": 1}}, "invalid_key"),
    ],
)
def test_cnf_jwk_rules(
    signer: PrivateKey, agent_key: PrivateKey, jwk: dict[str, object], code: str
) -> None:
    for typ in (TYP_AGENT, TYP_PERSON, TYP_AUTH):
        payload = _payload(typ, agent_key, cnf={"jwk": jwk})
        assert _claims_error(signer, typ, payload) == code


def test_cnf_jwk_eddsa_with_compat_setting(signer: PrivateKey, agent_key: PrivateKey) -> None:
    payload = _payload(TYP_AGENT, agent_key, cnf={"jwk": {**ED_JWK, "alg": "EdDSA"}})
    _verify(_token(signer, TYP_AGENT, payload), TYP_AGENT, signer.public, now=T, allow_eddsa=True)


def test_agent_token_audience_is_ignored(signer: PrivateKey, agent_key: PrivateKey) -> None:
    token = _token(signer, TYP_AGENT, _payload(TYP_AGENT, agent_key))
    _verify(token, TYP_AGENT, signer.public, now=T, audience="https://anything.example")


def test_sub_agent_token(signer: PrivateKey, agent_key: PrivateKey) -> None:
    token = mint_agent_token(
        signer,
        iss=AP,
        sub="aauth:bot+w1@agent.example",
        parent_agent="aauth:bot@agent.example",
        cnf_jwk=agent_key.public,
        now=T,
    )
    payload = _verify(token, TYP_AGENT, signer.public, now=T)
    assert payload["parent_agent"] == "aauth:bot@agent.example"


def test_dev_loopback_needs_the_flag(signer: PrivateKey, agent_key: PrivateKey) -> None:
    iss = "http://127.0.0.1:8000"
    with pytest.raises(ValueError):
        mint_agent_token(
            signer, iss=iss, sub="aauth:bot@127.0.0.1:8000", cnf_jwk=agent_key.public, now=T
        )
    token = mint_agent_token(
        signer,
        iss=iss,
        sub="aauth:bot@127.0.0.1:8000",
        cnf_jwk=agent_key.public,
        now=T,
        dev_loopback=True,
    )
    _verify(token, TYP_AGENT, signer.public, now=T, dev_loopback=True)
    with pytest.raises(TokenError):
        _verify(token, TYP_AGENT, signer.public, now=T)


# --- minting ---------------------------------------------------------------------------


def test_mint_token_header_and_defaults(signer: PrivateKey) -> None:
    token = mint_token(signer, TYP_PERSON, {"iss": PS}, now=T + 0.9)
    jwt = decode_unverified(token)
    assert list(jwt.header.items()) == [
        ("alg", "Ed25519"),
        ("typ", TYP_PERSON),
        ("kid", "test-key"),
    ]
    assert list(jwt.payload) == ["iss", "jti", "iat", "exp"]
    assert jwt.payload["iat"] == T and jwt.payload["exp"] == T + 3600
    jti = jwt.payload["jti"]
    assert isinstance(jti, str) and len(base64.urlsafe_b64decode(jti + "==")) == 16
    again = decode_unverified(mint_token(signer, TYP_PERSON, {"iss": PS}, now=T))
    assert again.payload["jti"] != jti
    resource = decode_unverified(mint_token(signer, TYP_RESOURCE, {}, now=T, jti="r-1"))
    assert resource.payload == {"jti": "r-1", "iat": T, "exp": T + 300}
    verify_jwt_signature(jwt, signer.public)


@pytest.mark.parametrize("typ", ALL_TYPES)
def test_mint_token_refuses_long_lifetime(signer: PrivateKey, typ: str) -> None:
    mint_token(signer, typ, {}, now=T, lifetime=MAX_LIFETIME[typ])
    with pytest.raises(ValueError):
        mint_token(signer, typ, {}, now=T, lifetime=MAX_LIFETIME[typ] + 1)
    with pytest.raises(ValueError):
        mint_token(signer, typ, {"iat": T, "exp": T + MAX_LIFETIME[typ] + 1}, now=T)


def test_mint_token_refuses_nonsense(signer: PrivateKey) -> None:
    with pytest.raises(ValueError):
        mint_token(signer, "JWT", {}, now=T)
    with pytest.raises(ValueError):
        mint_token(signer, TYP_AGENT, {}, now=T, lifetime=0)
    with pytest.raises(ValueError):
        mint_token(PrivateKey.generate(), TYP_AGENT, {}, now=T)
    with pytest.raises(ValueError):
        mint_token(signer, TYP_AGENT, {"iat": "now"}, now=T)


def test_mint_helpers_validate_inputs(signer: PrivateKey, agent_key: PrivateKey) -> None:
    cnf = agent_key.public
    good = {"iss": AP, "sub": "aauth:bot@agent.example", "cnf_jwk": cnf, "now": T}
    _verify(mint_agent_token(signer, **good), TYP_AGENT, signer.public, now=T)  # type: ignore[arg-type]
    bad_agent: list[dict[str, object]] = [
        {"iss": "https://agent.example/"},
        {"sub": "bot"},
        {"ps": "http://ps.example"},
        {"parent_agent": "aauth:x@agent.example"},
        {"lifetime": 86401},
        {"cnf_jwk": agent_key.private_jwk()},
        {"cnf_jwk": {"kty": "OKP"}},
        {"extra": {"iss": "https://evil.example"}},
        {"extra": {"jti": "x"}},
        {"jti": ""},
    ]
    for change in bad_agent:
        with pytest.raises(ValueError):
            mint_agent_token(signer, **{**good, **change})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        mint_person_token(
            signer, iss=PS, aud=RS, sub=SUB, cnf_jwk=cnf, now=T, extra={"scope": "data.read"}
        )
    with pytest.raises(ValueError):
        mint_person_token(signer, iss=PS, aud=RS, sub=SUB, cnf_jwk=cnf, now=T, lifetime=3601)
    with pytest.raises(ValueError):
        mint_resource_token(
            signer,
            iss=RS,
            aud=PS,
            ps=PS,
            sub=SUB,
            presented_jti="pt",
            agent_jkt=cnf.thumbprint,
            now=T,
            lifetime=301,
        )
    with pytest.raises(ValueError):
        mint_auth_token(
            signer, iss=PS, dwk=DWK_RESOURCE, aud=RS, ps=PS, sub=SUB, cnf_jwk=cnf, now=T
        )
    with pytest.raises(ValueError):
        mint_auth_token(signer, iss=PS, dwk=DWK_ACCESS, aud=RS, ps="", sub=SUB, cnf_jwk=cnf, now=T)


def test_mint_helpers_round_trip(signer: PrivateKey, agent_key: PrivateKey) -> None:
    cnf = agent_key.public
    person = mint_person_token(
        signer,
        iss=PS,
        aud=RS,
        sub=SUB,
        cnf_jwk=cnf,
        now=T,
        mission_s256="abc",
        tenant="acme",
        extra={"email": "a@example.com"},
    )
    payload = _verify(person, TYP_PERSON, signer.public, now=T + 3599, audience=RS)
    assert payload["cnf"] == {"jwk": dict(cnf.jwk)}
    assert (payload["mission_s256"], payload["tenant"], payload["email"]) == (
        "abc",
        "acme",
        "a@example.com",
    )
    resource = mint_resource_token(
        signer,
        iss=RS,
        aud=PS,
        ps=PS,
        sub=SUB,
        presented_jti=str(payload["jti"]),
        agent_jkt=cnf.thumbprint,
        now=T,
    )
    r = _verify(resource, TYP_RESOURCE, signer.public, now=T + 299, audience=PS)
    assert "scope" not in r and r["exp"] == T + 300
    auth = mint_auth_token(
        signer, iss="https://as.example", dwk=DWK_ACCESS, aud=RS, ps=PS, sub=SUB, cnf_jwk=cnf, now=T
    )
    assert _verify(auth, TYP_AUTH, signer.public, now=T, audience=RS)["iss"] == "https://as.example"


# --- sign_jwt --------------------------------------------------------------------------


def test_sign_jwt_keeps_exact_header_bytes(signer: PrivateKey) -> None:
    header = b'{ "kid": "test-key", "alg": "Ed25519", "typ": "aa-agent+jwt" }'
    payload = b'{"iss" : "https://agent.example", "name":"\xc3\xa9"}'
    token = sign_jwt(header, payload, signer)
    head, body, _ = token.split(".")
    assert base64.urlsafe_b64decode(head + "==") == header
    assert base64.urlsafe_b64decode(body + "==") == payload
    jwt = decode_unverified(token)
    verify_jwt_signature(jwt, signer.public)
    assert jwt.payload["name"] == "\u00e9"


def test_sign_jwt_mapping_order_and_compact_form(signer: PrivateKey) -> None:
    token = sign_jwt({"typ": "x", "alg": "Ed25519", "kid": "k"}, {"b": 1, "a": [1, 2]}, signer)
    head, body, _ = token.split(".")
    assert base64.urlsafe_b64decode(head + "==") == b'{"typ":"x","alg":"Ed25519","kid":"k"}'
    assert base64.urlsafe_b64decode(body + "==") == b'{"b":1,"a":[1,2]}'


@pytest.mark.parametrize(
    ("header", "payload"),
    [
        (b"not json", b"{}"),
        (b'{"alg":"Ed25519"}', b"[]"),
        (b'{"alg":"Ed25519","alg":"Ed25519"}', b"{}"),
        ({"typ": "x"}, {}),
    ],
)
def test_sign_jwt_rejects_bad_input(
    signer: PrivateKey, header: Mapping[str, object] | bytes, payload: Mapping[str, object] | bytes
) -> None:
    with pytest.raises(ValueError):
        sign_jwt(header, payload, signer)


@pytest.mark.parametrize("alg", ["Ed25519", "ES256"])
def test_minted_tokens_verify_under_joserfc(alg: str, agent_key: PrivateKey) -> None:
    # We sign without joserfc; an independent JOSE library must still accept every mint path.
    key = PrivateKey.generate(alg, kid="interop")
    cnf = agent_key.public
    tokens = [
        mint_agent_token(key, iss=AP, sub="aauth:bot@agent.example", cnf_jwk=cnf, now=T),
        mint_person_token(key, iss=PS, aud=RS, sub=SUB, cnf_jwk=cnf, now=T, tenant="t\u00e9"),
        mint_resource_token(
            key, iss=RS, aud=PS, ps=PS, sub=SUB, presented_jti="p", agent_jkt="j", now=T
        ),
        mint_auth_token(
            key, iss=PS, dwk=DWK_PERSON, aud=RS, ps=PS, sub=SUB, cnf_jwk=cnf, now=T, scope="a b"
        ),
        mint_token(key, TYP_AUTH, {"iss": PS}, now=T),
        sign_jwt({"kid": "interop", "alg": alg}, {"x": [1, {"y": None}]}, key),
        sign_jwt(b'{ "alg" : "%s" }' % alg.encode(), b'{"z": "\xc3\xa9"}', key),
    ]
    public = key.public.joserfc_key
    for token in tokens:
        ours = decode_unverified(token)
        compact = jws.deserialize_compact(token, public, algorithms=[alg])  # type: ignore[arg-type]
        assert compact.headers() == ours.header
        assert json.loads(compact.payload) == ours.payload
        decoded = jose_jwt.decode(token, public, algorithms=[alg])  # type: ignore[arg-type]
        assert decoded.claims == ours.payload
        head, body, sig = token.split(".")
        flipped = base64.urlsafe_b64decode(sig + "==")
        forged = f"{head}.{body}.{_b64(bytes([flipped[0] ^ 1]) + flipped[1:])}"
        with pytest.raises(BadSignatureError):
            jws.deserialize_compact(forged, public, algorithms=[alg])  # type: ignore[arg-type]


def test_token_error_codes() -> None:
    assert TokenError("expired_jwt", "x").code == "expired_jwt"
    with pytest.raises(ValueError):
        TokenError("invalid_signature", "not a token code")


def test_unverified_jwt_is_frozen() -> None:
    jwt = decode_unverified(f"{GOOD_HEAD}.{GOOD_BODY}.{GOOD_SIG}")
    assert isinstance(jwt, UnverifiedJWT)
    with pytest.raises(AttributeError):
        jwt.raw = "x"  # type: ignore[misc]
