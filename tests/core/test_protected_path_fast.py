"""The protected request's shortcuts (issue 9 item 6) answer exactly as the code they skip.

* ``RequestVerifier.verify_fast`` against ``verify_cached(request, fast_prelude(request))``
  when that answers, and otherwise against the full verification (a token not verified
  before is verified at once when its issuer's key is at hand), on the hostile-request
  table, on edited requests, and on random edits of each signature field;
* ``ResourceGuard.check_agent_fast`` against ``check`` with every fast path off;
* the signature-base templates against the general base, on ordinary and hostile components,
  methods and URLs;
* ``decode_header_lines`` against decoding each line and ``HttpRequest.header``;
* ``checked_host``'s memory of accepted hosts (refusals never remembered) and every new cache
  bounded whatever a client sends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aauth_server import http as http_module
from aauth_server.clock import FixedClock
from aauth_server.errors import AAuthError, SignatureFailure
from aauth_server.http import (
    HttpRequest,
    MalformedHost,
    checked_host,
    decode_header_lines,
)
from aauth_server.keys.jwk import PrivateKey
from aauth_server.resource import ResourceGuard
from aauth_server.resource.guard import AGENT_TOKEN, Protection
from aauth_server.signatures import message
from aauth_server.signatures.message import parse_signature, sign_request, signature_base
from aauth_server.verifier import RequestVerifier, VerifierConfig
from tests.core.test_fast_paths import (
    _edits,
    _guard_outcome,
    _hostile_cases,
    _without_fast_paths,
    outcome,
)
from tests.support import RESOURCE, World, with_header

NOW = 1_800_000_000


def _fast(verifier: RequestVerifier, request: HttpRequest) -> object:
    """verify_fast's outcome, after checking it: what ``verify_cached(fast_prelude)`` answers
    when that answers (a token verified before); otherwise None (the full path decides) or
    exactly what the full verification answers, asked of a twin verifier holding the same
    verified tokens (so asking changes nothing the comparison sees)."""
    twin = RequestVerifier(
        verifier.discovery, verifier.config, clock=verifier.clock, state=verifier.state
    )
    twin._tokens.update(verifier._tokens)

    def cached() -> object:
        prelude = twin.fast_prelude(request)
        return None if prelude is None else twin.verify_cached(request, prelude)

    reference = outcome(cached)
    fast = outcome(lambda: verifier.verify_fast(request))
    if reference != ("ok", None):
        assert fast == reference
    elif fast != ("ok", None):
        assert fast == outcome(lambda: twin.verify(request))
    return fast


def _cached_world() -> tuple[World, ResourceGuard]:
    world = World(clock=FixedClock(NOW))
    guard = ResourceGuard(world.resource_config())
    guard.check(world.signed())  # the agent token enters the verified-token cache
    return world, guard


# -- verify_fast is verify_cached(fast_prelude) --------------------------------------------------


@pytest.mark.parametrize(("name", "make"), _edits(), ids=[name for name, _ in _edits()])
def test_verify_fast_answers_as_the_prelude_and_the_cached_verification(
    name: str, make: Callable[[World, HttpRequest], HttpRequest]
) -> None:
    from tests.core import test_fast_paths

    world, guard = _cached_world()
    test_fast_paths._NOW[0] = world.now()
    request = make(world, world.signed())
    verifier = guard.verifier
    for _ in range(2):  # again, when every parse cache answers
        fast = _fast(verifier, request)
    if name == "unchanged":
        assert fast[0] == "ok" and fast[1] is not None
        assert fast[1] == verifier.verify(request)  # and what the full steps establish


@pytest.mark.parametrize("case", _hostile_cases(), ids=lambda c: c.id)
def test_verify_fast_on_the_hostile_table(case: Any, hostile_server: Any) -> None:
    from tests.hostile import hostile_world

    world = hostile_world(hostile_server)
    request = case.build(world)
    guard = ResourceGuard(case.config(world))
    try:
        guard.check(request)  # whatever the token, it is cached if it verifies
    except AAuthError:
        pass
    for _ in range(2):
        _fast(guard.verifier, request)


def test_verify_fast_declines_what_needs_the_outside_or_is_not_cached() -> None:
    world = World(clock=FixedClock(NOW))
    request = world.signed()
    replaying = RequestVerifier(
        world.discovery(),
        VerifierConfig(replay_cache=True),
        clock=world.clock,
        state=_AlwaysFirst(),
    )
    plain = RequestVerifier(world.discovery(), VerifierConfig(), clock=world.clock)
    assert plain.verify_fast(request) is None  # the issuer's key is not at hand yet
    verified = plain.verify(request)
    assert plain.verify_fast(request) == verified
    replaying.verify(request)
    assert replaying.verify_fast(request) is None  # the replay cache needs the state
    # A person token is revocable: with a state the guard looks it up, so no shortcut.
    guard = ResourceGuard(world.resource_config())
    person = world.signed(token=world.person_token())
    guard.check(person, Protection("person-token"))
    assert guard.verifier.verify_fast(person) is None
    assert guard.check_agent_fast(person) is None


def test_verify_fast_verifies_a_new_token_when_its_issuers_key_is_at_hand() -> None:
    world, guard = _cached_world()  # the provider's key is in discovery's cache now
    verifier = guard.verifier
    fresh = world.provider.issue(world.agent_key.public, "assistant")
    request = world.signed(token=fresh)
    assert fresh not in verifier._tokens
    fast = _fast(verifier, request)
    assert fast[0] == "ok" and fast[1] is not None
    assert fast[1].token == fresh and fresh in verifier._tokens
    assert guard.check_agent_fast(request) is not None

    # A token whose signature is another token's: refused as the full path refuses it.
    other = world.provider.issue(world.agent_key.public, "other")
    forged = fresh.rsplit(".", 1)[0] + "." + other.rsplit(".", 1)[1]
    fast = _fast(verifier, world.signed(token=forged))
    assert fast[0] == "SignatureFailure" and "invalid_jwt" in str(fast[1])
    assert forged not in verifier._tokens
    # An expired one (the request itself fresh): the same refusal as the full path.
    short = world.provider.issue(world.agent_key.public, "assistant", lifetime=60)
    world.clock.advance(120)  # type: ignore[attr-defined]
    fast = _fast(verifier, world.signed(token=short))
    assert fast[0] == "SignatureFailure" and short not in verifier._tokens
    # A request signed by another key than the token binds: refused, the token kept (it
    # verified), as the full path keeps it.
    newer = world.provider.issue(world.agent_key.public, "assistant")
    fast = _fast(verifier, world.signed(token=newer, key=PrivateKey.generate("Ed25519")))
    assert fast[0] == "SignatureFailure" and "does not verify" in str(fast[1])


def test_verify_fast_leaves_a_new_revocable_token_to_the_full_path() -> None:
    world, guard = _cached_world()
    assert guard.verifier.state is not None
    guard.check(world.signed(token=world.person_token()), Protection("person-token"))
    # The PS's key is at hand now; a new person token still needs the revocation lookup.
    token = world.person_token()
    assert _fast(guard.verifier, world.signed(token=token)) == ("ok", None)
    assert token not in guard.verifier._tokens


class _AlwaysFirst:
    def is_revoked(self, iss: str, jti: str) -> bool:
        return False

    async def ais_revoked(self, iss: str, jti: str) -> bool:
        return False

    def first_use(self, key: str, ttl: float) -> bool:
        return True

    async def afirst_use(self, key: str, ttl: float) -> bool:
        return True


def test_verify_fast_always_verifies_the_request_signature() -> None:
    world, guard = _cached_world()
    good = world.signed()
    assert guard.verifier.verify_fast(good) is not None
    forged = world.signed(key=PrivateKey.generate("Ed25519"))  # same token, another key
    with pytest.raises(SignatureFailure, match="does not verify"):
        guard.verifier.verify_fast(forged)
    moved = replace(good, url=good.url + "x")  # the same signature over another path
    with pytest.raises(SignatureFailure, match="does not verify"):
        guard.verifier.verify_fast(moved)
    # Asking many times verifies every time (nothing is kept by signature or base).
    calls: list[int] = []
    key = guard.verifier._tokens[world.agent_token].resolved.key
    real = key._ed25519_verify
    assert real is not None

    def counting(signature: bytes, data: bytes) -> None:
        calls.append(1)
        real(signature, data)

    object.__setattr__(key, "_ed25519_verify", counting)
    try:
        for _ in range(3):
            assert guard.verifier.verify_fast(good) is not None
    finally:
        object.__setattr__(key, "_ed25519_verify", real)
    assert len(calls) == 3


def test_verify_fast_refuses_an_algorithm_the_verifier_no_longer_accepts() -> None:
    world = World(clock=FixedClock(NOW))
    verifier = RequestVerifier(world.discovery(), VerifierConfig(), clock=world.clock)
    request = world.signed()
    verifier.verify(request)
    strict = RequestVerifier(
        world.discovery(), VerifierConfig(accept_algs=("ES256",)), clock=world.clock
    )
    strict._tokens.update(verifier._tokens)  # a token verified under the older setting
    fast = _fast(strict, request)
    assert fast[0] == "SignatureFailure" and "not accepted" in str(fast[1])


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["signature-input", "signature", "signature-key", "authorization", "host"]),
    st.integers(0, 2000),
    st.sampled_from(["", " ", ";", ",", '"', "=", ":", "-", "_", "+", "/", "a", "\t", "é", "\n"]),
    st.booleans(),
)
def test_edited_fields_answer_alike_fast_and_full(
    name: str, at: int, insert: str, delete: bool
) -> None:
    request = _EDIT_WORLD.signed()
    value = request.header(name) or ""
    at %= len(value) + 1
    edited = value[:at] + insert + value[at + (1 if delete else 0) :]
    request = with_header(request, name, edited)
    verifier = _EDIT_GUARDS[0].verifier
    _fast(verifier, request)
    shortcut = outcome(lambda: _EDIT_GUARDS[0].check_agent_fast(request))
    fast = _guard_outcome(_EDIT_GUARDS[0], request)
    with pytest.MonkeyPatch.context() as patched:
        _without_fast_paths(patched)
        full = _guard_outcome(_EDIT_GUARDS[1], request)
    assert fast == full
    if shortcut[0] == "ok" and shortcut[1] is not None:
        assert shortcut[1] == full  # a shortcut answer is the full answer


def _edit_world() -> tuple[World, list[ResourceGuard]]:
    world = World(clock=FixedClock(NOW))
    guards = [ResourceGuard(world.resource_config()) for _ in range(2)]
    for guard in guards:
        guard.check(world.signed())
    return world, guards


_EDIT_WORLD, _EDIT_GUARDS = _edit_world()


def test_check_agent_fast_refusals_carry_the_guards_link_header() -> None:
    world, guard = _cached_world()
    forged = world.signed(key=PrivateKey.generate("Ed25519"))
    fast = outcome(lambda: guard.check_agent_fast(forged))
    with pytest.MonkeyPatch.context() as patched:
        _without_fast_paths(patched)
        full = _guard_outcome(guard, forged)
    try:
        guard.check_agent_fast(forged)
    except AAuthError as error:
        response = error.to_response()
        assert (response.status, response.headers, response.body) == full
    assert fast[0] == "SignatureFailure"
    assert guard.check(world.signed(), Protection(AGENT_TOKEN)) == guard.check_agent_fast(
        world.signed()
    )


# -- signature-base templates --------------------------------------------------------------------


def _general(request: HttpRequest, parsed: message.ParsedSignature) -> object:
    plan = message._plan(parsed.components, parsed.component_params)
    return outcome(
        lambda: message._general_base(
            request, parsed.component_params, parsed.signature_params, plan
        )
    )


_COMPONENTS = st.lists(
    st.sampled_from(
        [
            "@method",
            "@authority",
            "@path",
            "@query",
            "@target-uri",
            "@scheme",
            "@request-target",
            "@status",
            "signature-key",
            "content-type",
            "x-a",
            "x-absent",
            "x-break",
        ]
    ),
    unique=True,
    max_size=7,
)
_URLS = st.sampled_from(
    [
        RESOURCE + "/whoami",
        RESOURCE + "/a%20b?x=1&y",
        RESOURCE + "/p?",
        RESOURCE,
        "https://RESOURCE.example:443/x",
        "http://[::1]:8080/p",
        "https://[bad/p",
        "https://resource.example/a\nb",
        "https://resource.example/é",
    ]
)


@settings(max_examples=400, deadline=None)
@given(_COMPONENTS, _URLS, st.sampled_from(["GET", "POST", "G\nET", "GÉT"]), st.booleans())
def test_the_base_template_gives_the_general_base(
    components: list[str], url: str, method: str, signed_params: bool
) -> None:
    headers = [
        ("Signature-Key", 'sig=jwt;jwt="a.b.c"'),
        ("Content-Type", "application/json"),
        ("X-A", " one "),
        ("x-a", "two"),
        ("X-Break", "a\rb"),
    ]
    request = HttpRequest(method, url, headers)
    params = ";created=1" + (';keyid="k"' if signed_params else "")
    inner = " ".join(f'"{c}"' for c in components)
    parsed = message.ParsedSignature(
        "sig",
        tuple(components),
        ((),) * len(components),
        1,
        None,
        "k" if signed_params else None,
        None,
        f"({inner}){params}",
        b"x",
    )
    for _ in range(2):  # the template is built once, then read
        assert outcome(lambda: signature_base(request, parsed)) == _general(request, parsed)


def test_the_base_of_a_signed_request_is_the_general_base_and_verifies() -> None:
    world = World(clock=FixedClock(NOW))
    for request in (
        world.signed(),
        world.signed("POST", body=b'{"a":1}'),
        world.signed(
            headers=[("X-A", "1")],
            components=["@method", "@authority", "@path", "signature-key", "x-a"],
        ),
        world.signed(components=["signature-key", "@method", "@target-uri", "@authority"]),
    ):
        parsed = parse_signature(request)
        assert ("ok", signature_base(request, parsed)) == _general(request, parsed)
        assert world.agent_key.public.verify(parsed.signature, signature_base(request, parsed))


def test_components_with_parameters_take_the_general_base() -> None:
    world = World(clock=FixedClock(NOW))
    request = world.signed()
    parsed = parse_signature(request)
    with_params = parsed._replace(
        components=("signature-key", "@method"),
        component_params=((("sf", True),), ()),
    )
    assert outcome(lambda: signature_base(request, with_params)) == _general(request, with_params)
    plan = message._plan(with_params.components, with_params.component_params)
    assert message._template(plan, request.method, request.url) is None


def test_the_template_cache_stays_bounded() -> None:
    plan = message._plan(("@method", "@path"), ((), ()))
    for n in range(message._TEMPLATES_MAX + 20):
        message._template(plan, "GET", f"{RESOURCE}/p{n}")
        assert len(message._TEMPLATES) <= message._TEMPLATES_MAX


# -- header lines ------------------------------------------------------------------------------


def _decoded_reference(lines: list[tuple[bytes, bytes]]) -> tuple[object, ...]:
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in lines]
    request = HttpRequest("GET", RESOURCE, headers)
    combined = {name.lower(): request.header(name) for name, _ in headers}
    hosts = [v for k, v in headers if k.lower() == "host"]
    return headers, combined, hosts


_NAME = st.sampled_from(
    [b"host", b"Host", b"HOST", b"signature", b"Signature", b"accept", b"x-\xe9", b"", b"a b"]
)
_VALUE = st.binary(max_size=12) | st.sampled_from([b" a.example ", b"\tx\t", b"", b"v, w"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_NAME, _VALUE), max_size=8))
def test_decode_header_lines_equals_decoding_each_line(lines: list[tuple[bytes, bytes]]) -> None:
    for _ in range(2):  # the second time every name is remembered
        headers, combined, hosts = decode_header_lines(lines)
        assert (headers, combined, hosts) == _decoded_reference(lines)
        request = HttpRequest.from_wire("GET", RESOURCE, headers, combined)
        assert request == HttpRequest("GET", RESOURCE, list(headers))
        for name, _ in headers:
            assert request.header(name) == HttpRequest("GET", RESOURCE, headers).header(name)


def test_decode_header_lines_takes_any_iterable_and_mutable_names() -> None:
    lines = [(bytearray(b"Host"), b"a.example"), (b"X", bytearray(b"1"))]
    headers, combined, hosts = decode_header_lines(iter(lines))  # type: ignore[arg-type]
    assert headers == [("Host", "a.example"), ("X", "1")]
    assert combined == {"host": "a.example", "x": "1"} and hosts == ["a.example"]
    assert decode_header_lines([]) == ([], {}, [])


def test_the_header_name_memory_stays_bounded() -> None:
    for n in range(http_module._NAMES_MAX + 20):
        decode_header_lines([(f"x-{n}".encode(), b"v")])
        assert len(http_module._NAMES) <= http_module._NAMES_MAX


# -- checked_host remembers accepted hosts only ----------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["a.example", "a.example:8080", "[::1]:80", "bad host", "a@b", "[zz::]", "", "x" * 256, "a,b"],
)
def test_checked_host_answers_alike_first_and_again(host: str) -> None:
    first = outcome(lambda: checked_host(host))
    again = outcome(lambda: checked_host(host))
    assert first == again
    if first[0] == "MalformedHost":
        assert host not in http_module._GOOD_HOSTS
    else:
        assert host in http_module._GOOD_HOSTS


def test_the_host_memory_stays_bounded() -> None:
    for n in range(http_module._GOOD_HOSTS_MAX + 20):
        checked_host(f"h{n}.example")
        assert len(http_module._GOOD_HOSTS) <= http_module._GOOD_HOSTS_MAX
    with pytest.raises(MalformedHost):
        checked_host("h 1.example")


def test_the_guards_public_url_shortcut_equals_the_general_rule() -> None:
    world = World(clock=FixedClock(NOW))
    for overrides in ({}, {"public_origin": "https://public.example/"}):
        guard = ResourceGuard(world.resource_config(**overrides))
        for host in ("resource.example", "other.example:8443", None, "bad host"):
            got = outcome(lambda: guard.public_url("https", host, "/p?q"))
            want = outcome(
                lambda: http_module.public_url(
                    "https",
                    host,
                    "/p?q",
                    public_origin=guard.config.public_origin,
                    default_host="resource.example",
                )
            )
            assert got == want


def test_signing_is_unchanged_by_the_templates() -> None:
    world = World(clock=FixedClock(NOW))
    request = HttpRequest("GET", RESOURCE + "/whoami", [("Signature-Key", "sig=x")])
    lines = sign_request(request, world.agent_key, created=NOW)
    signed = HttpRequest("GET", request.url, request.headers + lines)
    parsed = parse_signature(signed)
    assert ("ok", signature_base(signed, parsed)) == _general(signed, parsed)


def test_long_urls_and_names_are_never_kept() -> None:
    plan = message._plan(("@method", "@path"), ((), ()))
    long_url = RESOURCE + "/" + "p" * message._TEMPLATE_URL_MAX
    request = HttpRequest("GET", long_url, [])
    parsed = message.ParsedSignature(
        "sig", ("@method", "@path"), ((), ()), 1, None, None, None, '("@method" "@path")', b"x"
    )
    assert outcome(lambda: signature_base(request, parsed)) == _general(request, parsed)
    assert (plan, "GET", long_url) not in message._TEMPLATES
    long_name = b"x-" + b"n" * http_module._NAME_MAX
    assert decode_header_lines([(long_name, b"v")])[1] == {long_name.decode(): "v"}
    assert long_name not in http_module._NAMES
