"""Cross-check against http_message_signatures, an independent RFC 9421 implementation.

The oracle insists on a ``keyid`` parameter when verifying and checks ``created`` against
the real clock (no injection): we sign with a ``keyid`` and a fixed past ``created`` and
pass ``max_age=None``.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    MappingKeyResolver,
    algorithms,
)
from http_message_signatures import InvalidSignature as OracleInvalidSignature
from http_message_signatures.structures import CaseInsensitiveDict

from aauth_server.errors import SignatureFailure
from aauth_server.http import HttpRequest
from aauth_server.signatures import (
    AAUTH_COMPONENTS,
    BODY_COMPONENTS,
    parse_signature,
    sign_request,
    signature_base,
    verify_signature,
)

CREATED = 1730217600
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUBLIC = KEY.public_key()
KEYID = "test-key"
SIGNATURE_KEY = 'sig=jwt; jwt="eyJhbGciOiJFZDI1NTE5In0.e30.c2ln"'
BODY = b'{"resource_token":"x"}'


class OurSigner:
    alg = "Ed25519"

    def sign(self, data: bytes) -> bytes:
        return KEY.sign(data)


class OurVerifier:
    alg = "Ed25519"

    def __init__(self, key: Ed25519PublicKey = PUBLIC) -> None:
        self._key = key

    def verify(self, signature: bytes, data: bytes) -> bool:
        try:
            self._key.verify(signature, data)
        except InvalidSignature:
            return False
        return True


class OracleRequest:
    """The message shape the oracle reads: method, url and a header mapping."""

    def __init__(self, request: HttpRequest) -> None:
        self.method = request.method
        self.url = request.url
        self.headers = CaseInsensitiveDict(request.headers)  # type: ignore[no-untyped-call]


def _oracle_resolver() -> MappingKeyResolver:
    return MappingKeyResolver(public_keys={KEYID: PUBLIC}, private_keys={KEYID: KEY})


def _oracle_verify(request: HttpRequest, body: bytes | None, required: Sequence[str]) -> None:
    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.ED25519, key_resolver=_oracle_resolver()
    )
    results = verifier.verify(
        OracleRequest(request), max_age=None, body=body, require_components=required
    )
    assert len(results) == 1


def _ours_signed(
    method: str, url: str, components: Sequence[str], body: bytes = b""
) -> HttpRequest:
    headers = [("Signature-Key", SIGNATURE_KEY)]
    if body:
        headers.append(("Content-Type", "application/json"))
    request = HttpRequest(method, url, headers, body)
    lines = sign_request(request, OurSigner(), components=components, created=CREATED, keyid=KEYID)
    return HttpRequest(method, url, [*headers, *lines], body)


def test_we_sign_oracle_verifies_get() -> None:
    request = _ours_signed("GET", "https://resource.example/api/documents", AAUTH_COMPONENTS)
    _oracle_verify(request, None, AAUTH_COMPONENTS)


def test_we_sign_oracle_verifies_body_and_digest() -> None:
    components = AAUTH_COMPONENTS + BODY_COMPONENTS
    request = _ours_signed("POST", "https://ps.example/token", components, BODY)
    _oracle_verify(request, BODY, components)
    with pytest.raises(OracleInvalidSignature):
        _oracle_verify(
            HttpRequest(request.method, request.url, request.headers, BODY + b" "),
            BODY + b" ",
            components,
        )


def test_we_sign_every_derived_component_oracle_verifies() -> None:
    components = (
        "@method",
        "@target-uri",
        "@authority",
        "@scheme",
        "@request-target",
        "@path",
        "@query",
    )
    for url in (
        "https://Example.COM:8443/a%20b/c?x=1&y=%2F",
        "https://example.com:443/",
        "http://example.com:80/p?",
    ):
        _oracle_verify(_ours_signed("GET", url, components), None, components)


def _oracle_signed(
    method: str, url: str, components: Sequence[str], body: bytes | None, *, include_alg: bool
) -> HttpRequest:
    headers = [("Signature-Key", SIGNATURE_KEY)]
    if body is not None:
        headers.append(("Content-Type", "application/json"))
    message = OracleRequest(HttpRequest(method, url, headers))
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519, key_resolver=_oracle_resolver()
    )
    signer.sign(
        message,
        key_id=KEYID,
        created=datetime.datetime.fromtimestamp(CREATED, tz=datetime.UTC),
        label="sig",
        include_alg=include_alg,
        covered_component_ids=components,
        body=body,
    )
    return HttpRequest(method, url, list(message.headers.items()), body or b"")


@pytest.mark.parametrize("include_alg", [True, False])
def test_oracle_signs_we_verify_get(include_alg: bool) -> None:
    request = _oracle_signed(
        "GET", "https://resource.example/api", AAUTH_COMPONENTS, None, include_alg=include_alg
    )
    parsed = parse_signature(request)
    assert parsed.keyid == KEYID
    assert parsed.alg == ("ed25519" if include_alg else None)
    assert parsed.created == CREATED
    verify_signature(request, parsed, OurVerifier())


def test_oracle_signs_we_verify_body_and_digest() -> None:
    request = _oracle_signed(
        "POST",
        "https://ps.example/token",
        (*AAUTH_COMPONENTS, "content-type"),
        BODY,
        include_alg=False,
    )
    parsed = parse_signature(request)
    # The oracle appends the digest it generated to the covered components.
    assert parsed.components == (*AAUTH_COMPONENTS, "content-type", "content-digest")
    verify_signature(request, parsed, OurVerifier())
    tampered = HttpRequest(request.method, request.url, request.headers, b'{"resource_token":"y"}')
    with pytest.raises(SignatureFailure) as exc:
        verify_signature(tampered, parse_signature(tampered), OurVerifier())
    assert exc.value.error == "invalid_signature"


def test_oracle_and_we_build_the_same_base_for_sf_and_key_components() -> None:
    # The oracle knows no SF type for Signature-Key, so `sf` is exercised on Content-Digest.
    components = ('"content-digest";sf', '"signature-key";key="sig"', "@query", "@target-uri")
    request = _oracle_signed("POST", "https://e.example/p?a=1", components, BODY, include_alg=False)
    parsed = parse_signature(request)
    verify_signature(request, parsed, OurVerifier())
    lines = signature_base(request, parsed).split(b"\n")
    assert lines[0].startswith(b'"content-digest";sf: sha-256=:')
    assert lines[1:4] == [
        b'"signature-key";key="sig": jwt;jwt="eyJhbGciOiJFZDI1NTE5In0.e30.c2ln"',
        b'"@query": ?a=1',
        b'"@target-uri": https://e.example/p?a=1',
    ]


def test_oracle_signature_with_another_key_fails_here() -> None:
    request = _oracle_signed(
        "GET", "https://resource.example/api", AAUTH_COMPONENTS, None, include_alg=False
    )
    other = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33))).public_key()
    with pytest.raises(SignatureFailure):
        verify_signature(request, parse_signature(request), OurVerifier(other))
