"""Who a verified request speaks for, one type per kind of credential."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..verifier import VerifiedRequest


def _opt_str(claims: Mapping[str, object], name: str) -> str | None:
    value = claims.get(name)
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    """The verified agent behind a request (agent-token and session-token modes)."""

    agent: str
    issuer: str
    jkt: str
    claims: Mapping[str, object]
    token: str
    ps: str | None = None
    parent_agent: str | None = None

    @classmethod
    def from_verified(cls, verified: VerifiedRequest) -> AgentIdentity:
        claims = verified.claims
        assert verified.token is not None and verified.issuer is not None
        return cls(
            agent=str(claims["sub"]),
            issuer=verified.issuer,
            jkt=verified.jkt,
            claims=claims,
            token=verified.token,
            ps=_opt_str(claims, "ps"),
            parent_agent=_opt_str(claims, "parent_agent"),
        )

    def as_dict(self) -> dict[str, Any]:
        return {"agent": self.agent, "issuer": self.issuer, "jkt": self.jkt, "ps": self.ps}


@dataclass(frozen=True, slots=True)
class PersonIdentity:
    """The person behind a request, from a person token or an auth token.

    A person is ``(ps, sub)``: ``ps`` is the person token's ``iss`` or the auth token's
    ``ps``, ``sub`` is directed (pairwise) for this resource.  ``authorized`` is true for
    an auth token, whose ``scopes`` are what the person's PS (or the resource's AS)
    granted; a person token authorises nothing.
    """

    ps: str
    sub: str
    issuer: str
    jkt: str
    claims: Mapping[str, object]
    token: str
    typ: str
    jti: str
    scopes: frozenset[str] = frozenset()
    authorized: bool = False
    mission_s256: str | None = None
    tenant: str | None = None

    @property
    def scope(self) -> str:
        return " ".join(sorted(self.scopes))

    def as_dict(self) -> dict[str, Any]:
        return {"ps": self.ps, "sub": self.sub, "scope": self.scope, "jkt": self.jkt}


@dataclass(frozen=True, slots=True)
class SessionIdentity:
    """An agent holding a resource-issued session token (two-party, session-token mode)."""

    agent: AgentIdentity
    account: str
    session: str

    def as_dict(self) -> dict[str, Any]:
        return {"agent": self.agent.agent, "account": self.account}


Identity = AgentIdentity | PersonIdentity | SessionIdentity
