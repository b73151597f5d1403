"""The policy's questions to the agent (digest 7, the ``AskAgent`` decision).

The token endpoints hand an :class:`~.policy.AskAgent` decision to :meth:`AgentQuestions.ask_steps`:
the pending request is created ``questioned`` and the agent hears ``202
requirement=clarification`` with the question.  When the agent answers at the pending URL
(``clarification_response``, or an ``updated_request``), the request is ``pending`` again and
:meth:`AgentQuestions.redecide_steps` asks the policy once more, with every question and
answer so far in ``TokenRequest.clarifications``:

- ``Approve`` / ``Deny``: the outcome is settled; the agent's next poll collects it;
- ``AskAgent``: the next question (within ``clarification_rounds``);
- ``AskPerson``: an agent with the ``interaction`` capability gets ``202
  requirement=interaction`` with a fresh code for the consent page (where the person reads
  the questions and answers); any other agent ``202 requirement=approval``: the request
  waits in the person's consent list until it expires (``408``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from ..errors import Deferred
from ..identifiers import normalize_interaction_code
from ..resource.sessions import new_code
from ..resource.state import digest_id
from ..steps import Steps, StoreOp
from ..storage.base import Record
from ..verifier import VerifiedRequest
from .lifecycle import Event
from .pending import KIND_CODE, Refused, fire_steps
from .policy import Approve, AskAgent, AskPerson, Decision, Deny, TokenRequest

if TYPE_CHECKING:
    from .missions import Mission
    from .server import PersonServer


def policy_request(
    data: Mapping[str, Any], person: str, mission: Mission | None = None
) -> TokenRequest:
    """What the policy sees of a token request (``data`` as the endpoints and records hold it)."""
    return TokenRequest(
        kind=data["kind"],
        agent=data["agent"],
        agent_issuer=data["agent_iss"],
        person=person,
        resource=data["resource"],
        scopes=frozenset(data["scope"]),
        capabilities=frozenset(data["capabilities"]),
        justification=data.get("justification"),
        platform=data.get("platform"),
        device=data.get("device"),
        login_hint=data.get("login_hint"),
        tenant=data.get("tenant") or data.get("tenant_hint"),
        prompt=data.get("prompt"),
        mission=mission,
        clarifications=tuple(
            (str(c["question"]), c["answer"]) for c in data.get("clarifications", ())
        ),
    )


class AgentQuestions:
    def __init__(self, server: PersonServer) -> None:
        self.server = server

    def can_ask(self, data: Mapping[str, Any]) -> bool:
        """The agent takes questions and the rounds are not used up."""
        asked = len(data.get("clarifications", ()))
        return (
            "clarification" in data["capabilities"]
            and asked < self.server.config.clarification_rounds
        )

    def ask_steps(
        self, verified: VerifiedRequest, data: dict[str, Any], decision: AskAgent
    ) -> Steps[NoReturn]:
        """Open the request ``questioned`` and answer ``202 requirement=clarification``."""
        server = self.server
        record = yield from server.pending.create_steps(data, None)
        yield from server.remember_agent_steps(verified)
        record = yield from fire_steps(record, Event.CLARIFICATION_ASKED, self._entry(decision))
        yield from self._log_steps(record, decision)
        raise server.pending.deferred(record)

    def redecide_steps(self, record: Record, verified: VerifiedRequest) -> Steps[NoReturn]:
        """The agent answered the policy's question: ask the policy again (module doc)."""
        server = self.server
        data = record.data
        person = str(data["person"])
        mission = None
        if data.get("mission_s256") is not None:
            mission = yield from server.missions.require_steps(
                data["mission_s256"], data["agent_iss"], data["agent"], person
            )
        decision: Decision = server.config.policy.decide(policy_request(data, person, mission))
        if isinstance(decision, Approve) and data.get("prompt") in ("login", "consent"):
            decision = AskPerson()
        if isinstance(decision, AskAgent) and not self.can_ask(data):
            decision = AskPerson()
        try:
            if isinstance(decision, AskAgent):
                record = yield from fire_steps(
                    record, Event.CLARIFICATION_ASKED, self._entry(decision)
                )
            elif isinstance(decision, Approve):
                requested = frozenset(data["scope"])
                granted = requested if decision.scopes is None else requested & decision.scopes
                record = yield from fire_steps(
                    record, Event.APPROVED, _set(granted=sorted(granted))
                )
            elif isinstance(decision, Deny):
                record = yield from fire_steps(
                    record, Event.DENIED, _set(revoked_detail=decision.reason)
                )
        except Refused as refused:
            record = refused.record  # the person decided meanwhile: their outcome stands
            raise server.pending.deferred(record) from None
        yield from self._log_steps(record, decision)
        if not isinstance(decision, AskPerson):
            raise server.pending.deferred(record)
        cfg = server.config
        location = server.pending.location(record.id)
        if "interaction" not in data["capabilities"]:
            raise Deferred(location, requirement="approval", retry_after=cfg.poll_interval)
        code = new_code()
        code_id = digest_id(normalize_interaction_code(code))
        yield StoreOp("create", (KIND_CODE, code_id, {"pending": record.id}, cfg.pending_lifetime))
        raise Deferred(
            location,
            requirement="interaction",
            params={"url": cfg.url_for(cfg.consent_path), "code": code},
            retry_after=cfg.poll_interval,
        )

    def _entry(self, decision: AskAgent) -> Any:
        entry = {
            "question": decision.question,
            "options": list(decision.options) or None,
            "timeout": decision.timeout,
            "asked_at": self.server.config.clock.now(),
            "answer": None,
            "by": "policy",
        }

        def append(data: dict[str, Any]) -> None:
            data["clarifications"] = [*data["clarifications"], entry]

        return append

    def _log_steps(self, record: Record, decision: Decision) -> Steps[None]:
        mission = record.data.get("mission_s256")
        if mission is None:
            return
        entry: dict[str, Any] = {
            "event": "policy_decided",
            "pending": record.id,
            "decision": type(decision).__name__.lower(),
        }
        if isinstance(decision, AskAgent):
            entry["question"] = decision.question
        yield from self.server.missions.log_steps(str(mission), entry)


def _set(**values: object) -> Any:
    def update(data: dict[str, Any]) -> None:
        data.update(values)

    return update


__all__ = ["AgentQuestions", "policy_request"]
