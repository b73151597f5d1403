"""Dialects of other stacks accepted where it costs no security (issue 9 item 3):
loopback agent ids without the port under ``dev_loopback`` only, and the pre-rename
``person_token_jti`` beside ``presented_jti`` in resource tokens."""

from __future__ import annotations

from typing import Any

import pytest

from aauth_server.identifiers import agent_domain_matches
from aauth_server.keys.jwk import PrivateKey
from aauth_server.resource import PersonIdentity, ResourceGuard
from aauth_server.tokens.aauth import (
    TYP_AGENT,
    TYP_AUTH,
    TYP_RESOURCE,
    check_claims,
    mint_agent_token,
)
from aauth_server.tokens.jwt import TokenError, decode_unverified
from tests.person.ps_harness import ALICE, PsWorld, body_of, sender
from tests.person.test_ps_endpoints import auto, verified_token
from tests.support import PS_ISSUER, World

DEV_AP = "http://127.0.0.1:9000"


@pytest.mark.parametrize(
    ("domain", "issuer", "dev", "expected"),
    [
        ("127.0.0.1:9000", DEV_AP, True, True),
        ("127.0.0.1", DEV_AP, True, True),  # how other stacks write it
        ("127.0.0.1", DEV_AP, False, False),  # never outside development
        ("localhost", "http://localhost:8000", True, True),
        ("localhost", DEV_AP, True, False),  # another host
        ("127.0.0.1:9001", DEV_AP, True, False),  # another port
        ("127.0.0.1:", DEV_AP, True, False),
        ("agent.example", "https://agent.example", False, True),
        ("agent.example", "https://agent.example", True, True),
        ("other.example", "https://agent.example", True, False),
        # Production hosts keep the strict rule even in development.
        ("agent", "https://agent.example", True, False),
    ],
)
def test_agent_domain_matches(domain: str, issuer: str, dev: bool, expected: bool) -> None:
    assert agent_domain_matches(domain, issuer, dev_loopback=dev) is expected


def _agent_token(sub: str, *, dev: bool = True) -> tuple[PrivateKey, str]:
    ap_key = PrivateKey.generate("Ed25519", kid="ap-1")
    agent_key = PrivateKey.generate("Ed25519")
    token = mint_agent_token(
        ap_key, iss=DEV_AP, sub=sub, cnf_jwk=agent_key.public, now=1_900_000_000, dev_loopback=dev
    )
    return agent_key, token


@pytest.mark.parametrize("sub", ["aauth:x@127.0.0.1", "aauth:x@127.0.0.1:9000"])
def test_a_loopback_agent_token_with_or_without_the_port(sub: str) -> None:
    _, token = _agent_token(sub)
    claims = check_claims(
        decode_unverified(token), typ=TYP_AGENT, now=1_900_000_000, dev_loopback=True
    )
    assert claims["sub"] == sub


@pytest.mark.parametrize("sub", ["aauth:x@localhost", "aauth:x@127.0.0.1:9001"])
def test_a_loopback_agent_token_for_another_host_or_port_is_refused(sub: str) -> None:
    with pytest.raises(ValueError, match="sub domain is not the issuer's host"):
        _agent_token(sub)


def test_production_identifiers_keep_the_strict_rule() -> None:
    ap_key = PrivateKey.generate("Ed25519", kid="ap-1")
    agent_key = PrivateKey.generate("Ed25519")
    token = mint_agent_token(
        ap_key,
        iss="https://agent.example",
        sub="aauth:x@agent.example",
        cnf_jwk=agent_key.public,
        now=1_900_000_000,
    )
    payload = dict(decode_unverified(token).payload)
    for sub in ("aauth:x@agent.example:443", "aauth:x@www.agent.example"):
        forged = decode_unverified(token)
        forged.payload["sub"] = sub  # type: ignore[index]
        with pytest.raises(TokenError, match="sub"):
            check_claims(forged, typ=TYP_AGENT, now=1_900_000_000, dev_loopback=True)
    assert payload["sub"] == "aauth:x@agent.example"


# -- person_token_jti ------------------------------------------------------------------------


def test_resource_tokens_carry_presented_jti_and_person_token_jti() -> None:
    world = World()
    guard = ResourceGuard(world.resource_config())
    person_token = world.person_token()
    jti = str(decode_unverified(person_token).payload["jti"])
    person = PersonIdentity(
        ps=PS_ISSUER,
        sub="user-7f3c",
        issuer=PS_ISSUER,
        jkt=world.agent_key.public.thumbprint,
        claims={},
        token=person_token,
        typ="aa-person+jwt",
        jti=jti,
    )
    rt = guard.tokens.issue(person, scope="data.read")
    claims = check_claims(
        decode_unverified(rt), typ=TYP_RESOURCE, now=world.now(), audience=PS_ISSUER
    )
    assert claims["presented_jti"] == claims["person_token_jti"] == jti


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("names", [("person_token_jti",), ("presented_jti", "person_token_jti")])
def test_the_ps_accepts_either_jti_claim(mode: str, names: tuple[str, ...]) -> None:
    pw = PsWorld(policy=auto(auto_approve_scopes=("data.read",)))
    send = sender(pw.app, mode)
    pw.bind()
    presented = pw.person_token()
    jti = decode_unverified(presented).payload["jti"]
    overrides: dict[str, Any] = {"extra": {"person_token_jti": jti}}
    if "presented_jti" not in names:
        overrides["presented_jti"] = None  # an older stack's resource: the old name only
    rt = pw.resource_token(presented, **overrides)
    assert {
        n for n in ("presented_jti", "person_token_jti") if n in decode_unverified(rt).payload
    } == set(names)
    response = send(pw.auth_request(rt, presented))
    assert response.status == 200, response.body
    claims = verified_token(pw, body_of(response)["auth_token"], TYP_AUTH)
    assert claims["sub"] == pw.sub_for(ALICE)


def test_disagreeing_jti_claims_are_refused() -> None:
    pw = PsWorld()
    presented = pw.person_token()
    with pytest.raises(ValueError, match="person_token_jti differs"):
        pw.resource_token(presented, extra={"person_token_jti": "another"})
    forged = decode_unverified(pw.resource_token(presented))
    forged.payload["person_token_jti"] = "another"  # type: ignore[index]
    with pytest.raises(TokenError, match="person_token_jti differs"):
        check_claims(forged, typ=TYP_RESOURCE, now=pw.clock.now(), audience=PS_ISSUER)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_old_name_must_still_name_the_presented_token(mode: str) -> None:
    pw = PsWorld(policy=auto(auto_approve_scopes=("data.read",)))
    send = sender(pw.app, mode)
    pw.bind()
    presented = pw.person_token()
    other = pw.person_token()
    rt = pw.resource_token(
        presented,
        presented_jti=None,
        extra={"person_token_jti": decode_unverified(other).payload["jti"]},
    )
    response = send(pw.auth_request(rt, presented))
    assert response.status == 400, response.body
    assert body_of(response)["error"] == "invalid_resource_token"
    assert "presented_jti" in body_of(response)["detail"]
