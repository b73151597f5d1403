"""Phase A: the service's decision about an agent, per provider and per scope.

The server hands the policy a :class:`RegistrationRequest` whose scopes are already split
into those the provider offers and those it does not (the latter are denied by the server
itself, with a reason).  The policy answers a :class:`Decision`: ``approved`` with the scopes
it grants, ``pending`` (a person reviews the agent on the admin page), or ``denied``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

Status = Literal["approved", "pending", "denied"]


@dataclass(frozen=True, slots=True)
class RegistrationRequest:
    agent_id: str
    agent_name: str
    developer: Mapping[str, str]
    purpose: str
    #: provider_id -> requested scopes the provider offers (in request order).
    requested: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class ProviderDecision:
    provider_id: str
    approved_scopes: tuple[str, ...]
    denied_scopes: tuple[str, ...] = ()
    denial_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    status: Status
    providers: tuple[ProviderDecision, ...] = field(default_factory=tuple)
    reason: str | None = None


ApprovalPolicy = Callable[[RegistrationRequest], Decision]


def approve_all() -> ApprovalPolicy:
    """Every offered scope the agent asks for."""

    def policy(request: RegistrationRequest) -> Decision:
        return Decision(
            "approved",
            tuple(ProviderDecision(p, scopes) for p, scopes in request.requested.items()),
        )

    return policy


def approve_subset(allowed: Iterable[str] | Mapping[str, Iterable[str]]) -> ApprovalPolicy:
    """Only ``allowed`` scopes (one set for every provider, or per provider); the rest are
    denied with a reason.  An agent left with no scope at all is ``denied``."""
    per_provider: dict[str, frozenset[str]] | None = None
    everywhere: frozenset[str] = frozenset()
    if isinstance(allowed, Mapping):
        per_provider = {p: frozenset(s) for p, s in allowed.items()}
    else:
        everywhere = frozenset(allowed)

    def policy(request: RegistrationRequest) -> Decision:
        decisions = []
        for provider_id, scopes in request.requested.items():
            ok = per_provider.get(provider_id, frozenset()) if per_provider else everywhere
            granted = tuple(s for s in scopes if s in ok)
            denied = tuple(s for s in scopes if s not in ok)
            reason = "not approved for agents by this service" if denied else None
            decisions.append(ProviderDecision(provider_id, granted, denied, reason))
        if not any(d.approved_scopes for d in decisions):
            return Decision("denied", tuple(decisions), "no requested scope is approved")
        return Decision("approved", tuple(decisions))

    return policy


def review() -> ApprovalPolicy:
    """Every registration waits for a person on the admin review page."""

    def policy(request: RegistrationRequest) -> Decision:
        return Decision(
            "pending",
            tuple(ProviderDecision(p, (), (), "awaiting review") for p in request.requested),
            "awaiting review by the service",
        )

    return policy


def deny_all(reason: str = "this service does not admit agents") -> ApprovalPolicy:
    def policy(request: RegistrationRequest) -> Decision:
        return Decision(
            "denied",
            tuple(ProviderDecision(p, (), s, reason) for p, s in request.requested.items()),
            reason,
        )

    return policy


POLICIES: Mapping[str, Callable[[], ApprovalPolicy]] = {
    "all": approve_all,
    "pending": review,
    "deny": deny_all,
}
