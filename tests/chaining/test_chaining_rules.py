"""aauth_server.chaining as an Access Server uses it (digest 5.4, 9, P-§10.4.5): the PS that
signed the request is the one an upstream token must name, an upstream auth token may come
from any AS, and the sub-agent is checked against the ``agent_token`` the PS forwarded.

The steps run under a minimal driver that answers key needs from the test world's
documents (the same KeyDiscovery the servers use); the PS-side rules are shown through the
PS in test_ps_chaining.py.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from aauth_server.chaining import (
    SubAgent,
    Upstream,
    any_issuer,
    exp_caps,
    subagent_steps,
    upstream_steps,
)
from aauth_server.clock import Clock, FixedClock
from aauth_server.errors import AAuthError
from aauth_server.keys.jwk import PrivateKey
from aauth_server.tokens.aauth import DWK_ACCESS, mint_auth_token, mint_person_token
from aauth_server.tokens.jwt import decode_unverified
from aauth_server.verifier import KeyNeed
from tests.support import AP_ISSUER, AS_ISSUER, PS_ISSUER, World

T = TypeVar("T")
T0 = 1_900_000_000
MID = AP_ISSUER  # the intermediary's agent token is self-issued: its iss is the intermediary


@dataclass
class AsSettings:
    """What parameter-token verification reads from an AS's configuration."""

    issuer: str
    signing_key: PrivateKey
    clock: Clock
    dev_loopback: bool = False
    allow_eddsa: bool = False
    signature_window: int = 60


def drive(world: World, steps: Generator[Any, Any, T]) -> T:
    discovery = world.discovery()
    answer: Any = None
    while True:
        try:
            need = steps.send(answer)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        assert isinstance(need, KeyNeed) and need.issuer and need.dwk
        answer = discovery.key(need.issuer, need.dwk, need.kid)


@pytest.fixture
def world() -> World:
    return World(clock=FixedClock(T0))


def settings(world: World) -> AsSettings:
    return AsSettings(AS_ISSUER, world.as_key, world.clock)


def agent_claims(world: World, token: str | None = None) -> dict[str, Any]:
    return dict(decode_unverified(token or world.agent_token).payload)


def upstream(world: World, raw: str, *, ps: str = PS_ISSUER, revoked: Any = None) -> Upstream:
    return drive(
        world,
        upstream_steps(
            raw,
            agent=agent_claims(world),
            ps=ps,
            cfg=settings(world),
            own_dwk=DWK_ACCESS,
            known_issuer=any_issuer,
            revoked=revoked,
        ),
    )


def error(call: Any) -> str:
    with pytest.raises(AAuthError) as refused:
        call()
    assert refused.value.status == 400
    return str(refused.value.error)


def test_an_upstream_person_token_of_the_signing_ps(world: World) -> None:
    raw = world.person_token(aud=MID)
    up = upstream(world, raw)
    assert (up.ps, up.intermediary, up.typ) == (PS_ISSUER, MID, "aa-person+jwt")
    assert up.record_fields() == {"upstream_iss": PS_ISSUER, "upstream_jti": up.jti}
    assert exp_caps(up, None) == [up.exp]
    # Another PS signed the request: this upstream token is not its person's.
    assert error(lambda: upstream(world, raw, ps="https://other.example")) == (
        "invalid_upstream_token"
    )


def test_an_upstream_auth_token_from_any_as_naming_the_signing_ps(world: World) -> None:
    raw = world.auth_token("data.read", aud=MID, four_party=True)
    up = upstream(world, raw)
    assert (up.iss, up.ps) == (AS_ISSUER, PS_ISSUER)
    bad = mint_auth_token(
        world.as_key, iss=AS_ISSUER, dwk=DWK_ACCESS, aud=MID, ps="https://other.example",
        sub="s", cnf_jwk=world.agent_key.public, now=T0,
    )  # fmt: skip
    assert error(lambda: upstream(world, bad)) == "invalid_upstream_token"


@pytest.mark.parametrize(
    "raw",
    [
        lambda w: w.person_token(),  # aud is the resource, not the intermediary
        lambda w: w.agent_token,  # neither a person nor an auth token
        lambda w: 42,  # not a JWT
    ],
)
def test_invalid_upstream_tokens(world: World, raw: Any) -> None:
    assert error(lambda: upstream(world, raw(world))) == "invalid_upstream_token"


def test_expired_and_revoked_upstream_tokens(world: World) -> None:
    raw = mint_person_token(
        world.ps_key, iss=PS_ISSUER, aud=MID, sub="s", cnf_jwk=world.agent_key.public,
        now=T0, lifetime=60,
    )  # fmt: skip

    def revoked(up: Upstream) -> Generator[Any, Any, bool]:
        return up.jti == decode_unverified(raw).payload["jti"]
        yield

    assert error(lambda: upstream(world, raw, revoked=revoked)) == "revoked_upstream_token"
    world.clock.advance(61)  # type: ignore[attr-defined]
    assert error(lambda: upstream(world, raw)) == "expired_upstream_token"


def sub_token(world: World, parent: str = "assistant", lifetime: int = 3600) -> tuple[str, Any]:
    key = PrivateKey.generate("Ed25519")
    provider = world.provider
    token = provider.issue_subagent(
        key.public, provider.agent_id(parent), "helper", lifetime=lifetime
    )
    return token, key


def subagent(world: World, raw: object, agent: dict[str, Any] | None = None) -> SubAgent:
    return drive(
        world,
        subagent_steps(
            raw, agent=agent or agent_claims(world), cfg=settings(world), own_dwk=DWK_ACCESS
        ),
    )


def test_a_sub_agent_of_the_forwarded_agent(world: World) -> None:
    raw, key = sub_token(world)
    sa = subagent(world, raw)
    assert sa.key == key.public and sa.jkt == key.public.thumbprint
    assert sa.agent == "aauth:assistant+helper@agent.example"
    assert exp_caps(None, sa) == [sa.exp]


def test_invalid_and_expired_sub_agent_tokens(world: World) -> None:
    other, _ = sub_token(world, parent="other")
    assert error(lambda: subagent(world, other)) == "invalid_subagent_token"
    assert error(lambda: subagent(world, world.agent_token)) == "invalid_subagent_token"
    assert error(lambda: subagent(world, world.person_token())) == "invalid_subagent_token"
    raw, _ = sub_token(world)
    as_parent = agent_claims(world, raw)  # a sub-agent cannot be a parent
    assert error(lambda: subagent(world, raw, as_parent)) == "invalid_subagent_token"
    short, _ = sub_token(world, lifetime=60)
    world.clock.advance(61)  # type: ignore[attr-defined]
    assert error(lambda: subagent(world, short)) == "expired_subagent_token"
