"""Hostile and malformed requests against the resource guard, sync and async.

One table: each row builds a request in a fresh world pinned at ``NOW`` and states the exact
answer (status, ``Signature-Error`` code, ``required_input``, ``Accept-Signature-*``).  Rows
that expect 200 are positive controls: they show the knob a neighbouring row turns is the
reason that row fails.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from aauth_server.errors import AAuthError
from aauth_server.fields import parse_aauth_requirement, parse_signature_error
from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.keys import FetchResponse, PrivateKey
from aauth_server.resource import ResourceConfig, ResourceGuard
from aauth_server.resource.guard import AgentIdentity
from aauth_server.signatures.digest import content_digest
from tests.hostile import (
    DROP,
    NOW,
    PRIVATE_IP,
    HostileWorld,
    LocalServer,
    aauth_input,
    add_line,
    agent_claims,
    agent_jwk,
    b64,
    edit_header,
    hand_jwt,
    header,
    hostile_world,
    jwt_key_header,
    local_server,
    loopback_token,
    network_config,
    resign,
    set_header,
    token,
    with_key_header,
    with_token,
)
from tests.support import AP_ISSUER

REQUIRED = ("@method", "@authority", "@path", "signature-key")
ALGS = "Ed25519, ES256"
META = AP_ISSUER + "/.well-known/aauth-agent.json"
JWKS = AP_ISSUER + "/.well-known/jwks.json"

Build = Callable[[HostileWorld], HttpRequest]
MakeConfig = Callable[[HostileWorld], ResourceConfig]


def default_config(w: HostileWorld) -> ResourceConfig:
    return w.resource_config()


def cfg(**overrides: Any) -> MakeConfig:
    return lambda w: w.resource_config(**overrides)


@dataclass(frozen=True)
class Case:
    id: str
    build: Build
    status: int
    error: str | None = None
    required_input: tuple[str, ...] | None = None
    accept_scheme: str | None = None
    accept_alg: str | None = None
    requirement: str | None = None
    config: MakeConfig = field(default=default_config)


def bad(
    id: str,
    build: Build,
    error: str,
    *,
    required: tuple[str, ...] | None = None,
    scheme: str | None = None,
    alg: str | None = None,
    config: MakeConfig = default_config,
) -> Case:
    return Case(id, build, 401, error, required, scheme, alg, config=config)


def ok(id: str, build: Build, config: MakeConfig = default_config) -> Case:
    return Case(id, build, 200, config=config)


# -- builders shared by several rows ----------------------------------------------------------


def claims(**changes: Any) -> Build:
    return lambda w: with_token(w, token(w, claims=changes))


def theader(**changes: Any) -> Build:
    return lambda w: with_token(w, token(w, header=changes))


def cnf(**changes: Any) -> Build:
    return lambda w: with_token(w, token(w, claims={"cnf": {"jwk": agent_jwk(w, **changes)}}))


def raw_token(make: Callable[[HostileWorld], str]) -> Build:
    return lambda w: with_token(w, make(w))


def sign_input(value: Callable[[HostileWorld], str]) -> Build:
    """A valid request whose Signature-Input is replaced (not re-signed)."""
    return lambda w: set_header(w.signed(), "Signature-Input", value(w))


def field_value(name: str, value: str | None) -> Build:
    return lambda w: set_header(w.signed(), name, value)


def repeated(name: str) -> Build:
    """A valid request with one of its header lines sent twice."""

    def build(w: HostileWorld) -> HttpRequest:
        req = w.signed()
        return add_line(req, name, header(req, name))

    return build


def without(*components: str) -> Build:
    return lambda w: w.signed(components=[c for c in REQUIRED if c not in components])


def document(url: str, value: object) -> Build:
    def build(w: HostileWorld) -> HttpRequest:
        w.extra_documents[url] = value
        return w.signed()

    return build


def scheme(value: Callable[[HostileWorld], str]) -> Build:
    return lambda w: with_key_header(w, value(w))


def hwk(w: HostileWorld) -> str:
    x = w.agent_key.public.jwk["x"]
    return f'sig=hwk;kty="OKP";crv="Ed25519";x="{x}";alg="Ed25519"'


def signature_bytes(make: Callable[[bytes], str]) -> Build:
    """Re-encode the real signature bytes of a valid request as ``make`` says."""

    def build(w: HostileWorld) -> HttpRequest:
        req = w.signed()
        raw = header(req, "Signature").split("=", 1)[1].strip(":")
        return set_header(req, "Signature", make(base64.b64decode(raw)))

    return build


def b64std(data: bytes) -> str:
    return base64.b64encode(data).decode()


def posted(w: HostileWorld, **kw: Any) -> HttpRequest:
    return w.signed("POST", body=b'{"a":1}', **kw)


def covered_note(value: str | None) -> Build:
    def build(w: HostileWorld) -> HttpRequest:
        req = w.signed(headers=[("X-Note", "plain")], components=[*REQUIRED, "x-note"])
        return set_header(req, "X-Note", value)

    return build


def metadata(**changes: Any) -> Build:
    def build(w: HostileWorld) -> HttpRequest:
        doc = {**w.provider.metadata(), **changes}
        w.extra_documents[META] = {k: v for k, v in doc.items() if v is not DROP}
        return w.signed()

    return build


def jwks(make: Callable[[HostileWorld], object]) -> Build:
    def build(w: HostileWorld) -> HttpRequest:
        w.extra_documents[JWKS] = make(w)
        return w.signed()

    return build


def ap_jwk(w: HostileWorld, **changes: Any) -> dict[str, Any]:
    jwk = {**w.provider.key.public_jwk(), **changes}
    return {k: v for k, v in jwk.items() if v is not DROP}


def es256_agent(w: HostileWorld) -> HttpRequest:
    key = PrivateKey.generate("ES256")
    return w.signed(token=w.provider.issue(key.public, "assistant"), key=key)


# -- rows that need the local HTTP server ---------------------------------------------------


def _server(w: HostileWorld) -> LocalServer:
    assert w.server is not None
    return w.server


def served_provider(host: str, *, metadata_redirect: bool = False, jwks_uri: str | None = None,
                    jwks_redirect: bool = False) -> Build:  # fmt: skip
    """A dev-loopback agent provider at ``http://{host}:port`` served by the local server."""

    def build(w: HostileWorld) -> HttpRequest:
        server = _server(w)
        issuer = server.origin(host)
        meta_path = "/.well-known/aauth-agent.json"
        keys_uri = jwks_uri or issuer + "/jwks.json"
        server.json(host, "/moved-metadata", {"issuer": issuer, "jwks_uri": keys_uri})
        if metadata_redirect:
            server.redirect(host, meta_path, issuer + "/moved-metadata")
        else:
            server.json(host, meta_path, {"issuer": issuer, "jwks_uri": keys_uri})
        server.json(host, "/jwks.json", w.provider.jwks())
        if jwks_redirect:
            server.redirect(host, "/jwks.json", issuer + "/moved-jwks")
            server.json(host, "/moved-jwks", w.provider.jwks())
        return with_token(w, loopback_token(w, issuer))

    return build


LOOPBACK = {"localhost": "127.0.0.1"}
PRIVATE_JWKS = {**LOOPBACK, "internal.example": PRIVATE_IP}


def net(resolve: dict[str, str]) -> MakeConfig:
    return lambda w: network_config(w, resolve)


# -- the table ------------------------------------------------------------------------------

CASES: list[Case] = [
    # positive controls
    ok("valid-get", lambda w: w.signed()),
    ok("valid-post-with-digest", posted),
    ok("valid-es256-agent", es256_agent),
    ok("valid-custom-label", lambda w: w.signed(label="agent")),
    ok("valid-created-window-past-edge", lambda w: w.signed(created=NOW - 60)),
    ok("valid-created-window-future-edge", lambda w: w.signed(created=NOW + 60)),
    ok(
        "valid-expires-future",
        lambda w: resign(w, w.signed(), aauth_input(w, extra=f";expires={NOW + 30}")),
    ),
    ok(
        "valid-alg-param-ignored",
        lambda w: resign(w, w.signed(), aauth_input(w, extra=';alg="hmac-sha256"')),
    ),
    ok("valid-iat-within-window", claims(iat=NOW + 30, exp=NOW + 3600)),
    ok("valid-jwt-cache-flag", scheme(lambda w: f'sig=jwt;jwt="{w.agent_token}";cache')),
    ok(
        "valid-body-without-digest-when-not-required",
        lambda w: posted(w, components=[*REQUIRED, "content-type"]),
    ),
    ok(
        "valid-digest-sha512",
        lambda w: posted(w, headers=[("Content-Digest", content_digest(b'{"a":1}', "sha-512"))]),
    ),
    ok(
        "valid-jwks-skips-unusable-member",
        jwks(lambda w: {"keys": [{"kty": "weird", "kid": "zz"}, w.provider.key.public_jwk()]}),
    ),
    ok("valid-base64url-signature-by-default", signature_bytes(lambda s: f'sig="{b64(s)}"')),
    ok("valid-eddsa-token-header-when-allowed", theader(alg="EdDSA"), cfg(allow_eddsa=True)),
    ok("valid-eddsa-cnf-jwk-when-allowed", cnf(alg="EdDSA"), cfg(allow_eddsa=True)),
    ok("valid-network-discovery", served_provider("localhost"), net(LOOPBACK)),
    # unsigned and partially signed
    Case(
        "unsigned",
        lambda w: HttpRequest("GET", "https://resource.example/whoami", []),
        401,
        requirement="agent-token",
    ),
    bad("missing-signature", field_value("Signature", None), "invalid_signature"),
    bad("missing-signature-input", field_value("Signature-Input", None), "invalid_signature"),
    bad("missing-signature-key", field_value("Signature-Key", None), "invalid_signature"),
    # broken Structured Fields
    bad(
        "si-unclosed-inner-list",
        field_value("Signature-Input", 'sig=("@method" "@authority"'),
        "invalid_signature",
    ),
    bad(
        "si-member-is-token", sign_input(lambda w: f"sig=token;created={NOW}"), "invalid_signature"
    ),
    bad(
        "si-component-is-token",
        sign_input(lambda w: f'sig=(method "@authority" "@path" "signature-key");created={NOW}'),
        "invalid_signature",
    ),
    bad("si-empty", field_value("Signature-Input", ""), "invalid_signature"),
    bad(
        "si-non-ascii",
        sign_input(lambda w: aauth_input(w, extra=';nonce="caf\u00e9"')),
        "invalid_signature",
    ),
    bad("sig-unterminated-bytes", field_value("Signature", "sig=:abc"), "invalid_signature"),
    bad("sig-integer", field_value("Signature", "sig=42"), "invalid_signature"),
    bad("sig-control-character", field_value("Signature", "sig=:AAAA\x01:"), "invalid_signature"),
    bad(
        "sk-unterminated-string",
        field_value("Signature-Key", 'sig=jwt;jwt="abc'),
        "invalid_signature",
    ),
    bad("sk-member-is-string", field_value("Signature-Key", 'sig="jwt"'), "invalid_signature"),
    bad("sk-member-is-inner-list", field_value("Signature-Key", "sig=(jwt)"), "invalid_signature"),
    bad("sk-empty", field_value("Signature-Key", ""), "invalid_signature"),
    bad(
        "sk-non-ascii",
        field_value("Signature-Key", 'sig=jwt;jwt="\u00e9.a.b"'),
        "invalid_signature",
    ),
    bad(
        "sk-control-character",
        field_value("Signature-Key", 'sig=jwt;jwt="a\tb"'),
        "invalid_signature",
    ),
    # duplicate labels and components
    bad("dup-signature-input-lines", repeated("Signature-Input"), "invalid_signature"),
    bad("dup-signature-lines", repeated("Signature"), "invalid_signature"),
    bad(
        "dup-signature-key-lines-signed",
        lambda w: w.signed(headers=[("Signature-Key", hwk(w))]),
        "invalid_signature",
    ),
    bad(
        "dup-label-in-one-signature-input",
        lambda w: edit_header(w.signed(), "Signature-Input", lambda v: f"{v}, {v}"),
        "invalid_signature",
    ),
    bad(
        "dup-component-method",
        sign_input(
            lambda w: (
                f'sig=("@method" "@method" "@authority" "@path" "signature-key");created={NOW}'
            )
        ),
        "invalid_signature",
    ),
    bad(
        "dup-component-signature-key",
        sign_input(lambda w: aauth_input(w).replace('"signature-key"', '"signature-key" ' * 2)),
        "invalid_signature",
    ),
    # coverage
    bad("uncovered-method", without("@method"), "invalid_input", required=REQUIRED),
    bad("uncovered-authority", without("@authority"), "invalid_input", required=REQUIRED),
    bad("uncovered-path", without("@path"), "invalid_input", required=REQUIRED),
    bad("uncovered-signature-key", without("signature-key"), "invalid_input", required=REQUIRED),
    bad(
        "uncovered-everything",
        sign_input(lambda w: f"sig=();created={NOW}"),
        "invalid_input",
        required=REQUIRED,
    ),
    bad(
        "uncovered-additional-query",
        lambda w: w.signed(path="/whoami?x=1"),
        "invalid_input",
        required=(*REQUIRED, "@query"),
        config=cfg(additional_signature_components=("@query",)),
    ),
    bad(
        "uncovered-aauth-authorization",
        lambda w: w.signed(headers=[("Authorization", "AAuth opaque")]),
        "invalid_input",
        required=(*REQUIRED, "authorization"),
    ),
    bad(
        "body-without-required-digest",
        lambda w: posted(w, components=[*REQUIRED, "content-type"]),
        "invalid_input",
        required=(*REQUIRED, "content-type", "content-digest"),
        config=cfg(additional_signature_components=("content-type", "content-digest")),
    ),
    # Content-Digest
    bad("digest-mismatch", lambda w: replace(posted(w), body=b'{"a":2}'), "invalid_signature"),
    bad(
        "digest-malformed",
        lambda w: posted(w, headers=[("Content-Digest", "sha-256=:abc")]),
        "invalid_signature",
    ),
    bad(
        "digest-unknown-algorithm-only",
        lambda w: posted(w, headers=[("Content-Digest", "md5=:1B2M2Y8AsgTpgAmY7PhCfg==:")]),
        "invalid_signature",
    ),
    bad(
        "digest-duplicate-member",
        lambda w: posted(
            w, headers=[("Content-Digest", (d := content_digest(b'{"a":1}')) + ", " + d)]
        ),
        "invalid_signature",
    ),
    bad(
        "digest-covered-but-removed",
        lambda w: set_header(posted(w), "Content-Digest", None),
        "invalid_signature",
    ),
    # created / expires
    bad(
        "created-missing",
        sign_input(lambda w: 'sig=("@method" "@authority" "@path" "signature-key")'),
        "invalid_signature",
    ),
    bad(
        "created-string",
        sign_input(lambda w: aauth_input(w).replace(f"created={NOW}", f'created="{NOW}"')),
        "invalid_signature",
    ),
    bad(
        "created-decimal",
        sign_input(lambda w: aauth_input(w, created=NOW) + ".5"),
        "invalid_signature",
    ),
    bad(
        "created-boolean",
        sign_input(lambda w: aauth_input(w).replace(f"created={NOW}", "created=?1")),
        "invalid_signature",
    ),
    bad("created-stale", lambda w: w.signed(created=NOW - 61), "invalid_signature"),
    bad("created-negative", lambda w: w.signed(created=-1), "invalid_signature"),
    bad("created-future", lambda w: w.signed(created=NOW + 61), "clock_skew"),
    bad("created-far-future", lambda w: w.signed(created=999_999_999_999_999), "clock_skew"),
    bad(
        "expires-past",
        lambda w: resign(w, w.signed(), aauth_input(w, extra=f";expires={NOW - 1}")),
        "invalid_signature",
    ),
    bad(
        "expires-now",
        lambda w: resign(w, w.signed(), aauth_input(w, extra=f";expires={NOW}")),
        "invalid_signature",
    ),
    bad(
        "expires-string",
        sign_input(lambda w: aauth_input(w, extra=';expires="soon"')),
        "invalid_signature",
    ),
    bad(
        "alg-param-integer",
        sign_input(lambda w: aauth_input(w, extra=";alg=1")),
        "invalid_signature",
    ),
    # labels
    bad(
        "label-signature-differs",
        lambda w: edit_header(w.signed(), "Signature", lambda v: "other" + v[3:]),
        "invalid_signature",
    ),
    bad(
        "label-signature-input-differs",
        lambda w: edit_header(w.signed(), "Signature-Input", lambda v: "other" + v[3:]),
        "invalid_signature",
    ),
    bad(
        "label-signature-key-differs",
        scheme(lambda w: jwt_key_header(w.agent_token, "other")),
        "invalid_signature",
    ),
    # schemes
    bad("scheme-unknown", scheme(lambda w: 'sig=magic;x="1"'), "unsupported_scheme", scheme="jwt"),
    bad("scheme-hwk", scheme(hwk), "unsupported_scheme", scheme="jwt"),
    bad(
        "scheme-hwk-malformed",
        scheme(lambda w: 'sig=hwk;kty="OKP";kid="k"'),
        "unsupported_scheme",
        scheme="jwt",
    ),
    bad(
        "scheme-jwks-uri",
        scheme(lambda w: f'sig=jwks_uri;id="{AP_ISSUER}";dwk="aauth-agent.json";kid="ap-1"'),
        "unsupported_scheme",
        scheme="jwt",
    ),
    bad(
        "scheme-jwks",
        scheme(lambda w: f'sig=jwks;url="{JWKS}";kid="ap-1"'),
        "unsupported_scheme",
        scheme="jwt",
    ),
    bad(
        "scheme-jkt-jwt",
        scheme(lambda w: f'sig=jkt-jwt;jwt="{w.agent_token}"'),
        "unsupported_scheme",
        scheme="jwt",
    ),
    bad(
        "scheme-self-jwt",
        scheme(lambda w: f'sig=self-jwt;jwt="{w.agent_token}"'),
        "unsupported_scheme",
        scheme="jwt",
    ),
    bad(
        "scheme-x509",
        scheme(lambda w: f'sig=x509;x5u="{AP_ISSUER}/cert.pem";x5t=:{b64std(bytes(32))}:'),
        "unsupported_scheme",
        scheme="jwt",
    ),
    bad(
        "scheme-cached",
        scheme(lambda w: 'sig=cached;cid="2f9c8a1e-a7b3"'),
        "unsupported_scheme",
        scheme="jwt",
    ),
    # the jwt parameter
    bad("jwt-param-missing", scheme(lambda w: "sig=jwt"), "invalid_signature"),
    bad("jwt-param-token", scheme(lambda w: "sig=jwt;jwt=abc"), "invalid_signature"),
    bad("jwt-param-bytes", scheme(lambda w: "sig=jwt;jwt=:YWJj:"), "invalid_signature"),
    bad("jwt-param-integer", scheme(lambda w: "sig=jwt;jwt=5"), "invalid_signature"),
    bad("jwt-param-empty", scheme(lambda w: 'sig=jwt;jwt=""'), "invalid_signature"),
    bad(
        "jwt-cache-not-boolean",
        scheme(lambda w: f'sig=jwt;jwt="{w.agent_token}";cache="yes"'),
        "invalid_signature",
    ),
    # token shape
    bad("token-not-a-jwt", raw_token(lambda w: "not-a-jwt"), "invalid_jwt"),
    bad("token-two-segments", raw_token(lambda w: w.agent_token.rsplit(".", 1)[0]), "invalid_jwt"),
    bad("token-five-segments", raw_token(lambda w: w.agent_token + ".a.b"), "invalid_jwt"),
    bad("token-bad-base64", raw_token(lambda w: "a$b.c%d.e"), "invalid_jwt"),
    bad(
        "token-padded-base64",
        raw_token(lambda w: w.agent_token.replace(".", "==.", 1)),
        "invalid_jwt",
    ),
    bad(
        "token-header-not-json",
        raw_token(lambda w: hand_jwt(b"not json", json.dumps({}).encode(), w.provider.key)),
        "invalid_jwt",
    ),
    bad(
        "token-header-not-object",
        raw_token(lambda w: hand_jwt(b"[]", b"{}", w.provider.key)),
        "invalid_jwt",
    ),
    bad(
        "token-header-duplicate-member",
        raw_token(
            lambda w: hand_jwt(
                b'{"alg":"Ed25519","alg":"none","typ":"aa-agent+jwt","kid":"ap-1"}',
                json.dumps({}).encode(),
                w.provider.key,
            )
        ),
        "invalid_jwt",
    ),
    bad("token-header-crit", theader(crit=["exp"]), "invalid_jwt"),
    bad(
        "token-payload-not-object",
        raw_token(
            lambda w: hand_jwt(
                json.dumps({"alg": "Ed25519", "typ": "aa-agent+jwt", "kid": "ap-1"}).encode(),
                b"[1, 2, 3]",
                w.provider.key,
            )
        ),
        "invalid_jwt",
    ),
    bad(
        "token-payload-not-utf8",
        raw_token(
            lambda w: hand_jwt(
                json.dumps({"alg": "Ed25519", "typ": "aa-agent+jwt", "kid": "ap-1"}).encode(),
                b"\xff\xfe",
                w.provider.key,
            )
        ),
        "invalid_jwt",
    ),
    bad("token-oversized", claims(padding="x" * 20000), "invalid_signature"),
    # typ
    bad("typ-person", theader(typ="aa-person+jwt"), "invalid_jwt"),
    bad("typ-auth", theader(typ="aa-auth+jwt"), "invalid_jwt"),
    bad("typ-resource", theader(typ="aa-resource+jwt"), "invalid_jwt"),
    bad("typ-plain-jwt", theader(typ="JWT"), "invalid_jwt"),
    bad("typ-uppercase", theader(typ="AA-AGENT+JWT"), "invalid_jwt"),
    bad("typ-missing", theader(typ=DROP), "invalid_jwt"),
    # header alg
    bad("alg-eddsa", theader(alg="EdDSA"), "invalid_jwt"),
    bad(
        "alg-none",
        raw_token(
            lambda w: hand_jwt(
                {"alg": "none", "typ": "aa-agent+jwt", "kid": "ap-1"}, agent_claims(w), None
            )
        ),
        "invalid_jwt",
    ),
    bad("alg-hs256", theader(alg="HS256"), "invalid_jwt"),
    bad("alg-rs256", theader(alg="RS256"), "invalid_jwt"),
    bad("alg-es256-on-ed25519-key", theader(alg="ES256"), "invalid_jwt"),
    bad("alg-missing", theader(alg=DROP), "invalid_jwt"),
    # issuer key
    bad("kid-unknown", theader(kid="ap-2"), "unknown_key"),
    bad(
        "kid-known-wrong-key",
        raw_token(lambda w: token(w, key=PrivateKey.generate("Ed25519", kid="ap-1"))),
        "invalid_jwt",
    ),
    bad("kid-missing", theader(kid=DROP), "invalid_jwt"),
    bad("kid-integer", theader(kid=1), "invalid_jwt"),
    # exp / iat / lifetime / jti
    bad("exp-equals-now", claims(iat=NOW - 3600, exp=NOW), "expired_jwt"),
    bad("exp-past", claims(iat=NOW - 100, exp=NOW - 1), "expired_jwt"),
    bad("exp-missing", claims(exp=DROP), "invalid_jwt"),
    bad("exp-string", claims(exp=str(NOW + 3600)), "invalid_jwt"),
    bad("exp-boolean", claims(exp=True), "invalid_jwt"),
    bad("iat-future-beyond-window", claims(iat=NOW + 120, exp=NOW + 1200), "clock_skew"),
    bad("iat-missing", claims(iat=DROP), "invalid_jwt"),
    bad("lifetime-over-24h", claims(iat=NOW, exp=NOW + 86401), "invalid_jwt"),
    bad("lifetime-exp-before-iat", claims(iat=NOW + 10, exp=NOW + 5), "invalid_jwt"),
    bad("jti-missing", claims(jti=DROP), "invalid_jwt"),
    # cnf
    bad("cnf-missing", claims(cnf=DROP), "invalid_jwt"),
    bad("cnf-not-object", claims(cnf="jwk"), "invalid_jwt"),
    bad("cnf-jwk-incomplete", cnf(x=DROP), "invalid_key"),
    bad("cnf-jwk-without-alg", cnf(alg=DROP), "unsupported_algorithm", alg=ALGS),
    bad("cnf-jwk-eddsa", cnf(alg="EdDSA"), "unsupported_algorithm", alg=ALGS),
    bad(
        "cnf-jwk-es384",
        lambda w: with_token(
            w,
            token(
                w,
                claims={
                    "cnf": {
                        "jwk": {
                            "kty": "EC",
                            "crv": "P-384",
                            "x": b64(bytes(48)),
                            "y": b64(bytes(48)),
                            "alg": "ES384",
                        }
                    }
                },
            ),
        ),
        "unsupported_algorithm",
        alg=ALGS,
    ),
    bad("cnf-jwk-crv-mismatch", cnf(crv="Ed448"), "invalid_key"),
    bad("cnf-jwk-kty-mismatch", cnf(kty="EC", y=b64(bytes(32))), "invalid_key"),
    bad("cnf-jwk-private-member", cnf(d=b64(bytes(32))), "invalid_key"),
    bad("cnf-jwk-x-not-base64url", cnf(x="!!!"), "invalid_key"),
    bad("cnf-jwk-x-wrong-length", cnf(x=b64(bytes(31))), "invalid_key"),
    bad(
        "request-signed-by-other-key",
        lambda w: w.signed(key=PrivateKey.generate("Ed25519")),
        "invalid_signature",
    ),
    bad(
        "request-signed-by-es256-key",
        lambda w: w.signed(key=PrivateKey.generate("ES256")),
        "invalid_signature",
    ),
    bad(
        "signature-key-token-swapped",
        lambda w: set_header(
            w.signed(),
            "Signature-Key",
            jwt_key_header(w.provider.issue(w.agent_key.public, "assistant")),
        ),
        "invalid_signature",
    ),
    # iss / dwk / sub / ps
    bad("iss-http", claims(iss="http://agent.example"), "invalid_jwt"),
    bad("iss-port", claims(iss="https://agent.example:8443"), "invalid_jwt"),
    bad("iss-path", claims(iss="https://agent.example/v1"), "invalid_jwt"),
    bad("iss-uppercase", claims(iss="https://Agent.example"), "invalid_jwt"),
    bad("iss-trailing-slash", claims(iss="https://agent.example/"), "invalid_jwt"),
    bad("iss-missing", claims(iss=DROP), "invalid_jwt"),
    bad("iss-not-string", claims(iss=["https://agent.example"]), "invalid_jwt"),
    bad(
        "iss-unknown-host",
        claims(iss="https://other.example", sub="aauth:assistant@other.example"),
        "invalid_key",
    ),
    bad("dwk-person", claims(dwk="aauth-person.json"), "invalid_jwt"),
    bad("dwk-traversal", claims(dwk="../aauth-agent.json"), "invalid_jwt"),
    bad("dwk-missing", claims(dwk=DROP), "invalid_jwt"),
    bad("sub-not-agent-id", claims(sub="assistant"), "invalid_jwt"),
    bad("sub-other-domain", claims(sub="aauth:assistant@evil.example"), "invalid_jwt"),
    bad("sub-plus-without-parent", claims(sub="aauth:assistant+x@agent.example"), "invalid_jwt"),
    bad("sub-missing", claims(sub=DROP), "invalid_jwt"),
    bad("ps-not-server-id", claims(ps="http://ps.example"), "invalid_jwt"),
    # metadata and JWKS
    bad("metadata-issuer-missing", metadata(issuer=DROP), "issuer_missing"),
    bad("metadata-issuer-different", metadata(issuer="https://other.example"), "issuer_mismatch"),
    bad("metadata-issuer-trailing-slash", metadata(issuer=AP_ISSUER + "/"), "issuer_mismatch"),
    bad("metadata-404", document(META, FetchResponse(404, {}, b"")), "invalid_key"),
    bad("metadata-not-json", document(META, FetchResponse(200, {}, b"<html>")), "invalid_key"),
    bad("metadata-jwks-uri-missing", metadata(jwks_uri=DROP), "invalid_key"),
    bad(
        "metadata-jwks-uri-http", metadata(jwks_uri="http://agent.example/jwks.json"), "invalid_key"
    ),
    bad("jwks-not-a-jwks", jwks(lambda w: {"foo": 1}), "invalid_key"),
    bad(
        "jwks-key-without-alg",
        jwks(lambda w: {"keys": [ap_jwk(w, alg=DROP)]}),
        "unsupported_algorithm",
        alg=ALGS,
    ),
    bad(
        "jwks-key-eddsa",
        jwks(lambda w: {"keys": [ap_jwk(w, alg="EdDSA")]}),
        "unsupported_algorithm",
        alg=ALGS,
    ),
    bad("jwks-duplicate-kid", jwks(lambda w: {"keys": [ap_jwk(w), ap_jwk(w)]}), "invalid_key"),
    bad(
        "jwks-private-member",
        jwks(lambda w: {"keys": [ap_jwk(w, d=b64(bytes(32)))]}),
        "invalid_key",
    ),
    # discovery through the real fetcher: egress policy and redirects
    bad(
        "egress-issuer-private-address",
        lambda w: w.signed(),
        "invalid_key",
        config=net({"agent.example": PRIVATE_IP}),
    ),
    bad(
        "egress-jwks-uri-private-address",
        served_provider("localhost", jwks_uri="https://internal.example/jwks.json"),
        "invalid_key",
        config=net(PRIVATE_JWKS),
    ),
    bad(
        "metadata-redirect",
        served_provider("127.0.0.1", metadata_redirect=True),
        "invalid_key",
        config=net(LOOPBACK),
    ),
    bad(
        "jwks-redirect",
        served_provider("localhost", jwks_redirect=True),
        "invalid_key",
        config=net(LOOPBACK),
    ),
    # header sizes and characters
    bad(
        "oversized-signature-input",
        lambda w: edit_header(
            w.signed(), "Signature-Input", lambda v: v + ';pad="' + "x" * 17000 + '"'
        ),
        "invalid_signature",
    ),
    bad(
        "oversized-signature",
        lambda w: edit_header(w.signed(), "Signature", lambda v: v + ", pad=:" + "A" * 17000 + ":"),
        "invalid_signature",
    ),
    bad(
        "oversized-signature-key",
        lambda w: edit_header(
            w.signed(), "Signature-Key", lambda v: v + ';pad="' + "x" * 17000 + '"'
        ),
        "invalid_signature",
    ),
    bad("covered-header-non-ascii", covered_note("caf\u00e9"), "invalid_signature"),
    bad("covered-header-line-break", covered_note("a\r\nb"), "invalid_signature"),
    bad("covered-header-absent", covered_note(None), "invalid_signature"),
    bad(
        "covered-unknown-derived-component",
        sign_input(
            lambda w: f'sig=("@method" "@authority" "@path" "signature-key" "@nope");created={NOW}'
        ),
        "invalid_signature",
    ),
    bad(
        "covered-derived-component-with-param",
        sign_input(
            lambda w: f'sig=("@method";req "@authority" "@path" "signature-key");created={NOW}'
        ),
        "invalid_signature",
    ),
    bad(
        "tampered-path",
        lambda w: replace(w.signed(), url="https://resource.example/admin"),
        "invalid_signature",
    ),
    bad(
        "tampered-authority",
        lambda w: replace(w.signed(), url="https://evil.example/whoami"),
        "invalid_signature",
    ),
    bad("tampered-method", lambda w: replace(w.signed(), method="DELETE"), "invalid_signature"),
    # signature bytes
    bad(
        "signature-63-bytes",
        signature_bytes(lambda s: f"sig=:{b64std(s[:63])}:"),
        "invalid_signature",
    ),
    bad(
        "signature-65-bytes",
        signature_bytes(lambda s: f"sig=:{b64std(s + b'x')}:"),
        "invalid_signature",
    ),
    bad(
        "signature-all-zero",
        signature_bytes(lambda s: f"sig=:{b64std(bytes(64))}:"),
        "invalid_signature",
    ),
    bad("signature-empty", field_value("Signature", "sig=::"), "invalid_signature"),
    bad(
        "signature-es256-63-bytes",
        lambda w: edit_header(
            es256_agent(w), "Signature", lambda v: f"sig=:{b64std(base64.b64decode(v[5:-1])[:63])}:"
        ),
        "invalid_signature",
    ),
    bad(
        "signature-padded-base64-string",
        signature_bytes(lambda s: f'sig="{b64std(s)}"'),
        "invalid_signature",
    ),
    bad(
        "signature-base64url-when-disabled",
        signature_bytes(lambda s: f'sig="{b64(s)}"'),
        "invalid_signature",
        config=cfg(accept_base64url=False),
    ),
]


# -- running one row ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with local_server() as running:
        yield running


Outcome = AgentIdentity | HttpResponse | None


def _sync(guard: ResourceGuard, request: HttpRequest) -> Outcome:
    try:
        return guard.check(request)
    except AAuthError as exc:
        return exc.to_response()


def _async(guard: ResourceGuard, request: HttpRequest) -> Outcome:
    async def run() -> Outcome:
        try:
            return await guard.acheck(request)
        except AAuthError as exc:
            return exc.to_response()

    return asyncio.run(run())


def _as_tuple(outcome: Outcome) -> object:
    if isinstance(outcome, HttpResponse):
        return (outcome.status, outcome.headers, outcome.body)
    return outcome


def _check(case: Case, outcome: Outcome, world: HostileWorld) -> None:
    if case.status == 200:
        assert isinstance(outcome, AgentIdentity), outcome and _describe(outcome)
        assert outcome.agent.startswith("aauth:assistant@")
        return
    assert isinstance(outcome, HttpResponse), f"accepted: {outcome}"
    assert outcome.status == case.status, _describe(outcome)
    sig_error = outcome.header("Signature-Error")
    if case.requirement is not None:
        assert sig_error is None
        requirement = outcome.header("AAuth-Requirement")
        assert requirement is not None
        assert parse_aauth_requirement(requirement).requirement == case.requirement
        return
    assert sig_error is not None, _describe(outcome)
    parsed = parse_signature_error(sig_error)
    assert parsed.code == case.error, _describe(outcome)
    assert parsed.required_input == case.required_input
    assert outcome.header("Accept-Signature-Scheme") == case.accept_scheme
    assert outcome.header("Accept-Signature-Alg") == case.accept_alg
    assert json.loads(outcome.body)["error"] == case.error


def _describe(outcome: Outcome) -> str:
    if isinstance(outcome, HttpResponse):
        return f"{outcome.status} {outcome.headers} {outcome.body!r}"
    return repr(outcome)


def test_table_is_large_and_distinct() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))
    assert sum(case.status != 200 for case in CASES) >= 70


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_request(case: Case, server: LocalServer) -> None:
    world = hostile_world(server)
    request = case.build(world)
    sync_outcome = _sync(ResourceGuard(case.config(world)), request)
    async_outcome = _async(ResourceGuard(case.config(world)), request)
    _check(case, sync_outcome, world)
    assert _as_tuple(sync_outcome) == _as_tuple(async_outcome)
