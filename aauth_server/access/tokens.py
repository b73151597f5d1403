"""The tokens of a PS -> AS request (digest 3.4, 5.4) and the auth tokens the AS mints (3.5).

Verification follows digest 3.4 "verification by PS/AS", with the AS's substitutions: the
request is signed by the PS, so the agent's key comes from ``agent_token.cnf`` (or the
sub-agent token's, in parent-mediated flows), and the presented token's issuer must be the
PS that signed the request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..chaining import Upstream, any_issuer, exp_caps, subagent_steps, upstream_steps
from ..errors import AAuthError
from ..keys.jwk import PublicKey
from ..param_tokens import fail, param_token_steps, same_key
from ..revocation import problem
from ..steps import Steps
from ..tokens.aauth import (
    DWK_ACCESS,
    TYP_AGENT,
    TYP_AUTH,
    TYP_PERSON,
    TYP_RESOURCE,
    mint_auth_token,
    new_jti,
    presented_jti,
)

if TYPE_CHECKING:
    from .server import AccessServer

#: Claims an ``updated_request``'s new resource token must keep (digest 7).
FIXED_CLAIMS = ("iss", "ps", "sub", "agent_jkt", "mission_s256", "tenant")
#: Resource-token claims the auth token copies (digest 3.5).
COPIED = ("mission_s256", "tenant", "account")


@dataclass(frozen=True)
class Chained:
    """What ``subagent_token`` / ``upstream_token`` contribute (:func:`chained_steps`):
    the sub-agent's claims and key (the key the auth token binds), the upstream token's
    claims, and the ``exp`` values that cap the auth token."""

    subagent: Mapping[str, Any] | None = None
    subagent_key: PublicKey | None = None
    upstream: Mapping[str, Any] | None = None
    caps: tuple[int, ...] = field(default=())


def chained_steps(
    server: AccessServer, ps: str, agent: Mapping[str, Any], body: Mapping[str, Any]
) -> Steps[Chained]:
    """The ONE place the AS handles ``subagent_token`` and ``upstream_token`` (digest 9,
    P-§10.4.5 at the AS): an upstream person token's ``iss`` / auth token's ``ps`` must be the
    signing PS (an upstream auth token may come from any AS), a revocation the AS recorded
    for the upstream token answers ``revoked_upstream_token``; a sub-agent token must be a
    sub-agent of the forwarded (parent) agent token.  Errors are the ``*_upstream_token`` /
    ``*_subagent_token`` codes of digest 5.6."""
    cfg = server.config

    def revoked(token: Upstream) -> Steps[bool]:
        found: bool = yield server.rop(server.rec.is_revoked(token.iss, str(token.claims["jti"])))
        return found

    up = sa = None
    if "upstream_token" in body:
        up = yield from upstream_steps(
            body["upstream_token"],
            agent=agent,
            ps=ps,
            cfg=cfg,
            own_dwk=DWK_ACCESS,
            known_issuer=any_issuer,
            revoked=revoked,
        )
    if "subagent_token" in body:
        sa = yield from subagent_steps(
            body["subagent_token"], agent=agent, cfg=cfg, own_dwk=DWK_ACCESS
        )
    return Chained(
        subagent=None if sa is None else dict(sa.claims),
        subagent_key=None if sa is None else sa.key,
        upstream=None if up is None else dict(up.claims),
        caps=tuple(exp_caps(up)),
    )


@dataclass(frozen=True)
class TokenFacts:
    """A verified PS -> AS request: the pair, the agent, and the key the token binds."""

    resource_token: Mapping[str, Any]
    presented: Mapping[str, Any]
    presented_typ: str
    agent: Mapping[str, Any]
    key: PublicKey
    chained: Chained

    @property
    def scopes(self) -> list[str]:
        scope = self.resource_token.get("scope")
        return sorted(set(scope.split())) if isinstance(scope, str) else []

    def fixed(self) -> dict[str, Any]:
        return {name: self.resource_token.get(name) for name in FIXED_CLAIMS}


def _required(body: Mapping[str, Any], *names: str) -> None:
    for name in names:
        if not isinstance(body.get(name), str) or not body[name]:
            raise problem(400, "invalid_request", f"{name} is required")


class AccessTokens:
    def __init__(self, server: AccessServer) -> None:
        self.server = server

    def _param_steps(
        self, raw: str, typs: tuple[str, ...], name: str, audience: str | None
    ) -> Steps[tuple[str, Mapping[str, Any]]]:
        return (
            yield from param_token_steps(
                self.server.config, raw, typs, name, audience=audience, own_dwk=DWK_ACCESS
            )
        )

    def verify_steps(self, ps: str, body: Mapping[str, Any]) -> Steps[TokenFacts]:
        """Every check of digest 5.4 / 3.4 for a request the PS ``ps`` signed."""
        _required(body, "resource_token", "agent_token", "presented_token")
        rt = yield from self.resource_token_steps(body["resource_token"])
        agent = yield from self.agent_token_steps(body["agent_token"])
        chained = yield from chained_steps(self.server, ps, agent, body)
        key = chained.subagent_key or _agent_key(agent)
        return (yield from self.pair_steps(ps, rt, body["presented_token"], agent, key, chained))

    def resource_token_steps(self, raw: str) -> Steps[Mapping[str, Any]]:
        _, rt = yield from self._param_steps(
            raw, (TYP_RESOURCE,), "resource", self.server.config.issuer
        )
        return rt

    def agent_token_steps(self, raw: str) -> Steps[Mapping[str, Any]]:
        """The agent token the PS passes for the AS's policy (posture).  Digest 13.3 (#199):
        the drafts name no code; we answer ``invalid_agent_token``/``expired_agent_token``
        as the -12 proposal does."""
        _, agent = yield from self._param_steps(raw, (TYP_AGENT,), "agent", None)
        if "parent_agent" in agent:
            raise fail(
                "agent", "a sub-agent's token: pass the parent's, the sub-agent's as subagent_token"
            )
        _agent_key(agent)
        return agent

    def pair_steps(
        self,
        ps: str,
        rt: Mapping[str, Any],
        raw_presented: str,
        agent: Mapping[str, Any],
        key: PublicKey,
        chained: Chained,
    ) -> Steps[TokenFacts]:
        if rt["agent_jkt"] != key.thumbprint:
            raise fail("resource", "agent_jkt is not the key of the agent token")
        typ, presented = yield from self._param_steps(
            raw_presented, (TYP_PERSON, TYP_AUTH), "presented", str(rt["iss"])
        )
        cnf = presented.get("cnf")
        assert isinstance(cnf, dict)
        if not same_key(cnf["jwk"], key):
            raise fail("presented", "cnf.jwk is not the key named by agent_jkt")
        if presented["jti"] != presented_jti(rt):
            raise fail("resource", "presented_jti does not name the presented token")
        issuer = presented["iss"] if typ == TYP_PERSON else presented["ps"]
        if rt["ps"] != ps:
            raise fail("resource", "the resource token names another person server")
        if issuer != ps:
            raise fail("resource", "the presented token is not from the person server asking")
        for claim in ("sub", "mission_s256", "tenant"):
            if presented.get(claim) != rt.get(claim):
                raise fail("resource", f"{claim} differs from the presented token")
        server = self.server
        (rt_revoked, pt_revoked), _ = yield server.rop(
            server.rec.revocation_facts(
                [(str(rt["iss"]), str(rt["jti"])), (str(presented["iss"]), str(presented["jti"]))],
                None,
                0,
            )
        )
        if rt_revoked:
            raise fail("resource", "the resource revoked this resource token", "revoked")
        if pt_revoked:
            raise fail("presented", "the presented token was revoked", "revoked")
        return TokenFacts(rt, presented, typ, agent, key, chained)

    # -- minting ------------------------------------------------------------------------------

    def lifetime(self, data: Mapping[str, Any], wanted: int | None) -> int:
        """Seconds the auth token may live: within 1 h (the configured ceiling), the agent
        token's, the presented token's, the sub-agent and upstream tokens' ``exp`` (3.5)."""
        cfg = self.server.config
        now = cfg.clock.now()
        caps = [cfg.auth_token_lifetime]
        if wanted is not None:
            caps.append(wanted)
        caps += [int(float(exp) - now) for exp in data["caps"]]
        return min(caps)

    def mint(self, data: Mapping[str, Any], grant: Mapping[str, Any]) -> Minted | None:
        """The auth token for the stored request ``data`` and the policy's ``grant``;
        None when no lifetime is left."""
        cfg = self.server.config
        lifetime = self.lifetime(data, grant.get("lifetime"))
        if lifetime <= 0:
            return None
        rt = data["rt"]
        extra = {k: rt[k] for k in COPIED if rt.get(k) is not None}
        extra.update(grant.get("claims") or {})
        now = cfg.clock.now()
        jti = new_jti()
        scope = " ".join(grant["scope"]) or None
        token = mint_auth_token(
            cfg.signing_key,
            iss=cfg.issuer,
            dwk=DWK_ACCESS,
            aud=str(rt["iss"]),
            ps=str(data["ps"]),
            sub=str(rt["sub"]),
            cnf_jwk=data["key"],
            now=now,
            lifetime=lifetime,
            scope=scope,
            extra=extra,
            dev_loopback=cfg.dev_loopback,
            jti=jti,
        )
        return Minted(token, lifetime, jti, int(now), int(now) + lifetime, scope)


@dataclass(frozen=True, slots=True)
class Minted:
    token: str
    lifetime: int
    jti: str
    iat: int
    exp: int
    scope: str | None


def _agent_key(agent: Mapping[str, Any]) -> PublicKey:
    cnf = agent.get("cnf")
    assert isinstance(cnf, dict)
    try:
        return PublicKey.from_jwk(cnf["jwk"])
    except AAuthError as exc:
        raise fail("agent", f"cnf.jwk: {exc.detail}") from exc


def request_data(ps: str, facts: TokenFacts) -> dict[str, Any]:
    """What a pending request keeps of a verified request (JSON)."""
    rt, presented, chained = facts.resource_token, facts.presented, facts.chained
    caps = [facts.agent["exp"], presented["exp"], *chained.caps]
    if chained.subagent is not None:
        caps.append(chained.subagent["exp"])
    return {
        "ps": ps,
        "rt": {
            k: rt[k]
            for k in ("iss", "jti", "exp", "sub", "ps", "agent_jkt", "scope", *COPIED)
            if k in rt
        },
        "scope": facts.scopes,
        "presented": {
            "typ": facts.presented_typ,
            "iss": presented["iss"],
            "jti": presented["jti"],
            "exp": presented["exp"],
        },
        "agent": dict(facts.agent),
        "subagent": None if chained.subagent is None else dict(chained.subagent),
        "upstream": None if chained.upstream is None else dict(chained.upstream),
        "key": dict(facts.key.jwk),
        "caps": caps,
        "claims": {},
        "clarifications": [],
        "rounds": 0,
        "interacted": False,
        "interacted_by": None,
        "approved": None,
    }
