"""The Signature-Key header: parsing, per-scheme validation, serialisation."""

from __future__ import annotations

import json
import random
import re
import string
from typing import Any

import pytest

from aauth_server.errors import SignatureFailure
from aauth_server.fields import FieldError
from aauth_server.signatures import (
    SCHEMES,
    SchemeSpec,
    SignatureKey,
    parse_signature_key,
    register_scheme,
    select_signature_key,
    serialize_signature_key,
)
from aauth_server.signatures import signature_key as signature_key_module
from tests.scans import ScanCountingOrderedDict
from tests.vectors import vectors_dir

GO_CASES = json.loads(
    (vectors_dir() / "aauth-go" / "signature-key.json").read_text(encoding="utf-8")
)["cases"]


@pytest.mark.parametrize("case", GO_CASES, ids=[c["header"] for c in GO_CASES])
def test_aauth_go_signature_key(case: dict[str, Any]) -> None:
    error = case.get("error")
    if error == "invalid_signature":
        with pytest.raises(SignatureFailure) as exc:
            select_signature_key(case["header"], "sig")
        assert exc.value.error == "invalid_signature"
        return
    key = select_signature_key(case["header"], "sig")
    assert key.scheme == case["scheme"]
    # aauth-go reports only the String parameters; the bare `cache` flag is ours to keep.
    assert {k: v for k, v in key.params.items() if not isinstance(v, bool)} == case["params"]
    if error == "unsupported_scheme":
        assert key.scheme != "jwt"
    else:
        assert error is None and key.scheme == "jwt"


def test_cache_flag_is_a_boolean() -> None:
    key = select_signature_key('sig1=hwk;kty="OKP", sig=jwt;jwt="a.b.c";cache', "sig")
    assert key.params == {"jwt": "a.b.c", "cache": True}


def test_parse_keeps_every_token_member_and_remembers_the_rest() -> None:
    parsed = parse_signature_key(
        'a=jwt;jwt="x", b="jwt", c=(jwt), d=hwk; kty="OKP";  alg="Ed25519"'
    )
    assert set(parsed) == {"a", "d"}
    assert parsed["d"] == SignatureKey("d", "hwk", {"kty": "OKP", "alg": "Ed25519"})
    assert parsed.non_token_labels == frozenset({"b", "c"})
    for label in ("b", "c"):
        with pytest.raises(SignatureFailure) as exc:
            select_signature_key('a=jwt;jwt="x", b="jwt", c=(jwt)', label)
        assert exc.value.error == "invalid_signature"


def test_parameter_types() -> None:
    key = parse_signature_key('sig=x;s="v";b=:AAE=:;t;f=?0;i=7;tok=v;d=1.5')["sig"]
    assert key.params == {"s": "v", "b": b"\x00\x01", "t": True, "f": False, "i": 7}
    assert key.other_params == frozenset({"tok", "d"})


@pytest.mark.parametrize(
    "value", ["sig=jwt;jwt=", "sig=", "sig=jwt,,", "=jwt", 'sig=jwt;jwt="\u00e9"']
)
def test_parse_rejects_invalid_dictionaries(value: str) -> None:
    with pytest.raises(FieldError):
        parse_signature_key(value)
    with pytest.raises(SignatureFailure) as exc:
        select_signature_key(value, "sig")
    assert exc.value.error == "invalid_signature"


def test_absent_header_is_invalid_signature() -> None:
    with pytest.raises(SignatureFailure) as exc:
        select_signature_key(None, "sig")
    assert exc.value.error == "invalid_signature"


X5T = "bWcoon4QTVn8Q6xiY0ekMD6L8bNLMkuDV2KtvsFc1nM="


@pytest.mark.parametrize(
    "value",
    [
        'sig=hwk;kty="OKP";crv="Ed25519";x="JrQLj5P";alg="Ed25519"',
        'sig=hwk;kty="RSA";n="AQAB";e="AQAB";alg="PS256"',
        'sig=jkt-jwt;jwt="eyJ..."',
        'sig=jkt-jwt;jwt="eyJ...";cache',
        'sig=jwks_uri;id="https://client.example";dwk="example-configuration";kid="key-1"',
        'sig=jwks;url="https://client.example/keys.jwks";kid="key-1"',
        'sig=jwt;jwt="eyJ...";cache=?0',
        'sig=self-jwt;jwt="eyJ..."',
        f'sig=x509;x5u="https://client.example/.well-known/cert.pem";x5t=:{X5T}:',
        'sig=cached;cid="2f9c8a1e-a7b3"',
        'sig=jwt;jwt="eyJ...";unknown-param=1',
        "sig=x-unregistered;anything=?1",
    ],
)
def test_valid_members_of_every_scheme(value: str) -> None:
    assert select_signature_key(value, "sig").label == "sig"


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ('sig=hwk;kty="OKP";crv="Ed25519";x="a"', "invalid_signature"),  # alg required since -08
        ('sig=hwk;kty="OKP";alg=Ed25519', "invalid_signature"),  # alg as a Token
        ('sig=hwk;kty="OKP";alg="Ed25519";crv=1', "invalid_signature"),
        ('sig=hwk;kty="OKP";alg="Ed25519";kid="k"', "invalid_key"),
        ('sig=hwk;kty="OKP";alg="Ed25519";kid=k', "invalid_key"),
        ('sig=jwt;jwt="x";cache="yes"', "invalid_signature"),
        ("sig=jwt;jwt=:AAAA:", "invalid_signature"),
        ('sig=jwks_uri;id="https://ps.example";dwk="aauth-person.json"', "invalid_signature"),
        ('sig=jwks;url="https://x.example/jwks"', "invalid_signature"),
        ('sig=x509;x5u="https://x.example/c.pem";x5t="bWco"', "invalid_signature"),
        ("sig=cached", "invalid_signature"),
        ("sig=self-jwt;jwt=?1", "invalid_signature"),
    ],
)
def test_scheme_parameter_errors(value: str, code: str) -> None:
    with pytest.raises(SignatureFailure) as exc:
        select_signature_key(value, "sig")
    assert exc.value.error == code


def test_only_the_selected_member_is_validated() -> None:
    # sig1 is an invalid hwk member, but nobody asked for it.
    assert select_signature_key('sig1=hwk, sig=jwt;jwt="x"', "sig").scheme == "jwt"
    with pytest.raises(SignatureFailure):
        select_signature_key('sig1=hwk, sig=jwt;jwt="x"', "sig1")


def test_register_scheme_adds_validation() -> None:
    spec = SchemeSpec("x-test", required={"v": int}, optional={}, forbidden=frozenset({"bad"}))
    register_scheme(spec)
    try:
        assert select_signature_key("sig=x-test;v=1", "sig").params == {"v": 1}
        with pytest.raises(SignatureFailure) as exc:
            select_signature_key("sig=x-test;v=?1", "sig")
        assert exc.value.error == "invalid_signature"
        with pytest.raises(SignatureFailure) as exc:
            select_signature_key("sig=x-test;v=1;bad", "sig")
        assert exc.value.error == "invalid_key"
    finally:
        del SCHEMES["x-test"]


def test_registry_matches_the_digest_table() -> None:
    assert set(SCHEMES) == {
        "hwk",
        "jkt-jwt",
        "jwks_uri",
        "jwks",
        "jwt",
        "self-jwt",
        "x509",
        "cached",
    }
    assert dict(SCHEMES["hwk"].required) == {"kty": str, "alg": str}
    assert SCHEMES["hwk"].forbidden == frozenset({"kid"})
    assert dict(SCHEMES["jwt"].optional) == {"cache": bool}
    assert dict(SCHEMES["x509"].required) == {"x5u": str, "x5t": bytes}


def test_serialize_canonical_form() -> None:
    entries = [
        SignatureKey("sig1", "jwt", {"jwt": "eyJ.a.b", "cache": True}),
        SignatureKey(
            "sig2", "jwks_uri", {"id": "https://example.com", "dwk": "eg-config", "kid": "k1"}
        ),
        SignatureKey("sig3", "x509", {"x5u": "https://c.example/c.pem", "x5t": b"\x01\x02"}),
    ]
    text = serialize_signature_key(entries)
    assert text == (
        'sig1=jwt;jwt="eyJ.a.b";cache, '
        'sig2=jwks_uri;id="https://example.com";dwk="eg-config";kid="k1", '
        'sig3=x509;x5u="https://c.example/c.pem";x5t=:AQI=:'
    )
    assert list(parse_signature_key(text).values()) == entries


def test_serialize_rejects_what_cannot_be_a_field() -> None:
    with pytest.raises(FieldError):
        serialize_signature_key([SignatureKey("Sig", "jwt", {"jwt": "x"})])
    with pytest.raises(FieldError):
        serialize_signature_key([SignatureKey("sig", "jwt", {"jwt": "caf\u00e9"})])
    with pytest.raises(ValueError):
        serialize_signature_key([SignatureKey("sig", "jwt", {}), SignatureKey("sig", "jwt", {})])


def test_aauth_go_headers_round_trip_to_compact_form() -> None:
    key = select_signature_key('sig=jwt; jwt="eyJhbGciOiJFZDI1NTE5In0.e30.c2ln"', "sig")
    assert serialize_signature_key([key]) == 'sig=jwt;jwt="eyJhbGciOiJFZDI1NTE5In0.e30.c2ln"'


def test_parse_cache_is_bounded_and_reused() -> None:
    cache = signature_key_module._cache
    cache.clear()
    first = select_signature_key('sig=jwt;jwt="same"', "sig")
    assert select_signature_key('sig=jwt;jwt="same"', "sig") is first
    for i in range(signature_key_module._CACHE_MAX + 50):
        select_signature_key(f'sig=jwt;jwt="t{i}"', "sig")
    assert len(cache) == signature_key_module._CACHE_MAX
    assert 'sig=jwt;jwt="same"' not in cache


def test_parse_cache_evicts_the_oldest_without_walking_the_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every new agent token is a new Signature-Key value: once the cache is full each one
    # evicts, and an eviction that iterates the table (pop(next(iter(dict)))) walks the
    # holes earlier evictions left in a plain dict.
    cache: ScanCountingOrderedDict = ScanCountingOrderedDict()
    monkeypatch.setattr(signature_key_module, "_cache", cache)
    size = signature_key_module._CACHE_MAX
    for i in range(size + 50):
        select_signature_key(f'sig=jwt;jwt="v{i}"', "sig")
    ScanCountingOrderedDict.scans = 0
    for i in range(size + 50, 2 * size):
        select_signature_key(f'sig=jwt;jwt="v{i}"', "sig")
    assert ScanCountingOrderedDict.scans == 0
    assert len(cache) == size
    assert next(iter(cache)) == f'sig=jwt;jwt="v{size}"'  # the oldest ones went first


# The fast form's definition, as one regex: the fast path must answer exactly for these.
_REFERENCE = re.compile(r'([a-z*][a-z0-9_\-.*]{0,63})=jwt; ?jwt="([A-Za-z0-9_\-.]{1,16384})"')
_TOKEN = "eyJhbGciOiJFZDI1NTE5In0.eyJpc3MiOiJodHRwczovL2FwLmV4YW1wbGUifQ.c2lnbmF0dXJl-_"


def _fast_form_cases() -> list[str]:
    rng = random.Random(9)
    base = f'sig=jwt;jwt="{_TOKEN}"'
    cases = [
        base,
        f'sig=jwt; jwt="{_TOKEN}"',
        f'sig=jwt;  jwt="{_TOKEN}"',
        f'*a.b-c_d=jwt;jwt="{_TOKEN}"',
        "a" * 64 + f'=jwt;jwt="{_TOKEN}"',
        "a" * 65 + f'=jwt;jwt="{_TOKEN}"',
        'sig=jwt;jwt=""',
        'sig=jwt;jwt="',
        'sig=jwt;jwt="x"',
        'sig=jwt;jwt="' + "a" * 16384 + '"',
        'sig=jwt;jwt="' + "a" * 16385 + '"',
        f'sig=jwt;jwt="{_TOKEN}" ',
        f'sig=jwt;jwt="{_TOKEN}"\n',
        f'sig=jwt;jwt="{_TOKEN}"x"',
        f'sig=jwt;jwt="{_TOKEN}", other=jwt;jwt="{_TOKEN}"',
        f'Sig=jwt;jwt="{_TOKEN}"',
        f"sig=jwt;jwt={_TOKEN}",
        f'sig=jwt;jwt="{_TOKEN}";cache=?1',
        f'sig=jwt;jwt="{_TOKEN}\u00e9"',
        f'sig=jwt;jwt="{_TOKEN}\uff41"',
        "",
        '"',
    ]
    alphabet = string.printable + "\u00e9\u0100\uff41"
    for _ in range(3000):
        chars = list(base)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(chars) + 1)
            roll = rng.random()
            if roll < 0.4 and chars:
                chars[min(at, len(chars) - 1)] = rng.choice(alphabet)
            elif roll < 0.7:
                chars.insert(at, rng.choice(alphabet))
            elif chars:
                del chars[min(at, len(chars) - 1)]
        cases.append("".join(chars))
    return cases


def _members(keys: Any) -> tuple[object, ...]:
    return (
        {k: (v.label, v.scheme, dict(v.params), v.other_params) for k, v in keys.items()},
        keys.non_token_labels,
    )


def test_fast_form_is_exactly_the_reference_form_and_parses_as_the_full_parser(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast_answers = 0
    for value in _fast_form_cases():
        reference = _REFERENCE.fullmatch(value)
        fast = signature_key_module._fast_jwt(value)
        assert fast == (None if reference is None else reference.groups()), value
        if fast is None:
            continue
        fast_answers += 1
        via_fast = parse_signature_key(value)
        with monkeypatch.context() as patched:
            patched.setattr(signature_key_module, "_fast_jwt", lambda _value: None)
            via_full = parse_signature_key(value)
        assert _members(via_fast) == _members(via_full), value
    assert fast_answers > 100  # the random edits keep many values in the fast form
