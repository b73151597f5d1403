"""Requests spelled the way other AAuth stacks send them (GUIDE section 5).

A widely used Python/Java stack writes the ``Signature`` member as an unpadded base64url
string between the Byte Sequence colons, ``sig=:KREB7Ql...-WB-3Ad:``: not a valid Structured
Field, since ``-`` and ``_`` are outside the Byte Sequence alphabet (about 94% of its Ed25519
signatures contain one of them).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import replace

from aauth_server.http import HttpRequest

_MEMBER = re.compile(r"([a-z*][a-z0-9_\-.*]*)=:([A-Za-z0-9+/]*={0,2}):")


def urlsafe_unpadded(signature: bytes) -> str:
    return base64.urlsafe_b64encode(signature).rstrip(b"=").decode("ascii")


def respell_signature(request: HttpRequest) -> HttpRequest:
    """``request`` with its (padded standard base64) Signature re-spelled as that stack's."""
    headers = []
    for name, value in request.headers:
        if name.lower() == "signature":
            match = _MEMBER.fullmatch(value)
            assert match is not None, value
            raw = base64.b64decode(match.group(2))
            value = f"{match.group(1)}=:{urlsafe_unpadded(raw)}:"
        headers.append((name, value))
    return replace(request, headers=headers)


def signature_member(request: HttpRequest) -> str:
    value = request.header("signature")
    assert value is not None
    return value.partition("=")[2]


def dialect_request(sign: Callable[[int], HttpRequest]) -> HttpRequest:
    """A request from ``sign(attempt)`` whose re-spelled signature really uses ``-`` or ``_``
    (one attempt in about 16 spells without them, which any parser accepts).  ``attempt``
    should change what is signed, e.g. ``created=now - attempt``."""
    for attempt in range(40):
        request = respell_signature(sign(attempt))
        member = signature_member(request)
        if "-" in member or "_" in member:
            assert "=" not in member and "+" not in member and "/" not in member
            return request
    raise AssertionError("40 signatures without '-' or '_' in base64url")
