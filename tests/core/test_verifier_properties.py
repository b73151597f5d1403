"""Properties of the resource guard under random signature fields.

Whatever arrives in Signature-Input, Signature and Signature-Key, the guard either returns
an identity (only for a request a real agent signed) or raises an :class:`AAuthError` with a
4xx status and an error code.  Any other exception is a bug.
"""

from __future__ import annotations

import base64
import functools
import json
import string
from typing import Any

import http_sf
from hypothesis import given, settings
from hypothesis import strategies as st

from aauth_server.errors import AAuthError
from aauth_server.http import HttpRequest
from aauth_server.resource import ResourceGuard
from aauth_server.resource.guard import AgentIdentity
from tests.hostile import NOW, HostileWorld, add_line, b64, hostile_world, set_header
from tests.support import RESOURCE

FIELDS = ("Signature-Input", "Signature", "Signature-Key")
REQUIRED = ("@method", "@authority", "@path", "signature-key")
SIGNABLE = (*REQUIRED, "@query", "@target-uri", "@scheme", "@request-target")

PROPERTY = settings(max_examples=300, deadline=None)


@functools.cache
def _world() -> tuple[HostileWorld, ResourceGuard, HttpRequest]:
    world = hostile_world()
    return world, ResourceGuard(world.resource_config()), world.signed()


# -- strategies --------------------------------------------------------------------------------

FRAGMENTS = (
    "sig", "other", "=", "(", ")", " ", ",", ";", ":", "\"", "\\", "?1", "?0", "*", "@",
    '"@method"', '"@authority"', '"@path"', '"signature-key"', '"content-digest"', '"@query"',
    "created=", "expires=", "keyid=", "alg=", "nonce=", "tag=", ";sf", ";key=", ";req", ";bs",
    "jwt", "hwk", "jwks_uri", "cached", "jwt=", "cache", "id=", "dwk=", "kid=", "::", ":AAAA:",
    "1.5", "-1", "999999999999999", "%\"", "\t", "\x00", "\u00e9",
)  # fmt: skip
ASCII = st.text(alphabet=string.printable, max_size=12)
NUMBER = st.integers(-(10**16), 10**16).map(str)
SF_LIKE = st.lists(st.one_of(st.sampled_from(FRAGMENTS), ASCII, NUMBER), max_size=30).map("".join)
TEXT = st.text(max_size=120)
BINARYISH = st.binary(max_size=120).map(lambda raw: raw.decode("latin-1"))

CLAIM_NAMES = ("alg", "typ", "kid", "iss", "dwk", "sub", "jti", "iat", "exp", "cnf", "jwk", "crit")
CLAIM_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63),
    st.text(max_size=20),
    st.sampled_from(
        ["Ed25519", "EdDSA", "none", "aa-agent+jwt", "ap-1", "https://agent.example",
         "aauth-agent.json", "aauth:assistant@agent.example", NOW, NOW + 60]
    ),
    st.fixed_dictionaries({"jwk": st.dictionaries(st.sampled_from(["kty", "crv", "x", "alg"]),
                                                  st.text(max_size=10))}),
)  # fmt: skip
JSON_SEGMENT = st.one_of(
    st.dictionaries(st.sampled_from(CLAIM_NAMES), CLAIM_VALUES, max_size=8).map(
        lambda d: json.dumps(d).encode()
    ),
    st.binary(max_size=40),
).map(b64)
JWT_SHAPED = st.tuples(JSON_SEGMENT, JSON_SEGMENT, st.binary(max_size=70).map(b64)).map(".".join)

COMPONENT = st.one_of(st.sampled_from(SIGNABLE), st.text(max_size=10))
#: Within the Structured Field Integer range, so a signer can serialise it.
CREATED = st.one_of(st.integers(NOW - 200, NOW + 200), st.integers(-(10**15) + 1, 10**15 - 1))
SIGNATURE_INPUT = st.builds(
    lambda label, comps, created: (
        f"{label}=(" + " ".join(f'"{c}"' for c in comps) + f");created={created}"
    ),
    st.sampled_from(["sig", "other", "Sig", ""]),
    st.lists(COMPONENT, max_size=8),
    st.one_of(CREATED, st.integers(-(2**60), 2**60)),
)
SIGNATURE = st.builds(
    lambda label, raw: f"{label}=:{base64.b64encode(raw).decode()}:",
    st.sampled_from(["sig", "other"]),
    st.binary(max_size=80),
)
SIGNATURE_KEY = st.builds(
    lambda label, scheme, jwt, extra: f'{label}={scheme};jwt="{jwt}"{extra}',
    st.sampled_from(["sig", "other"]),
    st.sampled_from(["jwt", "hwk", "jkt-jwt", "self-jwt", "x", "JWT"]),
    JWT_SHAPED,
    st.one_of(st.just(""), SF_LIKE),
)
VALUE = st.one_of(TEXT, BINARYISH, SF_LIKE, SIGNATURE_INPUT, SIGNATURE, SIGNATURE_KEY, JWT_SHAPED)


def _outcome(guard: ResourceGuard, request: HttpRequest) -> AgentIdentity | AAuthError | None:
    try:
        return guard.check(request)
    except AAuthError as exc:
        return exc


def _assert_refused(outcome: object) -> None:
    assert isinstance(outcome, AAuthError), f"accepted: {outcome!r}"
    assert 400 <= outcome.status < 500
    assert outcome.error
    response = outcome.to_response()
    assert response.status == outcome.status


def _extra_member_only(name: str, request: HttpRequest) -> bool:
    """RFC 9421 lets a request carry other signatures: a line that only adds members beside
    an unchanged ``sig`` (to the uncovered Signature-Input or Signature) may be ignored."""
    if name == "Signature-Key":
        return False
    _, _, valid = _world()
    try:
        before: Any = http_sf.parse(str(valid.header(name)).encode(), tltype="dictionary")
        after: Any = http_sf.parse(str(request.header(name)).encode("ascii"), tltype="dictionary")
    except (UnicodeEncodeError, ValueError):
        return False
    return bool(after.get("sig") == before["sig"])


# -- properties --------------------------------------------------------------------------------


@PROPERTY
@given(st.fixed_dictionaries({name: st.one_of(st.none(), VALUE) for name in FIELDS}))
def test_random_fields_alone_are_refused(values: dict[str, str | None]) -> None:
    _, guard, _ = _world()
    headers = [(name, value) for name, value in values.items() if value is not None]
    request = HttpRequest("GET", RESOURCE + "/whoami", headers)
    _assert_refused(_outcome(guard, request))


@PROPERTY
@given(st.sampled_from(FIELDS), VALUE, st.booleans())
def test_random_field_spliced_into_valid_request(name: str, value: str, append: bool) -> None:
    _, guard, valid = _world()
    original = valid.header(name)
    request = add_line(valid, name, value) if append else set_header(valid, name, value)
    outcome = _outcome(guard, request)
    if isinstance(outcome, AgentIdentity):
        legit = value == original if not append else _extra_member_only(name, request)
        assert legit, f"spliced {name}: {value!r} was accepted"
        return
    _assert_refused(outcome)


@PROPERTY
@given(st.lists(st.sampled_from(SIGNABLE), unique=True, max_size=len(SIGNABLE)), CREATED)
def test_correctly_signed_component_lists(components: list[str], created: int) -> None:
    """A real signature over random components and ``created``: the verdict is predictable."""
    world, guard, _ = _world()
    request = world.signed(path="/whoami?q=1", components=components, created=created)
    outcome = _outcome(guard, request)
    if not set(REQUIRED) <= set(components):
        expected: str | None = "invalid_input"
    elif created - NOW > 60:
        expected = "clock_skew"
    elif NOW - created > 60:
        expected = "invalid_signature"
    else:
        expected = None
    if expected is None:
        assert isinstance(outcome, AgentIdentity), outcome
        assert outcome.agent == world.agent_id
        return
    _assert_refused(outcome)
    assert isinstance(outcome, AAuthError)
    assert outcome.error == expected


def test_the_untouched_request_is_accepted() -> None:
    """The baseline the spliced property compares against really verifies."""
    world, guard, valid = _world()
    identity = guard.check(valid)
    assert identity is not None and identity.agent == world.agent_id
