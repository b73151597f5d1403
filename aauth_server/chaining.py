"""Call chaining and sub-agents (digest 9 "Call chaining and sub-agents", 5.2, 5.3, 5.4;
P-§10.4.5): verification of the ``upstream_token`` and ``subagent_token`` request parameters,
written once as steps for both authorization servers.

The Person Server and the Access Server verify these tokens the same way and differ only in
*who* may have issued them and in what their records say, so everything that differs is a
parameter:

* ``cfg`` and ``own_dwk`` — this server's configuration as
  :func:`aauth_server.param_tokens.param_token_steps` reads it (issuer, signing key, clock,
  development settings) and the ``dwk`` of its own tokens;
* ``agent`` — the claims of the agent token the request is made for: at the PS the agent
  token that signed the request, at the AS the ``agent_token`` the PS forwarded (the parent
  in sub-agent flows);
* ``ps`` — the PS an upstream token must name: at the PS itself, at the AS the signing PS;
* lookups as callables returning steps (``known_issuer``, ``revoked``), so the PS answers
  them from its records and the AS from its own.

A token in a parameter that fails answers ``400`` with ``invalid_/expired_/revoked_``
``upstream_token`` or ``subagent_token`` (digest 5.6), never ``401``: the request signature
was the agent's and verified already.

Usage at an AS (``agent_token`` verified, ``signing_ps`` the verified caller)::

    up = yield from upstream_steps(body["upstream_token"], agent=agent_claims, ps=signing_ps,
                                   cfg=config, own_dwk=DWK_ACCESS, known_issuer=any_issuer)
    sa = yield from subagent_steps(body["subagent_token"], agent=agent_claims, cfg=config,
                                   own_dwk=DWK_ACCESS)
    key = sa.key            # the key resource_token.agent_jkt and the auth token's cnf name
    exp_caps = [up.exp, sa.exp]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import SignatureFailure
from .keys.jwk import PublicKey
from .param_tokens import ParamSettings, fail, param_token_steps
from .steps import Steps
from .tokens.aauth import TYP_AGENT, TYP_AUTH, TYP_PERSON

UPSTREAM = "upstream"
SUBAGENT = "subagent"


#: ``400 <code>_<name>_token`` (digest 5.6).
token_error = fail


def _param_steps(
    raw: object,
    typs: tuple[str, ...],
    name: str,
    *,
    audience: str | None,
    cfg: ParamSettings,
    own_dwk: str,
) -> Steps[tuple[str, Mapping[str, object]]]:
    if not isinstance(raw, str) or not raw:
        raise token_error(name, f"{name}_token must be a JWT string")
    return (yield from param_token_steps(cfg, raw, typs, name, audience=audience, own_dwk=own_dwk))


# -- upstream tokens (call chaining) ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Verified:
    """A verified parameter token: the raw ``token`` and its ``claims``."""

    token: str
    claims: Mapping[str, object]

    @property
    def iss(self) -> str:
        return str(self.claims["iss"])

    @property
    def jti(self) -> str:
        return str(self.claims["jti"])

    @property
    def iat(self) -> int:
        return int(str(self.claims["iat"]))

    @property
    def exp(self) -> int:
        return int(str(self.claims["exp"]))


@dataclass(frozen=True, slots=True)
class Upstream(_Verified):
    """A verified ``upstream_token``: the person or auth token the calling agent presented to
    the intermediary on a request the intermediary served."""

    typ: str

    @property
    def sub(self) -> str:
        """The upstream person's directed id *for the intermediary*: never copy it downstream."""
        return str(self.claims["sub"])

    @property
    def intermediary(self) -> str:
        """The upstream ``aud`` (checked to be the intermediary's agent-token ``iss``)."""
        aud = self.claims["aud"]
        return aud if isinstance(aud, str) else str(next(iter(aud)))  # type: ignore[call-overload]

    @property
    def ps(self) -> str:
        """The PS the token names: a person token's ``iss``, an auth token's ``ps``."""
        return self.iss if self.typ == TYP_PERSON else str(self.claims["ps"])

    @property
    def mission_s256(self) -> str | None:
        value = self.claims.get("mission_s256")
        return value if isinstance(value, str) else None

    def record_fields(self) -> dict[str, Any]:
        """The issued-token columns of a token issued from this one (revocation cascades)."""
        return {"upstream_iss": self.iss, "upstream_jti": self.jti}


def any_issuer(upstream: Upstream) -> Steps[bool]:
    """``known_issuer`` at an AS: an upstream auth token's ``iss`` may be any AS (the AS
    checks only that its ``ps`` is the signing PS)."""
    return True
    yield  # pragma: no cover - a step generator that needs nothing


def upstream_steps(
    raw: object,
    *,
    agent: Mapping[str, object],
    ps: str,
    cfg: ParamSettings,
    own_dwk: str,
    known_issuer: Callable[[Upstream], Steps[bool]],
    revoked: Callable[[Upstream], Steps[bool]] | None = None,
) -> Steps[Upstream]:
    """Verify ``upstream_token`` (P-§10.4.5) for a request made for ``agent`` (the
    intermediary's agent-token claims).

    * ``typ`` must be a person or auth token;
    * verified like one with the substitutions of digest 9: ``aud`` must be the
      intermediary's id — the ``iss`` of its agent token, since an intermediary is its own
      agent provider — its ``cnf`` is *not* compared with the signer, and no ``sub`` record
      check is made;
    * issuer rules: a person token's ``iss`` and an auth token's ``ps`` must be ``ps``; an
      auth token whose ``iss`` is not ``ps`` must satisfy ``known_issuer`` (at the PS: an AS
      it presented a person token to for that ``aud``/``sub``; at the AS: :func:`any_issuer`);
    * ``revoked`` (the records' view: the token, the agent it was issued to, that agent's
      binding) answers ``revoked_upstream_token``.
    """
    intermediary = agent.get("iss")
    if not isinstance(intermediary, str):
        raise token_error(UPSTREAM, "the requesting agent token names no issuer")
    typ, claims = yield from _param_steps(
        raw, (TYP_PERSON, TYP_AUTH), UPSTREAM, audience=intermediary, cfg=cfg, own_dwk=own_dwk
    )
    aud = claims.get("aud")
    if aud != intermediary and aud != [intermediary]:
        raise token_error(UPSTREAM, "aud is not the intermediary (the signer's issuer)")
    assert isinstance(raw, str)
    upstream = Upstream(raw, claims, typ)
    if upstream.ps != ps:
        named = "iss" if typ == TYP_PERSON else "ps"
        raise token_error(UPSTREAM, f"the upstream token's {named} is not {ps}")
    if typ == TYP_AUTH and upstream.iss != ps and not (yield from known_issuer(upstream)):
        raise token_error(
            UPSTREAM,
            "the upstream auth token was issued by an access server this person server "
            "presented no person token to for that resource and person",
        )
    if revoked is not None and (yield from revoked(upstream)):
        raise token_error(UPSTREAM, "the upstream token or the agent it was issued to was "
                          "revoked", "revoked")  # fmt: skip
    return upstream


# -- sub-agent tokens ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubAgent(_Verified):
    """A verified ``subagent_token``: a sub-agent of the requesting (parent) agent."""

    key: PublicKey

    @property
    def agent(self) -> str:
        return str(self.claims["sub"])

    @property
    def jkt(self) -> str:
        """The RFC 7638 thumbprint a resource token for the sub-agent names as ``agent_jkt``."""
        return self.key.thumbprint


def subagent_steps(
    raw: object,
    *,
    agent: Mapping[str, object],
    cfg: ParamSettings,
    own_dwk: str,
    revoked: Callable[[SubAgent], Steps[bool]] | None = None,
) -> Steps[SubAgent]:
    """Verify ``subagent_token`` for a request made by (at the AS: for) the parent ``agent``.

    ``typ`` ``aa-agent+jwt`` verified with its AP's key; ``parent_agent`` must be the
    parent's agent id and ``iss`` the parent's ``iss`` (one AP for both); the parent must not
    itself be a sub-agent (one level deep); the sub-agent's own key is its ``cnf.jwk``.
    ``revoked`` (the AP revoked it at the PS) answers ``revoked_subagent_token``."""
    if "parent_agent" in agent:
        raise token_error(SUBAGENT, "a sub-agent cannot have sub-agents (one level deep)")
    _, claims = yield from _param_steps(
        raw, (TYP_AGENT,), SUBAGENT, audience=None, cfg=cfg, own_dwk=own_dwk
    )
    parent = claims.get("parent_agent")
    if parent is None:
        raise token_error(SUBAGENT, "the token names no parent_agent: not a sub-agent token")
    if parent != agent.get("sub"):
        raise token_error(SUBAGENT, "parent_agent is not the requesting agent")
    if claims.get("iss") != agent.get("iss"):
        raise token_error(SUBAGENT, "the sub-agent token's iss is not the parent's agent provider")
    cnf = claims.get("cnf")
    assert isinstance(cnf, dict)  # check_claims verified cnf.jwk's shape
    try:
        key = PublicKey.from_jwk(cnf["jwk"], allow_eddsa=cfg.allow_eddsa)
    except (SignatureFailure, ValueError) as exc:
        raise token_error(SUBAGENT, f"cnf.jwk is not a usable key: {exc}") from exc
    assert isinstance(raw, str)
    subagent = SubAgent(raw, claims, key)
    if revoked is not None and (yield from revoked(subagent)):
        raise token_error(SUBAGENT, "the sub-agent token was revoked", "revoked")
    return subagent


def exp_caps(*tokens: Upstream | SubAgent | None) -> list[int]:
    """The ``exp`` values a token issued from these must not outlive (digest 3.3, 3.5)."""
    return [t.exp for t in tokens if t is not None]


__all__ = [
    "SUBAGENT",
    "UPSTREAM",
    "SubAgent",
    "Upstream",
    "any_issuer",
    "exp_caps",
    "subagent_steps",
    "token_error",
    "upstream_steps",
]
