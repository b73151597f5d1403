"""RFC 9530 Content-Digest: what we emit and what we accept."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from aauth_server.errors import SignatureFailure
from aauth_server.signatures import content_digest, verify_content_digest
from tests.vectors import vectors_dir

BODY = b'{"resource":"https://resource.example","capabilities":["interaction"]}'
SHA256 = "sha-256=:" + base64.b64encode(hashlib.sha256(BODY).digest()).decode() + ":"
SHA512 = "sha-512=:" + base64.b64encode(hashlib.sha512(BODY).digest()).decode() + ":"
WRONG256 = "sha-256=:" + base64.b64encode(hashlib.sha256(b"other").digest()).decode() + ":"


def test_content_digest_matches_the_vectors() -> None:
    derived = json.loads((vectors_dir() / "aauth-derived.json").read_text(encoding="utf-8"))
    for case in derived["signed_requests"]:
        body = case["inputs"]["request"]["body"]
        if body is not None:
            assert content_digest(body.encode()) == case["expected"]["headers"]["Content-Digest"]
    b26 = json.loads((vectors_dir() / "rfc9421-b26.json").read_text(encoding="utf-8"))["request"]
    assert content_digest(b26["body"].encode(), "sha-512") == b26["headers"]["Content-Digest"]


def test_content_digest_of_empty_body() -> None:
    assert content_digest(b"") == "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"


def test_content_digest_rejects_unknown_algorithm() -> None:
    with pytest.raises(ValueError):
        content_digest(BODY, "md5")


@pytest.mark.parametrize(
    "value",
    [
        SHA256,
        SHA512,
        f"{SHA256}, {SHA512}",
        f"{SHA512}, unixsum=:AAAA:",
        f'md5="whatever", {SHA256}',
        f"{SHA256};param=1",
    ],
)
def test_accepted_digests(value: str) -> None:
    verify_content_digest(value, BODY)


@pytest.mark.parametrize(
    "value",
    [
        None,  # absent
        "",  # no member at all
        "sha-256=:AAAA",  # malformed Byte Sequence
        "sha-256",  # Boolean member
        'sha-256="3U1ftIuj9LAZ1bBe"',  # String, not Byte Sequence
        "md5=:AAAA:",  # only an unknown algorithm
        "sha-384=:AAAA:, unixsum=:AAAA:",
        WRONG256,  # mismatch
        f"{SHA512}, {WRONG256}",  # one supported member mismatches
        f"{WRONG256}, {SHA256}",  # duplicate key: "last wins" must not rescue it
        "sha-256=:"
        + base64.b64encode(hashlib.sha256(BODY).digest()[:16]).decode()
        + ":",  # truncated
        "sha-256=:\u00e9:",  # not ASCII
    ],
)
def test_rejected_digests(value: str | None) -> None:
    with pytest.raises(SignatureFailure) as exc:
        verify_content_digest(value, BODY)
    assert exc.value.error == "invalid_signature"
    assert exc.value.status == 401


def test_digest_mismatch_on_changed_body() -> None:
    with pytest.raises(SignatureFailure):
        verify_content_digest(SHA256, BODY + b" ")
