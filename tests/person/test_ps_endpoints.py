"""The PS endpoints through both drivers: metadata, the person and auth token endpoints with
every token-endpoint error of digest 5.6 that a three-party PS can produce, and revocation."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

from aauth_server.keys.jwk import PrivateKey
from aauth_server.person import Approve, Decision, DefaultPolicy, Deny, TokenRequest
from aauth_server.person.subjects import directed_sub
from aauth_server.tokens.aauth import (
    DWK_PERSON,
    TYP_AUTH,
    TYP_PERSON,
    check_claims,
    check_header,
    mint_agent_token,
)
from aauth_server.tokens.jwt import decode_unverified, verify_jwt_signature
from tests.person.ps_harness import ALICE, SUBJECT_SECRET, PsWorld, Sender, body_of, sender
from tests.support import AP_ISSUER, AS_ISSUER, PS_ISSUER, RESOURCE

OTHER_RESOURCE = "https://other.example"
CODE = re.compile(r'code="([0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4})"')


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make(mode: str, **overrides: Any) -> tuple[PsWorld, Sender]:
    pw = PsWorld(**overrides)
    return pw, sender(pw.app, mode)


def auto(**kw: Any) -> DefaultPolicy:
    agent = "aauth:assistant@agent.example"
    return DefaultPolicy(auto_approve_agents=(agent,), **kw)


def verified_token(pw: PsWorld, token: str, typ: str, aud: str = RESOURCE) -> dict[str, Any]:
    jwt = decode_unverified(token)
    assert check_header(jwt, typ) == typ
    verify_jwt_signature(jwt, pw.world.ps_key.public)
    return dict(check_claims(jwt, typ=typ, now=pw.clock.now(), audience=aud))


def assert_error(response: Any, status: int, error: str) -> dict[str, Any]:
    assert response.status == status, response.body
    payload = body_of(response)
    assert payload["error"] == error, payload
    if status == 401:
        assert response.header("signature-error").startswith(f"error={error}")
    else:
        assert response.header("content-type") == "application/problem+json"
    return dict(payload)


# -- metadata -----------------------------------------------------------------------------------


def test_metadata_names_every_endpoint_on_the_public_origin(mode: str) -> None:
    pw, send = make(mode, public_origin="https://login.ps.example")
    response = send(pw.world.signed("GET", "/.well-known/aauth-person.json", origin=PS_ISSUER))
    assert response.status == 200
    base = "https://login.ps.example"
    assert body_of(response) == {
        "issuer": PS_ISSUER,
        "jwks_uri": base + "/jwks.json",
        "person_token_endpoint": base + "/person",
        "auth_token_endpoint": base + "/token",
        "interaction_endpoint": base + "/interaction",
        "mission_endpoint": base + "/mission",
        "permission_endpoint": base + "/permission",
        "audit_endpoint": base + "/audit",
        "revocation_endpoint": base + "/revoke",
        "scopes_supported": ["openid", "profile"],
        "claims_supported": ["sub", "name"],
        "accept_signature_algs": list(pw.config.accept_algs),
        "name": "Test PS",
    }
    jwks = send(pw.world.signed("GET", "/jwks.json", origin=PS_ISSUER))
    assert body_of(jwks) == {"keys": [pw.world.ps_key.public_jwk()]}
    assert ("POST", "/person") in pw.ps.routes() and ("DELETE", "/pending/") in pw.ps.routes()
    assert send(pw.world.signed("GET", "/elsewhere", origin=PS_ISSUER)).status == 404


# -- person token endpoint ------------------------------------------------------------------------


def test_unbound_agent_gets_an_interaction_with_a_crockford_code(mode: str) -> None:
    pw, send = make(mode, policy=auto())  # even a listed agent must be bound first
    response = send(pw.person_request())
    assert response.status == 202
    requirement = response.header("aauth-requirement") or ""
    # The URL names the request, so the consent page can lock it after wrong codes.
    assert requirement.startswith(
        'requirement=interaction; url="https://ps.example/consent/request/'
    )
    assert CODE.search(requirement)
    assert (response.header("location") or "").startswith("https://ps.example/pending/")
    assert response.header("retry-after") == "5"
    assert response.header("cache-control") == "no-store"
    assert body_of(response) == {"status": "pending"}


@pytest.mark.parametrize("capabilities", [None, ["clarification"], []])
def test_unbound_agent_without_interaction_is_unreachable(mode: str, capabilities: Any) -> None:
    pw, send = make(mode)
    assert_error(send(pw.person_request(capabilities=capabilities)), 403, "user_unreachable")


def test_bound_agent_approved_by_policy_gets_a_person_token(mode: str) -> None:
    pw, send = make(mode, policy=auto())
    pw.bind()
    pw.tick(100)
    response = send(pw.person_request())
    assert response.status == 200, response.body
    assert response.header("cache-control") == "no-store"
    payload = body_of(response)
    claims = verified_token(pw, payload["person_token"], TYP_PERSON)
    assert claims["iss"] == PS_ISSUER and claims["dwk"] == DWK_PERSON
    assert claims["sub"] == directed_sub(SUBJECT_SECRET, ALICE, RESOURCE)
    assert claims["cnf"]["jwk"] == dict(pw.world.agent_key.public.jwk)
    assert "scope" not in claims
    # The agent token (3600 s from T0) caps the lifetime, 100 s later.
    assert payload["expires_in"] == 3500 == claims["exp"] - claims["iat"]


def test_directed_sub_is_stable_per_person_and_resource() -> None:
    a = directed_sub(SUBJECT_SECRET, ALICE, RESOURCE)
    assert a == directed_sub(SUBJECT_SECRET, ALICE, RESOURCE)
    assert a != directed_sub(SUBJECT_SECRET, ALICE, OTHER_RESOURCE)
    assert a != directed_sub(SUBJECT_SECRET, "bob", RESOURCE)
    assert a != directed_sub(b"another-secret-0123456789abcdef!!", ALICE, RESOURCE)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", a)


def test_policy_resource_list_limits_auto_approval(mode: str) -> None:
    pw, send = make(mode, policy=auto(auto_approve_resources=(OTHER_RESOURCE,)))
    pw.bind()
    assert send(pw.person_request(OTHER_RESOURCE)).status == 200
    assert send(pw.person_request(RESOURCE)).status == 202


def test_bound_agent_with_the_person_present_waits_for_approval(mode: str) -> None:
    pw, send = make(mode)
    pw.bind()
    assert_error(send(pw.person_request(capabilities=[])), 403, "user_unreachable")
    pw.ps.presence.touch(ALICE)
    response = send(pw.person_request(capabilities=[]))
    assert response.status == 202
    assert response.header("aauth-requirement") == "requirement=approval"
    pw.tick(31)  # presence lapses without a refresh
    assert_error(send(pw.person_request(capabilities=[])), 403, "user_unreachable")


@dataclass
class Refuse:
    def decide(self, request: TokenRequest) -> Decision:
        return Deny("not on weekends")


def test_policy_denial_answers_denied(mode: str) -> None:
    pw, send = make(mode, policy=Refuse())
    pw.bind()
    payload = assert_error(send(pw.person_request()), 403, "denied")
    assert payload["detail"] == "not on weekends"


def test_prompt_consent_overrides_auto_approval_and_prompt_none_refuses_to_ask(mode: str) -> None:
    pw, send = make(mode, policy=auto())
    pw.bind()
    assert send(pw.person_request(prompt="consent")).status == 202
    pw2, send2 = make(mode)
    pw2.bind()
    assert_error(send2(pw2.person_request(prompt="none")), 403, "user_unreachable")


@pytest.mark.parametrize(
    "body",
    [
        {"capabilities": ["interaction"]},
        {"resource": "http://resource.example"},
        {"resource": "https://resource.example/"},
        {"resource": RESOURCE, "capabilities": "interaction"},
        {"resource": RESOURCE, "mission_s256": "abc"},
        {"resource": RESOURCE, "device": "x" * 65},
        {"resource": RESOURCE, "prompt": "always"},
        {"resource": RESOURCE, "justification": 7},
        [RESOURCE],
        b"resource=https://resource.example",
    ],
)
def test_person_token_invalid_request(mode: str, body: Any) -> None:
    pw, send = make(mode)
    assert_error(send(pw.post("/person", body)), 400, "invalid_request")


def test_person_token_needs_a_json_content_type(mode: str) -> None:
    pw, send = make(mode)
    request = pw.post("/person", {"resource": RESOURCE}, headers=[("Content-Type", "text/plain")])
    assert_error(send(request), 400, "invalid_request")


def test_a_person_token_in_signature_key_is_invalid_jwt(mode: str) -> None:
    pw, send = make(mode)
    request = pw.post("/person", {"resource": RESOURCE}, token=pw.person_token())
    assert_error(send(request), 401, "invalid_jwt")


def test_a_sub_agent_signer_is_refused(mode: str) -> None:
    pw, send = make(mode)
    token = mint_agent_token(
        pw.world.provider.key,
        iss=AP_ISSUER,
        sub="aauth:assistant+helper@agent.example",
        parent_agent="aauth:assistant@agent.example",
        cnf_jwk=pw.world.agent_key.public,
        now=pw.clock.now(),
    )
    request = pw.post("/person", {"resource": RESOURCE}, token=token)
    assert_error(send(request), 400, "invalid_request")


def test_the_body_must_be_covered(mode: str) -> None:
    pw, send = make(mode)
    request = pw.post(
        "/person",
        {"resource": RESOURCE},
        components=["@method", "@authority", "@path", "signature-key"],
    )
    assert_error(send(request), 401, "invalid_input")


# -- auth token endpoint --------------------------------------------------------------------------


def bound(mode: str, **overrides: Any) -> tuple[PsWorld, Sender]:
    pw, send = make(mode, **overrides)
    pw.bind()
    return pw, send


def test_auth_token_issued_by_policy(mode: str) -> None:
    pw, send = bound(mode, policy=auto(auto_approve_scopes=("data.read", "data.write")))
    presented = pw.person_token(lifetime=1200, tenant="acme")
    rt = pw.resource_token(presented, scope="data.read data.write")
    response = send(pw.auth_request(rt, presented))
    assert response.status == 200, response.body
    payload = body_of(response)
    claims = verified_token(pw, payload["auth_token"], TYP_AUTH)
    assert claims["iss"] == claims["ps"] == PS_ISSUER
    assert claims["dwk"] == DWK_PERSON and claims["aud"] == RESOURCE
    assert claims["sub"] == pw.sub_for(ALICE)
    assert claims["cnf"]["jwk"] == dict(pw.world.agent_key.public.jwk)
    assert claims["scope"] == "data.read data.write" and claims["tenant"] == "acme"
    # The presented token (1200 s) caps the auth token's lifetime.
    assert payload["expires_in"] == 1200 == claims["exp"] - claims["iat"]


@dataclass
class ReadOnly:
    def decide(self, request: TokenRequest) -> Decision:
        return Approve(scopes=frozenset({"data.read", "data.admin"}))


def test_granted_scope_is_never_broader_than_the_resource_token(mode: str) -> None:
    pw, send = bound(mode, policy=ReadOnly())
    presented = pw.person_token()
    response = send(
        pw.auth_request(pw.resource_token(presented, "data.read data.write"), presented)
    )
    claims = verified_token(pw, body_of(response)["auth_token"], TYP_AUTH)
    assert claims["scope"] == "data.read"


def test_auth_request_the_policy_asks_about_is_deferred(mode: str) -> None:
    pw, send = bound(mode)
    presented = pw.person_token()
    response = send(pw.auth_request(pw.resource_token(presented), presented))
    assert response.status == 202 and CODE.search(response.header("aauth-requirement") or "")
    response = send(pw.auth_request(pw.resource_token(presented), presented, capabilities=[]))
    assert_error(response, 403, "user_unreachable")


def _swap(pw: PsWorld, field: str, value: Any) -> dict[str, Any]:
    presented = pw.person_token()
    body = {"resource_token": pw.resource_token(presented), "presented_token": presented}
    body[field] = value
    return body


def _rt(pw: PsWorld, presented: str | None = None, **overrides: Any) -> dict[str, Any]:
    presented = presented or pw.person_token()
    return {
        "resource_token": pw.resource_token(presented, **overrides),
        "presented_token": presented,
    }


def _other_key_person_token(pw: PsWorld) -> str:
    from aauth_server.tokens.aauth import mint_person_token

    return mint_person_token(
        pw.world.ps_key,
        iss=PS_ISSUER,
        aud=RESOURCE,
        sub=pw.sub_for(),
        cnf_jwk=PrivateKey.generate("Ed25519").public,
        now=pw.clock.now(),
    )


AUTH_ERRORS: list[tuple[str, Any, str]] = [
    ("no-resource-token", lambda pw: {"presented_token": pw.person_token()}, "invalid_request"),
    ("no-presented-token", lambda pw: {"resource_token": "x"}, "invalid_request"),
    # Chaining and sub-agents: tests/chaining has every case.
    ("upstream", lambda pw: {**_rt(pw), "upstream_token": "x.y.z"}, "invalid_upstream_token"),
    ("subagent", lambda pw: {**_rt(pw), "subagent_token": "x.y.z"}, "invalid_subagent_token"),
    ("rt-garbage", lambda pw: _swap(pw, "resource_token", "not-a-jwt"), "invalid_resource_token"),
    (
        "rt-is-a-person-token",
        lambda pw: _swap(pw, "resource_token", pw.person_token()),
        "invalid_resource_token",
    ),
    ("rt-four-party", lambda pw: _rt(pw, aud=AS_ISSUER), "invalid_resource_token"),
    (
        "rt-unknown-key",
        lambda pw: _rt(pw, key=PrivateKey.generate("Ed25519", kid="rs-9")),
        "invalid_resource_token",
    ),
    (
        "rt-forged",
        lambda pw: _rt(pw, key=PrivateKey.generate("Ed25519", kid="rs-1")),
        "invalid_resource_token",
    ),
    ("rt-expired", lambda pw: _rt(pw, now=pw.clock.now() - 301), "expired_resource_token"),
    ("rt-future-iat", lambda pw: _rt(pw, now=pw.clock.now() + 120), "clock_skew"),
    ("rt-other-agent-key", lambda pw: _rt(pw, agent_jkt="A" * 43), "invalid_resource_token"),
    ("rt-other-ps", lambda pw: _rt(pw, ps="https://ps2.example"), "invalid_resource_token"),
    ("rt-other-presented-jti", lambda pw: _rt(pw, presented_jti="x"), "invalid_resource_token"),
    ("rt-other-sub", lambda pw: _rt(pw, sub="someone"), "invalid_resource_token"),
    (
        "rt-tenant-changed",
        lambda pw: _rt(pw, extra={"tenant": "evil"}),
        "invalid_resource_token",
    ),
    (
        "rt-mission-stripped",
        lambda pw: _rt(pw, pw.person_token(mission_s256="m" * 43), drop=("mission_s256",)),
        "invalid_resource_token",
    ),
    (
        "presented-garbage",
        lambda pw: _swap(pw, "presented_token", "x.y.z"),
        "invalid_presented_token",
    ),
    (
        "presented-other-audience",
        lambda pw: _rt(pw, pw.person_token(aud=OTHER_RESOURCE)),
        "invalid_presented_token",
    ),
    (
        "presented-other-key",
        lambda pw: _rt(
            pw, _other_key_person_token(pw), agent_jkt=pw.world.agent_key.public.thumbprint
        ),
        "invalid_presented_token",
    ),
    (
        "presented-expired",
        lambda pw: _rt(pw, pw.person_token(lifetime=60, now=pw.clock.now() - 120)),
        "expired_presented_token",
    ),
    (
        "not-bound-to-this-person",
        lambda pw: _rt(pw, pw.person_token("bob")),
        "invalid_resource_token",
    ),
]


@pytest.mark.parametrize(("name", "build", "error"), AUTH_ERRORS, ids=[e[0] for e in AUTH_ERRORS])
def test_auth_token_errors(mode: str, name: str, build: Any, error: str) -> None:
    pw, send = bound(mode, policy=auto(auto_approve_scopes=("data.read",)))
    assert_error(send(pw.post("/token", build(pw))), 400, error)


def test_the_control_case_of_the_error_table_succeeds(mode: str) -> None:
    pw, send = bound(mode, policy=auto(auto_approve_scopes=("data.read",)))
    agent = decode_unverified(pw.world.agent_token).payload
    mission = pw.ps.missions.approve(
        agent_issuer=agent["iss"], agent=agent["sub"], person=ALICE, description="A mission"
    )
    presented = pw.person_token(tenant="t", mission_s256=mission.s256)
    assert send(pw.post("/token", _rt(pw, presented))).status == 200


def test_an_unbound_agent_cannot_use_a_resource_token(mode: str) -> None:
    pw, send = make(mode, policy=auto(auto_approve_scopes=("data.read",)))
    assert_error(send(pw.post("/token", _rt(pw))), 400, "invalid_resource_token")


def test_a_revoked_resource_token(mode: str) -> None:
    pw, send = bound(mode, policy=auto(auto_approve_scopes=("data.read",)))
    body = _rt(pw)
    assert send(pw.resource_revocation(body["resource_token"])).status == 200
    assert_error(send(pw.post("/token", body)), 400, "revoked_resource_token")


def test_tokens_issued_before_the_agent_token_was_revoked_are_revoked(mode: str) -> None:
    pw, send = bound(mode, policy=auto(auto_approve_scopes=("data.read",)))
    issued = send(pw.person_request())
    presented = body_of(issued)["person_token"]
    revoked = send(pw.revoke_agent_token())
    assert revoked.status == 200 and revoked.body == b""
    # The revoked agent token itself: 401 revoked_jwt at every PS endpoint.
    assert_error(send(pw.person_request()), 401, "revoked_jwt")
    assert_error(send(pw.post("/token", _rt(pw, presented))), 401, "revoked_jwt")
    # A fresh agent token of the same agent: the person token it got earlier is revoked too.
    fresh = pw.new_agent_token()
    pw.tick(1)
    request = pw.post("/token", _rt(pw, presented), token=fresh)
    assert_error(send(request), 400, "revoked_presented_token")
    assert send(pw.post("/token", _rt(pw, pw.person_token()), token=fresh)).status == 200


def test_the_cascade_holds_after_many_requests_with_one_agent_token(mode: str) -> None:
    # The PS stores which agent a jti names once per worker, not once per request.
    pw, send = bound(mode, policy=auto(auto_approve_scopes=("data.read",)))
    presented = [body_of(send(pw.person_request()))["person_token"] for _ in range(3)]
    assert send(pw.post("/token", _rt(pw, presented[0]))).status == 200
    assert send(pw.revoke_agent_token()).status == 200
    fresh = pw.new_agent_token()
    pw.tick(1)
    for token in presented:
        request = pw.post("/token", _rt(pw, token), token=fresh)
        assert_error(send(request), 400, "revoked_presented_token")


# -- revocation endpoint ------------------------------------------------------------------------


def test_revocation_errors(mode: str) -> None:
    pw, send = make(mode)
    key = pw.world.provider.key
    bad = pw.server_signed(b'{"jti":"x"}', issuer=AP_ISSUER, dwk="aauth-agent.json", key=key)
    assert_error(send(bad), 400, "invalid_request")
    far = b'{"jti":"x","exp":9999999999}'
    assert_error(
        send(pw.server_signed(far, issuer=AP_ISSUER, dwk="aauth-agent.json", key=key)),
        400,
        "invalid_request",
    )
    wrong = pw.server_signed(
        b'{"jti":"x","exp":1}', issuer=PS_ISSUER, dwk=DWK_PERSON, key=pw.world.ps_key
    )
    assert_error(send(wrong), 403, "unsupported_iss")
    uncovered = pw.server_signed(
        b'{"jti":"x","exp":1}',
        issuer=AP_ISSUER,
        dwk="aauth-agent.json",
        key=key,
        components=("@method", "@authority", "@path", "signature-key"),
    )
    assert_error(send(uncovered), 401, "invalid_input")
    by_agent = pw.post("/revoke", {"jti": "x", "exp": 1})
    assert_error(send(by_agent), 401, "unsupported_scheme")
    limited, send_limited = make(mode, revocations_per_minute=0)
    response = send_limited(limited.revoke_agent_token())
    assert_error(response, 429, "rate_limited")
    assert response.header("retry-after") == "60"


@pytest.mark.parametrize(
    "overrides",
    [
        {"subject_secret": b"short"},
        {"issuer": "https://ps.example/"},
        {"person_token_lifetime": 7200},
        {"pending_prefix": "/pending"},
        {"store": "memory://", "async_store": object()},
    ],
)
def test_unsafe_configurations_are_refused(overrides: dict[str, Any]) -> None:
    from aauth_server.resource.config import ConfigurationError

    with pytest.raises(ConfigurationError):
        PsWorld(**overrides)
