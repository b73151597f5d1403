from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jws
from joserfc.jwk import ECKey, OKPKey

from aauth_server.errors import SignatureFailure
from aauth_server.keys.jwk import (
    SUPPORTED_ALGS,
    PrivateKey,
    PublicKey,
    b64url_decode,
    b64url_encode,
    jwk_thumbprint,
    structurally_complete,
)
from tests.vectors import vectors_dir


def _load(name: str) -> Any:
    return json.loads((vectors_dir() / name).read_text())


DERIVED = _load("aauth-derived.json")
THUMBPRINTS = _load("aauth-go/jwk-thumbprint.json")["cases"]
ED_PUBLIC = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
EC_JWK = THUMBPRINTS[2]["jwk"]


@pytest.mark.parametrize("case", THUMBPRINTS, ids=[c["name"] for c in THUMBPRINTS])
def test_thumbprint_vectors(case: dict[str, Any]) -> None:
    assert jwk_thumbprint(case["jwk"]) == case["thumbprint"]


def test_agent_jkt_vector() -> None:
    assert jwk_thumbprint(DERIVED["agent_cnf_jwk"]) == DERIVED["agent_jkt"]
    assert PublicKey.from_jwk(DERIVED["agent_cnf_jwk"]).thumbprint == DERIVED["agent_jkt"]
    agent = PrivateKey.from_jwk(DERIVED["keys"]["agent"]["jwk_private"])
    assert agent.public.thumbprint == DERIVED["agent_jkt"]


def test_thumbprint_rejects_incomplete_or_unknown_keys() -> None:
    with pytest.raises(ValueError):
        jwk_thumbprint({"kty": "OKP", "crv": "Ed25519"})
    with pytest.raises(ValueError):
        jwk_thumbprint({"kty": "oct", "k": "AAAA"})
    rsa = {"kty": "RSA", "n": "sXch", "e": "AQAB"}
    assert structurally_complete(rsa)
    assert jwk_thumbprint(rsa) == jwk_thumbprint({**rsa, "alg": "RS256", "kid": "x"})


def test_structurally_complete() -> None:
    assert structurally_complete(ED_PUBLIC)
    assert structurally_complete(EC_JWK)
    assert not structurally_complete({**EC_JWK, "y": 5})
    assert not structurally_complete({"crv": "P-256", "x": "a", "y": "b"})
    assert not structurally_complete(["kty"])
    assert not structurally_complete({"kty": "AKP", "pub": "x"})


def test_b64url_round_trip_and_strictness() -> None:
    for raw in (b"", b"\x00", b"\xff\xfe", b"abc", bytes(range(64))):
        assert b64url_decode(b64url_encode(raw)) == raw
    assert "=" not in b64url_encode(b"\x00")
    assert b64url_decode("AA==") == b"\x00"  # correct padding tolerated
    for junk in ("A", "AA=", "AAA==", "A+B/", "AB C", "AB", "AAAA=", "Ab"):
        if junk in ("AB", "Ab"):
            # "AB" and "Ab" carry non-zero trailing bits: a second spelling of one byte.
            with pytest.raises(ValueError, match="non-canonical"):
                b64url_decode(junk)
            continue
        with pytest.raises(ValueError):
            b64url_decode(junk)


@pytest.mark.parametrize("role", ["ap", "ps", "resource"])
def test_vector_keys(role: str) -> None:
    entry = DERIVED["keys"][role]
    private = PrivateKey.from_jwk({**entry["jwk_private"], "kid": entry["kid"]})
    public = PublicKey.from_jwk(entry["jwk_public"])
    assert public.kid == entry["kid"]
    assert public.alg == "Ed25519"
    assert dict(public.jwk) == {k: v for k, v in entry["jwk_public"].items() if k != "use"}
    assert private.public == public
    assert private.public_jwk() == dict(public.jwk)
    assert private.private_jwk()["d"] == entry["jwk_private"]["d"]
    message = b"aauth vector message"
    assert public.verify(private.sign(message), message)
    assert not public.verify(private.sign(message), message + b"!")
    assert not public.verify(b"\x00" * 64, message)
    assert not public.verify(b"short", message)


def test_rfc9421_ed25519_signature_vector() -> None:
    vector = _load("rfc9421-b26.json")
    key = PrivateKey.from_jwk(vector["key"]["jwk_private"])
    assert key.public.thumbprint == vector["key"]["jwk_thumbprint_sha256"]
    base = vector["signature"]["signature_base"].encode()
    expected = base64.b64decode(vector["signature"]["signature_bytes_b64"])
    assert key.sign(base) == expected
    assert key.public.verify(expected, base)


def test_es256_round_trip_uses_raw_r_s() -> None:
    key = PrivateKey.generate("ES256", kid="ec-1")
    message = b"hello"
    signature = key.sign(message)
    assert len(signature) == 64
    assert key.public.verify(signature, message)
    assert not key.public.verify(signature, b"other")
    assert not key.public.verify(signature[:63], message)
    # A DER signature is not the wire form and must be refused.
    crypto = key._crypto
    assert isinstance(crypto, ec.EllipticCurvePrivateKey)
    der = crypto.sign(message, ec.ECDSA(hashes.SHA256()))
    assert not key.public.verify(der, message)
    reloaded = PrivateKey.from_jwk(key.private_jwk())
    assert reloaded.public.thumbprint == key.public.thumbprint
    assert reloaded.public.verify(reloaded.sign(message), message)
    assert key.public_jwk()["alg"] == "ES256" and key.public_jwk()["kid"] == "ec-1"


def test_es256_vector_key_from_rfc7515() -> None:
    key = PublicKey.from_jwk(EC_JWK)
    assert key.thumbprint == THUMBPRINTS[2]["thumbprint"]
    assert key.kty == "EC" and key.alg == "ES256"
    assert "use" not in key.jwk


def test_joserfc_interop() -> None:
    for alg in SUPPORTED_ALGS:
        key = PrivateKey.generate(alg, kid="k")
        assert isinstance(key.joserfc_key, (OKPKey, ECKey))
        token = jws.serialize_compact({"alg": alg}, b"payload", key.joserfc_key, algorithms=[alg])
        public = key.public.joserfc_key
        assert isinstance(public, (OKPKey, ECKey))
        assert "d" not in public.as_dict()
        obj = jws.deserialize_compact(token, public, algorithms=[alg])
        assert obj.payload == b"payload"
        assert key.public.joserfc_key is key.public.joserfc_key


def test_public_key_is_immutable_and_hashable() -> None:
    a = PublicKey.from_jwk({**ED_PUBLIC, "alg": "Ed25519", "kid": "one"})
    b = PublicKey.from_jwk({**ED_PUBLIC, "alg": "Ed25519", "kid": "two"})
    assert a == b and a.same_key(b) and len({a, b}) == 1
    with pytest.raises(AttributeError):
        a.alg = "ES256"
    with pytest.raises(TypeError):
        a.jwk["alg"] = "x"  # type: ignore[index]
    other = PrivateKey.generate().public
    assert a != other


def _code(jwk: object, **kwargs: Any) -> SignatureFailure:
    with pytest.raises(SignatureFailure) as info:
        PublicKey.from_jwk(jwk, **kwargs)  # type: ignore[arg-type]
    return info.value


ED = {**ED_PUBLIC, "alg": "Ed25519"}
BAD_KEYS: list[tuple[str, object, str]] = [
    ("not a dict", ["OKP"], "invalid_key"),
    ("no kty", {"crv": "Ed25519", "x": ED["x"], "alg": "Ed25519"}, "invalid_key"),
    ("no x", {"kty": "OKP", "crv": "Ed25519", "alg": "Ed25519"}, "invalid_key"),
    ("no y", {k: v for k, v in EC_JWK.items() if k != "y"}, "invalid_key"),
    ("undecodable x", {**ED, "x": "not*base64"}, "invalid_key"),
    ("short x", {**ED, "x": b64url_encode(b"\x01" * 31)}, "invalid_key"),
    ("off curve", {**EC_JWK, "y": b64url_encode(b"\x01" * 32)}, "invalid_key"),
    ("private d", {**ED, "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}, "invalid_key"),
    ("no alg", ED_PUBLIC, "unsupported_algorithm"),
    ("alg none", {**ED, "alg": "none"}, "unsupported_algorithm"),
    ("EdDSA", {**ED, "alg": "EdDSA"}, "unsupported_algorithm"),
    ("HS256 alg", {**ED, "alg": "HS256"}, "unsupported_algorithm"),
    ("oct", {"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"}, "unsupported_algorithm"),
    ("RSA", {"kty": "RSA", "n": "sXch", "e": "AQAB", "alg": "RS256"}, "unsupported_algorithm"),
    ("ML-DSA", {"kty": "AKP", "alg": "ML-DSA-44", "pub": "AAAA"}, "unsupported_algorithm"),
    ("Ed25519 on EC", {**EC_JWK, "alg": "Ed25519"}, "invalid_key"),
    ("ES256 on OKP", {**ED, "alg": "ES256"}, "invalid_key"),
    ("ES256 on P-384", {**EC_JWK, "crv": "P-384"}, "invalid_key"),
    ("Ed448 crv", {**ED, "crv": "Ed448"}, "invalid_key"),
    ("kid not string", {**ED, "kid": 7}, "invalid_key"),
]


@pytest.mark.parametrize(("name", "jwk", "code"), BAD_KEYS, ids=[b[0] for b in BAD_KEYS])
def test_from_jwk_error_codes(name: str, jwk: object, code: str) -> None:
    failure = _code(jwk)
    assert failure.error == code
    assert failure.status == 401
    if code == "unsupported_algorithm":
        assert failure.accept_algs == SUPPORTED_ALGS
        assert ("Accept-Signature-Alg", "Ed25519, ES256") in failure.response_headers()
    else:
        assert failure.accept_algs is None


def test_accept_algs_narrows_and_is_advertised() -> None:
    failure = _code(EC_JWK, accept_algs=["Ed25519", "PS256"])
    assert failure.error == "unsupported_algorithm"
    assert failure.accept_algs == ("Ed25519",)


def test_eddsa_compatibility_setting() -> None:
    key = PublicKey.from_jwk({**ED, "alg": "EdDSA"}, allow_eddsa=True)
    assert key.alg == "Ed25519" and key.jwk["alg"] == "Ed25519"
    # The setting only maps Ed25519 keys; it never makes EdDSA mean another curve.
    assert _code({**EC_JWK, "alg": "EdDSA"}, allow_eddsa=True).error == "unsupported_algorithm"


def test_private_key_from_jwk_checks_consistency() -> None:
    ap = DERIVED["keys"]["ap"]["jwk_private"]
    ps = DERIVED["keys"]["ps"]["jwk_private"]
    with pytest.raises(ValueError):
        PrivateKey.from_jwk({**ap, "d": ps["d"]})
    with pytest.raises(ValueError):
        PrivateKey.from_jwk({k: v for k, v in ap.items() if k != "d"})
    with pytest.raises(ValueError):
        PrivateKey.from_jwk({**ap, "alg": "ES256"})
    with pytest.raises(ValueError):
        PrivateKey.generate("RS256")
    assert PrivateKey.from_jwk(ap).alg == "Ed25519"


def test_structurally_complete_refuses_an_unhashable_kty() -> None:
    from aauth_server.keys.jwk import structurally_complete

    assert structurally_complete({"kty": ["OKP"], "crv": "Ed25519", "x": "AA"}) is False
    assert structurally_complete({"kty": {"a": 1}}) is False
