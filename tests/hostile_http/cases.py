"""Seeded hostile requests for the example servers, and what every answer must look like.

Each family builds raw requests an attacker could send: malformed Structured Fields,
oversized and repeated headers, odd Host values, huge and deeply nested bodies, token
tricks (signed by keys the test holds, so they get past the outer checks), random methods
and targets, and tokens whose issuer is a hostile key server.  :func:`check` holds the
rules every answer obeys; a case may add what its own answer must be.
"""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aauth_server.errors import SIGNATURE_ERROR_CODES
from aauth_server.keys import PrivateKey
from aauth_server.tokens.aauth import mint_person_token
from tests.hostile_http.keyservers import KeyServer
from tests.hostile_http.rawhttp import RawRequest, RawResponse
from tests.hostile_http.servers import Fleet, Server

MiB = 1 << 20

#: Every ``error`` an AAuth answer may carry: the digest's tables (signature errors, token,
#: polling, revocation, authorization, interaction and mission endpoints) and the codes the
#: README documents (challenges ``<requirement>_required``, ``not_found``, ``gone``, ...).
KNOWN_ERRORS = frozenset(
    SIGNATURE_ERROR_CODES
    | {
        "invalid_resource_token",
        "expired_resource_token",
        "revoked_resource_token",
        "invalid_presented_token",
        "expired_presented_token",
        "revoked_presented_token",
        "invalid_upstream_token",
        "expired_upstream_token",
        "revoked_upstream_token",
        "invalid_subagent_token",
        "expired_subagent_token",
        "revoked_subagent_token",
        "user_unreachable",
        "as_unreachable",
        "server_error",
        "denied",
        "abandoned",
        "revoked",
        "expired",
        "invalid_code",
        "slow_down",
        "unsupported_iss",
        "rate_limited",
        "invalid_scope",
        "invalid_account",
        "interaction_unavailable",
        "mission_not_found",
        "mission_terminated",
        "agent_token_required",
        "person_token_required",
        "auth_token_required",
        "interaction_required",
        "insufficient_scope",
        "forbidden",
        "not_found",
        "gone",
        "invalid_state",
        "relay_closed",
        "temporarily_unavailable",
    }
)

#: (method, target) of AAuth endpoints on every example resource.
RESOURCE_ROUTES = (
    ("GET", "/whoami"),
    ("GET", "/profile"),
    ("GET", "/data"),
    ("POST", "/data"),
    ("GET", "/deferred"),
    ("POST", "/aauth/authorize"),
    ("POST", "/aauth/revoke"),
    ("GET", "/aauth/pending/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
)
#: (method, target) of AAuth endpoints on every example Person Server.
PS_ROUTES = (
    ("POST", "/person"),
    ("POST", "/token"),
    ("POST", "/revoke"),
    ("POST", "/interaction"),
    ("GET", "/pending/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    ("POST", "/pending/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    ("DELETE", "/pending/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    ("GET", "/relay/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
)
#: Routes of the PS's pages (HTML): only "no 5xx" applies to them.
PS_PAGES = (
    ("GET", "/consent"),
    ("GET", "/consent?code=ABCD-EFGH"),
    ("GET", "/consent/request/AAAAAAAAAAAAAAAAAAAAAAAA?code=ABCD-EFGH"),
    ("GET", "/consent/request/%5B%5D?code=x"),
    ("POST", "/consent/decide"),
    ("GET", "/consent/events"),
    ("POST", "/login"),
    ("GET", "/login?next=//evil.example"),
)
JSON_ROUTES_PS = ("/person", "/token", "/interaction", "/revoke")

ODD_HOSTS = (
    "[",
    "]",
    "[::1",
    "::1]",
    "a]b",
    "[zz]",
    "[::1]:99999x",
    "host:port:port",
    "a b",
    "a\tb",
    "user@127.0.0.1",
    "127.0.0.1/path",
    "127.0.0.1?x",
    "127.0.0.1#f",
    "h\u00e9st.example",
    "x" * 300,
    "%",
    "[]",
    ":80",
    "\\\\evil",
)

#: Values that break (or stretch) RFC 8941 parsers.
SF_GARBAGE = (
    "",
    " ",
    "sig=",
    "sig=(",
    'sig=("@method"',
    'sig=("@method" "@authority";created=1',
    "sig=:not-base64!!:",
    "sig=:" + "A" * 20000 + ":",
    'sig=("@method");created=99999999999999999999',
    'sig=("@method");created=-1',
    'sig=("@method");created=1.5',
    'sig=("@method");created="x"',
    "sig=?2",
    'sig=jwt;jwt="unterminated',
    "sig=jwt;jwt=" + "x" * 5000,
    "sig=jwt;jwt=(1 2 3)",
    'sig=jwt;jwt="a.b.c";jwt="d.e.f"',
    "sig=jwt, sig=jwt",
    "a=1;b;c;d;e;f;g;h;i;j;k;l;m;n;o;p",
    "sig=" + "(" * 200,
    'sig=%"\u0000"',
    "\u00ff\u00fe",
    "sig=@" + "9" * 30,
    "sha-256=:AAAA:, sha-256=:BBBB:",
    "sha-512=:" + "/" * 100 + ":",
    "interaction, clarification, " + ", ".join(f"cap{i}" for i in range(500)),
    ";;;;;",
    "sig=*" * 50,
)


@dataclass
class Case:
    family: str
    server: Server
    request: RawRequest
    #: The target is an AAuth endpoint (not a page, not an unknown path).
    aauth_route: bool = True
    #: The request is well-formed HTTP (any 4xx then comes from the AAuth code, not the
    #: server's HTTP parser, and must be problem+json).
    wire_valid: bool = True
    expect_status: frozenset[int] | None = None
    expect_error: frozenset[str] | None = None
    deadline: float = 10.0
    notes: dict[str, Any] = field(default_factory=dict)


def wire_valid(request: RawRequest) -> bool:
    """Whether an HTTP/1.1 parser must accept these header lines (no control characters,
    names are tokens): otherwise the server's own parser may answer 400 before any app."""
    for name, value in request.headers:
        if not name or any(c in name for c in ' \t"(),/:;<=>?@[\\]{}') or not name.isascii():
            return False
        if any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F or ord(c) > 0xFF for c in value):
            return False
    return True


def check(case: Case, response: RawResponse) -> None:
    """The rules every answer obeys; raises AssertionError naming the case."""
    where = f"{case.family} {case.server.name} {case.request.method} {case.request.target[:80]}"
    assert response.status < 500, f"{where}: {response.status} {response.body[:300]!r}"
    assert response.elapsed < case.deadline, f"{where}: took {response.elapsed:.1f}s"
    problem = response.media_type == "application/problem+json"
    error = None
    if problem:
        body = json.loads(response.body)
        assert isinstance(body, dict) and isinstance(body.get("error"), str), where
        error = body["error"]
        assert error in KNOWN_ERRORS, f"{where}: unknown error code {error!r}"
    signature_error = response.header("signature-error")
    if response.status == 401 and case.aauth_route:
        assert problem, f"{where}: a 401 without problem+json: {response.body[:200]!r}"
        assert signature_error or response.header("aauth-requirement"), where
    if signature_error:
        assert response.status == 401, f"{where}: Signature-Error on a {response.status}"
        # An SF Dictionary: error=<token>[, required_input=(...)]
        code = signature_error.split(",", 1)[0].split(";", 1)[0].strip()
        assert code == f"error={error}", (
            f"{where}: Signature-Error {signature_error!r} vs {error!r}"
        )
    if (
        case.aauth_route
        and case.wire_valid
        and wire_valid(case.request)
        and 400 <= response.status < 500
    ):
        assert problem, f"{where}: {response.status} without problem+json: {response.body[:200]!r}"
    expected = case.expect_status
    if expected is not None and (
        "/pending/" in case.request.target or "/relay/" in case.request.target
    ):
        # An unknown pending or relay id is answered before the signature is looked at.
        expected = expected | {404}
    if expected is not None:
        assert response.status in expected, (
            f"{where}: {response.status} not in {sorted(expected)}: {response.body[:300]!r}"
        )
    if case.expect_error is not None and not (response.status == 404 and error == "not_found"):
        assert error in case.expect_error, f"{where}: error {error!r} not in {case.expect_error}"


# -- building blocks ----------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jws(
    header: dict[str, Any] | bytes, payload: dict[str, Any] | bytes, key: PrivateKey | None
) -> str:
    """A compact JWS with exactly this header and payload (``key=None``: no signature)."""
    part = [
        _b64(p if isinstance(p, bytes) else json.dumps(p, separators=(",", ":")).encode())
        for p in (header, payload)
    ]
    signing_input = ".".join(part)
    signature = key.sign(signing_input.encode()) if key is not None else b""
    return signing_input + "." + _b64(signature)


def nested_json(depth: int) -> bytes:
    return b'{"resource":' + b"[" * depth + b"]" * depth + b"}"


@dataclass
class World:
    """What the generators draw from: the fleet, hostile key servers, a seeded RNG."""

    fleet: Fleet
    key_servers: dict[str, KeyServer]
    rng: random.Random

    def server(self, role: str | None = None) -> Server:
        pool = self.fleet.all if role is None else [s for s in self.fleet.all if s.role == role]
        return self.rng.choice(pool)

    def route(self, server: Server) -> tuple[str, str]:
        return self.rng.choice(RESOURCE_ROUTES if server.role == "resource" else PS_ROUTES)

    def signed(self, server: Server, method: str, target: str, **kw: Any) -> RawRequest:
        body = kw.pop("body", b"")
        if method == "POST" and not body:
            body = self.valid_body(server, target)
        return self.fleet.agent.sign(server.port, method, target, body=body, **kw)

    def valid_body(self, server: Server, target: str) -> bytes:
        if server.role == "resource":
            return b'{"scope":"data.read"}'
        if target == "/interaction":
            return json.dumps(
                {"type": "question", "question": "ok?", "capabilities": ["interaction"]}
            ).encode()
        if target == "/revoke":
            return json.dumps({"jti": "x", "exp": int(time.time()) + 60}).encode()
        resource = self.fleet.resources[0].url
        return json.dumps({"resource": resource, "capabilities": ["interaction"]}).encode()

    def agent_claims(self, issuer: str, **changes: Any) -> dict[str, Any]:
        agent_key = self.fleet.agent.key
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": issuer,
            "dwk": "aauth-agent.json",
            "sub": f"aauth:trick@{issuer.split('://', 1)[1]}",
            "jti": f"j{self.rng.getrandbits(64):x}",
            "iat": now,
            "exp": now + 600,
            "cnf": {"jwk": dict(agent_key.public.jwk)},
        }
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not DROP}


DROP: Any = object()


# -- families ------------------------------------------------------------------------------------


def unsigned(w: World) -> Case:
    server = w.server()
    method, target = w.route(server)
    junk = [(f"X-Junk-{i}", w.rng.choice(SF_GARBAGE)[:200]) for i in range(w.rng.randrange(4))]
    body = w.valid_body(server, target) if method == "POST" else b""
    headers = [("Content-Type", "application/json"), *junk] if body else junk
    return Case("unsigned", server, RawRequest(method, target, headers, body))


def malformed_field(w: World) -> Case:
    server = w.server()
    method, target = w.route(server)
    request = w.signed(server, method, target)
    name = w.rng.choice(
        ("Signature-Input", "Signature", "Signature-Key", "Content-Digest", "AAuth-Capabilities")
    )
    value = w.rng.choice(SF_GARBAGE)
    if w.rng.random() < 0.4:
        original = next((v for k, v in request.headers if k == name), value) or "x"
        i = w.rng.randrange(len(original))
        value = original[:i] + w.rng.choice('"(),;=:*\\ \u00e9') + original[i + 1 :]
    headers = [(k, v) for k, v in request.headers if k != name] + [(name, value)]
    return Case("malformed-field", server, RawRequest(method, target, headers, request.body))


def repeated_headers(w: World) -> Case:
    server = w.server()
    method, target = w.route(server)
    request = w.signed(server, method, target)
    name = w.rng.choice(("Signature-Input", "Signature", "Signature-Key", "Content-Digest"))
    copies = w.rng.choice((2, 3, 10, 50))
    extra = [(k, v) for k, v in request.headers if k == name] * (copies - 1)
    many = [(f"X-Many-{i}", "v") for i in range(w.rng.choice((0, 100, 300)))]
    headers = [*request.headers, *extra, *many]
    # Past about a hundred lines an HTTP parser may refuse the request itself (431).
    return Case(
        "repeated-headers",
        server,
        RawRequest(method, target, headers, request.body),
        wire_valid=len(headers) < 90,
    )


def oversized_header(w: World) -> Case:
    server = w.server()
    method, target = w.route(server)
    request = w.signed(server, method, target)
    name = w.rng.choice(("Signature-Key", "Signature-Input", "X-Large", "Signature"))
    size = w.rng.choice((9000, 17000, 70000))
    value = 'sig=jwt;jwt="' + "a" * size + '"'
    headers = [(k, v) for k, v in request.headers if k != name] + [(name, value)]
    # Servers' HTTP parsers may refuse a line this long themselves (400/431).
    return Case(
        "oversized-header",
        server,
        RawRequest(method, target, headers, request.body),
        wire_valid=False,
    )


def odd_host(w: World) -> Case:
    server = w.server()
    if w.rng.random() < 0.3 and server.role == "ps":
        method, target = w.rng.choice(PS_PAGES)
        aauth = False
    else:
        method, target = w.route(server)
        aauth = True
    host = w.rng.choice(ODD_HOSTS)
    request = w.signed(server, method, target)
    headers = [(k, v) for k, v in request.headers if k != "Host"] + [("Host", host)]
    if w.rng.random() < 0.2:
        headers.append(("Host", f"127.0.0.1:{server.port}"))  # and a second Host line
    # Any Host the framework passes on gets a 400 (the HTTP parser may refuse it first).
    return Case(
        "odd-host",
        server,
        RawRequest(method, target, headers, request.body),
        aauth_route=aauth,
        wire_valid=False,
        expect_status=frozenset({400}),
    )


def big_body(w: World) -> Case:
    server = w.server()
    method, target = w.route(server)
    size = MiB + w.rng.choice((1, 4096, MiB, 2 * MiB))
    body = b'{"x":"' + b"a" * (size - 8) + b'"}'
    chunked = w.rng.choice((0, 0, 65536))
    signed = w.rng.random() < 0.3
    request = (
        w.signed(server, "POST", target, body=body)
        if signed
        else RawRequest("POST", target, [("Content-Type", "application/json")], body)
    )
    request.method = "POST"
    request.chunked = chunked
    # A GET route may not take POST at all: then the router's 405 comes first.
    expected = frozenset({413}) if method == "POST" else None
    return Case(
        "big-body",
        server,
        request,
        aauth_route=method == "POST",
        expect_status=expected,
        expect_error=frozenset({"invalid_request"}) if expected else None,
    )


def deep_json(w: World) -> Case:
    server = w.server("ps")
    target = w.rng.choice(("/person", "/token", "/interaction"))
    depth = w.rng.choice((40, 2000, 100_000))
    body = nested_json(depth)
    if w.rng.random() < 0.2:
        request = RawRequest("POST", target, [("Content-Type", "application/json")], body)
        return Case("deep-json-unsigned", server, request, expect_status=frozenset({401}))
    request = w.signed(server, "POST", target, body=body)
    return Case(
        "deep-json",
        server,
        request,
        expect_status=frozenset({400}),
        expect_error=frozenset({"invalid_request"}),
    )


def deep_json_revocation(w: World) -> Case:
    """A revocation signed as the agent provider (jwks_uri scheme), nested 2,000 deep."""
    server = w.server("ps")
    provider = w.fleet.provider
    body = b'{"jti":' + b"[" * 2000 + b"]" * 2000 + b"}"
    signature_key = (
        f'sig=jwks_uri;id="{provider.issuer}";dwk="aauth-agent.json";kid="{provider.key.kid}"'
    )
    headers = [
        ("Host", f"127.0.0.1:{server.port}"),
        ("Content-Type", "application/json"),
        ("Signature-Key", signature_key),
    ]
    request = _resign(server, "POST", "/revoke", headers, body, provider.key)
    return Case(
        "deep-json-revocation",
        server,
        request,
        expect_status=frozenset({400}),
        expect_error=frozenset({"invalid_request"}),
    )


def _resign(
    server: Server,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    key: PrivateKey,
) -> RawRequest:
    from aauth_server.http import HttpRequest
    from aauth_server.signatures.message import AAUTH_COMPONENTS, sign_request

    base = [
        (k, v) for k, v in headers if k not in ("Signature-Input", "Signature", "Content-Digest")
    ]
    components = (
        [*AAUTH_COMPONENTS, "content-type", "content-digest"] if body else list(AAUTH_COMPONENTS)
    )
    neutral = HttpRequest(method, f"http://127.0.0.1:{server.port}{target}", base, body)
    added = sign_request(neutral, key, components=components, created=int(time.time()))
    return RawRequest(method, target, [*base, *added], body)


def token_trick(w: World) -> Case:
    server = w.server()
    method, target = w.route(server)
    provider = w.fleet.provider
    issuer = provider.issuer
    untrusted: KeyServer = w.key_servers["untrusted-ps"]
    now = int(time.time())
    agent_jwk = dict(w.fleet.agent.key.public.jwk)
    header = {"typ": "aa-agent+jwt", "alg": "Ed25519", "kid": provider.key.kid}
    tricks: list[Callable[[], str]] = [
        lambda: jws({**header, "alg": "none"}, w.agent_claims(issuer), None),
        lambda: jws({**header, "alg": "EdDSA"}, w.agent_claims(issuer), provider.key),
        lambda: jws({**header, "alg": "HS256"}, w.agent_claims(issuer), provider.key),
        lambda: jws({**header, "typ": "JWT"}, w.agent_claims(issuer), provider.key),
        lambda: jws(
            {k: v for k, v in header.items() if k != "kid"}, w.agent_claims(issuer), provider.key
        ),
        lambda: jws({**header, "kid": "x" * 5000}, w.agent_claims(issuer), provider.key),
        lambda: jws(header, w.agent_claims(issuer, exp=now - 10), provider.key),
        lambda: jws(header, w.agent_claims(issuer, iat=now + 3600), provider.key),
        lambda: jws(header, w.agent_claims(issuer, exp=now + 10**12), provider.key),
        lambda: jws(header, w.agent_claims(issuer, cnf=DROP), provider.key),
        lambda: jws(
            header, w.agent_claims(issuer, cnf={"jwk": {"kty": "oct", "k": "AA"}}), provider.key
        ),
        lambda: jws(header, w.agent_claims(issuer, iss="not a url"), provider.key),
        lambda: jws(header, w.agent_claims(issuer, iss="http://10.0.0.1:80"), provider.key),
        lambda: jws(header, w.agent_claims(issuer, dwk="../../etc/passwd"), provider.key),
        lambda: jws(header, w.agent_claims(issuer, sub="not-an-agent-id"), provider.key),
        lambda: jws(header, w.agent_claims(issuer, exp=1.5e308), provider.key),
        lambda: jws(header, w.agent_claims(issuer, jti=["x"] * 1000), provider.key),
        lambda: jws(header, b"[" * 5000 + b"]" * 5000, provider.key),
        lambda: jws(header, b"\xff\xfe", provider.key),
        lambda: jws(b"{" * 3000, w.agent_claims(issuer), provider.key),
        lambda: jws(header, w.agent_claims(issuer), PrivateKey.generate("Ed25519")),
        lambda: "a.b",
        lambda: "a.b.c.d.e",
        lambda: "!!!.???.***",
        lambda: "e" * 15000,
        # A person token from a Person Server the resources do not trust (no fetch allowed).
        lambda: mint_person_token(
            untrusted.key,
            iss=untrusted.origin,
            aud=server.url,
            sub="someone",
            cnf_jwk=agent_jwk,
            now=now,
            dev_loopback=True,
        ),
        # A genuine agent token, presented with someone else's signing key.
        lambda: w.fleet.agent.token,
    ]
    index = w.rng.randrange(len(tricks))
    token = tricks[index]()
    key = PrivateKey.generate("Ed25519") if index == len(tricks) - 1 else None
    request = w.signed(server, method, target, token=token, key=key)
    return Case(
        "token-trick",
        server,
        request,
        expect_status=frozenset({400, 401}),
        notes={"trick": index},
    )


def stale_or_skewed(w: World) -> Case:
    server = w.server()
    method, target = w.route(server)
    created = int(time.time()) + w.rng.choice((-(10**6), -120, 120, 10**6, 2**40))
    request = w.signed(server, method, target, created=created)
    return Case(
        "stale-or-skewed",
        server,
        request,
        expect_status=frozenset({401}),
        expect_error=frozenset({"invalid_signature", "clock_skew"}),
    )


def uncovered(w: World) -> Case:
    server = w.server()
    method, target = w.route(server)
    components = w.rng.choice((("@method",), ("@method", "@authority"), ("signature-key",)))
    request = w.signed(server, method, target, components=components)
    return Case(
        "uncovered",
        server,
        request,
        expect_status=frozenset({401}),
        expect_error=frozenset({"invalid_input"}),
    )


def odd_target(w: World) -> Case:
    server = w.server()
    method = w.rng.choice(("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "BREW"))
    target = w.rng.choice(
        (
            "/" + "a" * 8000,
            "/%00",
            "/%ff%fe",
            "//whoami",
            "/./whoami",
            "/../../etc/passwd",
            "/aauth/pending/" + "%2e" * 40,
            "/pending/" + "A" * 200,
            "/pending/..%2f..%2f",
            "/relay/\u00e9t\u00e9".encode().decode("latin-1"),
            "/.well-known/aauth-resource.json?" + "x=1&" * 500,
            "/.well-known/aauth-person.json",
            "/jwks.json",
            "/aauth/jwks.json",
            "/consent/request/" + "B" * 64,
            "*",
            "http://evil.example/whoami",
        )
    )
    return Case("odd-target", server, RawRequest(method, target, []), aauth_route=False)


def pages(w: World) -> Case:
    server = w.server("ps")
    method, target = w.rng.choice(PS_PAGES)
    body = (
        b"username=alice&password=" + b"x" * w.rng.choice((1, 20000)) if method == "POST" else b""
    )
    headers = [("Content-Type", "application/x-www-form-urlencoded")] if body else []
    cookie = w.rng.choice(
        ("", "aauth_session=" + "x" * 4000, "aauth_session=a.b.c", "\u00ff=\u00ff")
    )
    if cookie:
        headers.append(("Cookie", cookie))
    return Case("pages", server, RawRequest(method, target, headers, body), aauth_route=False)


def valid(w: World) -> Case:
    server = w.server()
    if server.role == "resource":
        request = w.signed(server, "GET", "/whoami")
        return Case("valid", server, request, expect_status=frozenset({200}))
    request = w.signed(server, "POST", "/person")
    # A new pending request, or the per-agent cap on them (429 slow_down).
    return Case("valid", server, request, expect_status=frozenset({202, 429}))


def key_server_issuer(w: World) -> Case:
    server = w.server()
    name = w.rng.choice(sorted(n for n in w.key_servers if n != "untrusted-ps"))
    hostile = w.key_servers[name]
    claims = w.agent_claims(hostile.origin)
    header = {"typ": "aa-agent+jwt", "alg": "Ed25519", "kid": hostile.key.kid}
    token = jws(header, claims, hostile.key)
    method, target = ("GET", "/whoami") if server.role == "resource" else ("POST", "/person")
    request = w.signed(server, method, target, token=token)
    usable = name.startswith("absurd")  # a valid key under absurd cache headers
    return Case(
        "key-server",
        server,
        request,
        expect_status=frozenset({200, 202, 429}) if usable else frozenset({401}),
        expect_error=None if usable else frozenset({"invalid_key", "issuer_missing"}),
        notes={"key_server": name},
    )


FAMILIES: Sequence[tuple[Callable[[World], Case], int]] = (
    (unsigned, 8),
    (malformed_field, 14),
    (repeated_headers, 6),
    (oversized_header, 4),
    (odd_host, 10),
    (big_body, 3),
    (deep_json, 6),
    (deep_json_revocation, 2),
    (token_trick, 14),
    (stale_or_skewed, 4),
    (uncovered, 4),
    (odd_target, 8),
    (pages, 6),
    (valid, 5),
    (key_server_issuer, 6),
)


def generate(w: World, count: int) -> list[Case]:
    makers = [maker for maker, weight in FAMILIES for _ in range(weight)]
    cases = [maker(w) for maker in makers]  # every family at least as often as its weight
    while len(cases) < count:
        cases.append(w.rng.choice(makers)(w))
    return cases
