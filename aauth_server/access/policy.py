"""The Access Server's policy hook (digest 1.5, 5.4): the application decides, per request.

``policy(AccessRequest)`` answers one verdict.  It is called when the PS's request arrives
and again after every answer (claims from the PS, a clarification answer, an updated
request, the person's visit to the interaction page, an operator's approval), with the facts
gathered so far.  A policy that raises answers ``500 server_error`` (logged).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = [
    "AccessRequest",
    "Deny",
    "Issue",
    "Policy",
    "RequireApproval",
    "RequireClaims",
    "RequireClarification",
    "RequireInteraction",
    "Verdict",
    "issue_requested",
]

#: Claims an auth token carries by the protocol; a policy's ``Issue.claims`` cannot set them.
RESERVED_CLAIMS = frozenset(
    {
        "iss",
        "dwk",
        "aud",
        "jti",
        "iat",
        "exp",
        "nbf",
        "ps",
        "sub",
        "cnf",
        "scope",
        "mission_s256",
        "tenant",
        "account",
        "agent",
        "act",
    }
)


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class AccessRequest:
    """What the AS knows about one token request (and what it learnt since).

    ``scope`` is the resource token's scope (the most the AS may grant); ``agent`` the
    verified agent token's claims (the parent's in sub-agent flows: posture, attestation);
    ``claims`` what the PS answered to ``RequireClaims``; ``clarifications`` the
    ``(question, answer)`` rounds; ``interacted`` whether a person completed the AS's
    interaction page (``interacted_by``: who, as the page's ``authenticate`` said);
    ``approved`` an operator's decision on a ``RequireApproval`` (None while undecided).
    """

    ps: str
    resource: str
    scope: tuple[str, ...]
    sub: str
    agent: Mapping[str, Any]
    presented_type: str
    mission_s256: str | None = None
    tenant: str | None = None
    account: str | None = None
    subagent: Mapping[str, Any] | None = None
    upstream: Mapping[str, Any] | None = None
    claims: Mapping[str, Any] = field(default_factory=_empty)
    clarifications: tuple[tuple[str, str | None], ...] = ()
    interacted: bool = False
    interacted_by: str | None = None
    approved: bool | None = None
    #: How many times the policy has already asked (claims and clarification rounds).
    rounds: int = 0

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset(self.scope)

    @property
    def agent_id(self) -> str:
        return str(self.agent.get("sub", ""))


@dataclass(frozen=True)
class Issue:
    """Issue an auth token: ``scope`` (None = the whole requested scope; always narrowed to
    it), ``lifetime`` (seconds, within every cap), ``claims`` (extra claims, e.g. ``email``
    the PS gave; protocol claims cannot be set)."""

    scope: str | Iterable[str] | None = None
    lifetime: int | None = None
    claims: Mapping[str, Any] = field(default_factory=_empty)

    def __post_init__(self) -> None:
        clash = RESERVED_CLAIMS.intersection(self.claims)
        if clash:
            raise ValueError(f"Issue.claims cannot set protocol claims: {sorted(clash)}")
        if self.lifetime is not None and (
            isinstance(self.lifetime, bool)
            or not isinstance(self.lifetime, int)
            or self.lifetime <= 0
        ):
            raise ValueError("Issue.lifetime must be positive whole seconds")

    def scopes(self, requested: Sequence[str]) -> list[str]:
        if self.scope is None:
            wanted = set(requested)
        elif isinstance(self.scope, str):
            wanted = set(self.scope.split())
        else:
            wanted = set(self.scope)
        return sorted(wanted & set(requested))


@dataclass(frozen=True)
class Deny:
    """``403 denied`` (initially) or polling ``denied`` (later)."""

    reason: str = "the access server's policy denied this request"


@dataclass(frozen=True)
class RequireClaims:
    """``202 requirement=claims`` with ``required_claims``: the PS POSTs them (never ``sub``)."""

    names: tuple[str, ...]

    def __init__(self, names: Iterable[str]) -> None:
        names = tuple(dict.fromkeys(names))
        if not names or not all(isinstance(n, str) and n for n in names):
            raise ValueError("RequireClaims needs claim names")
        if "sub" in names:
            raise ValueError("an Access Server never asks for sub (digest 5.4)")
        object.__setattr__(self, "names", names)


@dataclass(frozen=True)
class RequireClarification:
    """``202 requirement=clarification``: ``question`` (Markdown), optional ``options`` and
    ``timeout`` (seconds)."""

    question: str
    options: Sequence[str] | None = None
    timeout: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.question, str) or not self.question.strip():
            raise ValueError("RequireClarification needs a question")
        if self.timeout is not None and (not isinstance(self.timeout, int) or self.timeout <= 0):
            raise ValueError("timeout must be positive seconds")


@dataclass(frozen=True)
class RequireInteraction:
    """``202 requirement=interaction``: a person completes the AS's ``/interact`` page."""


@dataclass(frozen=True)
class RequireApproval:
    """``202 requirement=approval``: someone at the AS decides
    (:meth:`~aauth_server.access.AccessServer.decide`); the PS just polls."""


Verdict = Issue | Deny | RequireClaims | RequireClarification | RequireInteraction | RequireApproval
Policy = Callable[[AccessRequest], Verdict]


def issue_requested(request: AccessRequest) -> Verdict:
    """The default policy: issue what the resource token asks for, once an operator
    approved when one was asked (a trusted PS's request is enough)."""
    if request.approved is False:
        return Deny("an operator declined this request")
    return Issue()
