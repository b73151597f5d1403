"""Decisions: who approves a token request (issue 4 item 4).

An application supplies its own policy as any object with ``decide(request) -> Decision``
(``PersonServerConfig(policy=MyPolicy())``).  ``decide`` is called synchronously from both
drivers, so it must not block on I/O; whatever it needs (an allow-list, a role table) it
should hold in memory.  Four answers exist:

* :class:`Approve` issues the token now (optionally narrowing the scope of an auth token);
* :class:`Deny` refuses now (``403 denied`` with the reason as ``detail``);
* :class:`AskPerson` opens a pending request the person decides on the consent page;
* :class:`AskAgent` asks the agent a clarification question first (digest 7): the agent gets
  ``202 requirement=clarification`` with the question, and when it answers at the pending
  URL the policy is asked again, with the answer in ``TokenRequest.clarifications``.  Only an
  agent that declared the ``clarification`` capability is asked, at most
  ``clarification_rounds`` times; otherwise :class:`AskAgent` counts as :class:`AskPerson`.
  If the request goes on to the person, the consent page shows the questions and the
  agent's answers (as agent-asserted content).

An agent the PS does not know yet (no binding) is always asked: the binding needs the
person, so the policy is not consulted for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from .missions import Mission

PERSON = "person"
AUTH = "auth"


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """What the policy sees.  ``justification``, ``platform`` and ``device`` are asserted by
    the agent: never approve on them alone (digest 7, consent presentation)."""

    kind: Literal["person", "auth"]
    agent: str
    agent_issuer: str
    person: str
    resource: str
    scopes: frozenset[str] = frozenset()
    capabilities: frozenset[str] = frozenset()
    justification: str | None = None
    platform: str | None = None
    device: str | None = None
    login_hint: str | None = None
    tenant: str | None = None
    prompt: str | None = None
    #: The active mission the request names (``mission_s256``), already checked to be this
    #: agent's; its ``document`` holds ``approved_resources`` and ``approved_tools``.
    mission: Mission | None = None
    #: ``(question, answer)`` pairs asked so far on this request (agent-asserted answers);
    #: empty on the first decision, filled when the policy decides again after AskAgent.
    clarifications: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True, slots=True)
class Approve:
    #: Auth tokens only: grant at most these scopes (never more than the resource token names).
    scopes: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class Deny:
    reason: str = "the request was declined"


@dataclass(frozen=True, slots=True)
class AskPerson:
    pass


@dataclass(frozen=True, slots=True)
class AskAgent:
    """Ask the agent ``question`` (Markdown) before deciding; ``options`` suggest answers,
    ``timeout`` (seconds) bounds the wait for one (then the request expires, ``408``)."""

    question: str
    options: tuple[str, ...] = ()
    timeout: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.question, str) or not self.question.strip():
            raise ValueError("AskAgent needs a non-empty question")
        if not all(isinstance(o, str) and o for o in self.options):
            raise ValueError("AskAgent options must be non-empty strings")
        if self.timeout is not None and (isinstance(self.timeout, bool) or self.timeout <= 0):
            raise ValueError("AskAgent timeout must be a positive number of seconds")


Decision = Approve | Deny | AskPerson | AskAgent


class Policy(Protocol):
    def decide(self, request: TokenRequest) -> Decision: ...


@dataclass(frozen=True)
class DefaultPolicy:
    """Approve listed agents on listed resources with listed scopes; ask the person otherwise.

    Empty ``auto_approve_agents`` approves nobody automatically.  Empty
    ``auto_approve_resources`` puts no restriction on resources; an auth-token request is
    approved only when every requested scope is in ``auto_approve_scopes``.
    """

    auto_approve_agents: tuple[str, ...] = ()
    auto_approve_scopes: tuple[str, ...] = ()
    auto_approve_resources: tuple[str, ...] = ()
    _agents: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_agents", frozenset(self.auto_approve_agents))

    def decide(self, request: TokenRequest) -> Decision:
        if request.agent not in self._agents:
            return AskPerson()
        resources = self.auto_approve_resources
        if resources and request.resource not in resources:
            return AskPerson()
        if request.kind == AUTH and not request.scopes <= frozenset(self.auto_approve_scopes):
            return AskPerson()
        return Approve()


__all__ = [
    "AUTH",
    "PERSON",
    "Approve",
    "AskAgent",
    "AskPerson",
    "Decision",
    "DefaultPolicy",
    "Deny",
    "Policy",
    "TokenRequest",
]
