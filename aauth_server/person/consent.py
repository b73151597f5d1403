"""The consent API the PS pages call (digest 6.2, 7, P-§8.4), after the app authenticated
the person (``person`` is whatever id the app's login hook decided).

Every method has an async twin (``aopen``, ``aview``, ...).  Views carry raw strings: the
page sanitises Markdown and keeps resource-asserted content (``resource_*``, ``scopes``)
visibly apart from agent-asserted content (``justification``, ``platform``, ``device``,
clarification answers).

Interaction codes are single use and rate-limited: ``code_attempts`` wrong codes per person
per minute lock that person out for the rest of the minute, and when the page says which
request the code is for (``pending_id``), that many wrong codes end the request for good
(``code_locked``: the agent's poll answers ``410 invalid_code``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import AAuthError, Forbidden
from ..identifiers import normalize_interaction_code
from ..resource.state import digest_id
from ..revocation import problem
from ..steps import Steps, StoreOp
from ..storage.base import Record, RecordNotFound, VersionConflict
from ..tokens.aauth import DWK_RESOURCE
from .lifecycle import OPEN, Event, State
from .pending import (
    KIND_CODE,
    KIND_INBOX,
    KIND_PENDING,
    Refused,
    fire_steps,
    get_steps,
    state_of,
)

if TYPE_CHECKING:
    from ..missions.model import Mission
    from .server import PersonServer

KIND_CODE_FAILURES = "ps-code-failures"
#: Seconds of the per-person window of wrong interaction codes.
CODE_WINDOW = 60.0


class InvalidCode(AAuthError):
    status = 410
    error = "invalid_code"


@dataclass(frozen=True, slots=True)
class ConsentView:
    pending_id: str
    state: str
    kind: str
    """``"person"`` (may this agent act at this resource as you?) or ``"auth"`` (scopes)."""
    agent: str
    agent_issuer: str
    resource: str
    #: Resource-asserted: the resource's metadata (best effort) and the scopes it asked for.
    resource_name: str | None
    resource_description: str | None
    scopes: tuple[tuple[str, str | None], ...]
    #: Agent-asserted: untrusted, shown as such.
    justification: str | None
    platform: str | None
    device: str | None
    clarifications: tuple[tuple[str, str | None], ...]
    rounds_left: int
    can_ask: bool
    expires_at: float
    #: Approving also binds this agent to the person (the PS did not know it).
    binds_agent: bool
    #: The mission the request is part of (approved by the person earlier), if any.
    mission: Mission | None = None
    #: Agent-asserted content of a mission request (``proposal``: description, tools,
    #: resources; ``mission_update``: description; ``completion``: summary; ``permission``:
    #: action, description, parameters).
    proposal: Mapping[str, Any] | None = None


Approver = Callable[[Mapping[str, Any], str, Mapping[str, str] | None], Steps[dict[str, Any]]]
#: The kinds of token requests; the others (missions) have no resource metadata to show.
TOKEN_KINDS = ("person", "auth")


class Consent:
    def __init__(self, server: PersonServer) -> None:
        self.server = server
        #: ``kind`` -> what approving a request of that kind does before it is approved
        #: (the changes it returns go into the pending record).
        self.approvers: dict[str, Approver] = {}

    # -- sync and async twins -----------------------------------------------------------------

    def open(self, code: str, person: str, pending_id: str | None = None) -> ConsentView:
        return self._view(self.server.run(self._open_steps(code, person, pending_id)))

    async def aopen(self, code: str, person: str, pending_id: str | None = None) -> ConsentView:
        return await self._aview(await self.server.arun(self._open_steps(code, person, pending_id)))

    def view(self, pending_id: str, person: str) -> ConsentView:
        return self._view(self.server.run(self._owned_steps(pending_id, person)))

    async def aview(self, pending_id: str, person: str) -> ConsentView:
        return await self._aview(await self.server.arun(self._owned_steps(pending_id, person)))

    def approve(self, pending_id: str, person: str, edits: Mapping[str, str] | None = None) -> None:
        """Approve; ``edits`` are the person's changes (a mission's ``description``)."""
        self.server.run(self._approve_steps(pending_id, person, edits))

    async def aapprove(
        self, pending_id: str, person: str, edits: Mapping[str, str] | None = None
    ) -> None:
        await self.server.arun(self._approve_steps(pending_id, person, edits))

    def deny(self, pending_id: str, person: str) -> None:
        self.server.run(self._decide_steps(pending_id, person, Event.DENIED))

    async def adeny(self, pending_id: str, person: str) -> None:
        await self.server.arun(self._decide_steps(pending_id, person, Event.DENIED))

    def abandon(self, pending_id: str, person: str) -> None:
        """The person left without deciding (or the callback said ``user_abandoned``)."""
        self.server.run(self._decide_steps(pending_id, person, Event.ABANDONED))

    async def aabandon(self, pending_id: str, person: str) -> None:
        await self.server.arun(self._decide_steps(pending_id, person, Event.ABANDONED))

    def ask(
        self,
        pending_id: str,
        person: str,
        question: str,
        options: list[str] | None = None,
        timeout: int | None = None,
    ) -> None:
        self.server.run(self._ask_steps(pending_id, person, question, options, timeout))

    async def aask(
        self,
        pending_id: str,
        person: str,
        question: str,
        options: list[str] | None = None,
        timeout: int | None = None,
    ) -> None:
        await self.server.arun(self._ask_steps(pending_id, person, question, options, timeout))

    def pending_for(self, person: str) -> list[ConsentView]:
        return [self._view(r) for r in self.server.run(self._inbox_steps(person))]

    async def apending_for(self, person: str) -> list[ConsentView]:
        return [await self._aview(r) for r in await self.server.arun(self._inbox_steps(person))]

    # -- the logic, as steps (Mission Control runs them inside its own flows) -----------------

    def approve_steps(
        self, pending_id: str, person: str, edits: Mapping[str, str] | None = None
    ) -> Steps[None]:
        return self._approve_steps(pending_id, person, edits)

    def ask_steps(self, pending_id: str, person: str, question: str) -> Steps[None]:
        return self._ask_steps(pending_id, person, question, None, None)

    def engage_steps(self, pending_id: str, person: str) -> Steps[None]:
        """The person took up a request from another PS page (Mission Control): it is
        ``interacting`` now, so they may ask the agent questions."""
        record = yield from self._owned_steps(pending_id, person)
        if state_of(record) is State.PENDING:
            try:
                yield from fire_steps(record, Event.INTERACTION_STARTED)
            except Refused:
                pass

    def open_records_steps(self, person: str) -> Steps[list[Record]]:
        """The person's open requests, as records (``kind``, ``mission_s256``, ...)."""
        return self._inbox_steps(person)

    def view_of(self, record: Record) -> ConsentView:
        """A view of a record without resource metadata (Mission Control's listing)."""
        return self._build(record, {})

    def _open_steps(self, code: str, person: str, pending_id: str | None) -> Steps[Record]:
        cfg = self.server.config
        # Every attempt is counted before its code is looked at, in one atomic step: of any
        # number of parallel attempts only ``code_attempts`` per minute are ever checked.
        # A right code gives its count back (only wrong ones lock the person out).
        counter = f"{KIND_CODE_FAILURES}:{digest_id(person)}"
        attempts = yield StoreOp("increment", (counter, 1, CODE_WINDOW))
        if attempts > cfg.code_attempts:
            raise InvalidCode("too many wrong codes: try again in a minute")
        record = yield from self._redeem_steps(code, person, pending_id)
        yield StoreOp("increment", (counter, -1, CODE_WINDOW))
        return record

    def _redeem_steps(self, code: str, person: str, pending_id: str | None) -> Steps[Record]:
        try:
            code_id = digest_id(normalize_interaction_code(code))
        except ValueError:
            code_id = None
        index = None if code_id is None else (yield StoreOp("get", (KIND_CODE, code_id)))
        target = None if index is None else str(index.data["pending"])
        record = None
        if target is not None and pending_id in (None, target):
            record = yield StoreOp("get", (KIND_PENDING, target))
        if record is None or code_id is None:
            # A failed attempt (counted for the person already), and for the request the
            # page named.
            if pending_id is not None:
                yield from self._code_failure_steps(pending_id)
            raise InvalidCode("unknown or already used interaction code")
        record = yield from self.server.pending.settle_steps(record)
        if record.data["person"] not in (None, person):
            raise Forbidden("this request belongs to another person")
        consumed = yield StoreOp("consume", (KIND_CODE, code_id))
        if consumed is None:
            raise InvalidCode("unknown or already used interaction code")
        try:
            record = yield from fire_steps(record, Event.INTERACTION_STARTED, _set(person=person))
        except Refused:
            raise InvalidCode("this interaction can no longer be started") from None
        yield from self.server.pending.add_to_inbox_steps(
            person, record.id, float(record.data["expires_at"])
        )
        return record

    def _code_failure_steps(self, pending_id: str) -> Steps[None]:
        """Count a wrong code against the request; the ``code_attempts``-th locks it.

        Each round re-reads and re-decides on the stored record (compare-and-set), so
        parallel wrong codes can neither lose a count nor skip the lock."""
        try:
            record = yield from get_steps(pending_id)
        except AAuthError:
            return
        limit = self.server.config.code_attempts

        def count(data: dict[str, Any]) -> None:
            data["code_failures"] = int(data["code_failures"]) + 1

        while True:
            if state_of(record) is not State.PENDING:
                return  # redeemed or locked already: nothing left to lock
            if int(record.data["code_failures"]) + 1 >= limit:
                try:
                    yield from fire_steps(record, Event.CODE_LOCKED, count)
                except Refused:
                    pass
                return
            data = dict(record.data)
            count(data)
            try:
                yield StoreOp("compare_and_set", (KIND_PENDING, record.id, record.version, data))
                return
            except VersionConflict:
                fresh = yield StoreOp("get", (KIND_PENDING, record.id))
            except RecordNotFound:
                return
            if fresh is None:
                return
            record = fresh

    def _owned_steps(self, pending_id: str, person: str) -> Steps[Record]:
        record = yield from get_steps(pending_id)
        if record.data["person"] != person:
            # Same answer as an unknown id: no oracle for other people's requests.
            raise problem(404, "not_found", "no such pending request")
        return (yield from self.server.pending.settle_steps(record))

    def _approve_steps(
        self, pending_id: str, person: str, edits: Mapping[str, str] | None = None
    ) -> Steps[None]:
        record = yield from self._owned_steps(pending_id, person)
        if not record.data["bound"] and state_of(record) in OPEN:
            data = record.data
            bound = yield from self.server.bindings.bind_steps(
                data["agent_iss"], data["agent"], person
            )
            if not bound:
                raise problem(409, "invalid_state", "this agent is bound to another person")
        granted = sorted(record.data["scope"])
        changes: dict[str, Any] = {"granted": granted, "bound": True}
        approver = self.approvers.get(str(record.data["kind"]))
        if approver is not None:
            if state_of(record) not in OPEN:
                state = state_of(record).value
                raise problem(409, "invalid_state", f"not possible while the request is {state}")
            changes.update((yield from approver(record.data, person, edits)))
        yield from self._fire(record, Event.APPROVED, _set(**changes))
        yield from self._mission_log_steps(record, Event.APPROVED, granted=granted)

    def _decide_steps(self, pending_id: str, person: str, event: Event) -> Steps[None]:
        record = yield from self._owned_steps(pending_id, person)
        yield from self._fire(record, event)
        yield from self._mission_log_steps(record, event)

    def _mission_log_steps(self, record: Record, event: Event, **details: object) -> Steps[None]:
        """The person's decisions on a request within a mission go to the mission log."""
        mission = record.data.get("mission_s256")
        if mission is None:
            return
        data = record.data
        entry: dict[str, object] = {"pending": record.id, "kind": data["kind"], "actor": "person"}
        entry.update(agent=data["agent"], resource=data.get("resource"))
        if event in (Event.APPROVED, Event.DENIED):
            entry["event"] = "decision"
            entry["decision"] = "granted" if event is Event.APPROVED else "denied"
            entry["scope"] = details.pop("granted", sorted(data.get("scope", [])))
            if event is Event.DENIED:
                entry["reason"] = "the person declined"
        else:
            entry["event"] = f"person_{event.value}"
        entry.update(details)
        yield from self.server.missions.log_steps(str(mission), entry)

    def _ask_steps(
        self,
        pending_id: str,
        person: str,
        question: str,
        options: list[str] | None,
        timeout: int | None,
    ) -> Steps[None]:
        if not isinstance(question, str) or not question.strip():
            raise ValueError("question must be a non-empty string")
        if options is not None and not all(isinstance(o, str) and o for o in options):
            raise ValueError("options must be non-empty strings")
        if timeout is not None and (isinstance(timeout, bool) or timeout <= 0):
            raise ValueError("timeout must be a positive number of seconds")
        record = yield from self._owned_steps(pending_id, person)
        if not self._can_ask(record):
            raise problem(
                409,
                "clarification_unavailable",
                "the agent cannot take clarification questions or the rounds are used up",
            )
        entry = {
            "question": question,
            "options": list(options) if options else None,
            "timeout": timeout,
            "asked_at": self.server.config.clock.now(),
            "answer": None,
        }

        def append(data: dict[str, Any]) -> None:
            data["clarifications"] = [*data["clarifications"], entry]

        yield from self._fire(record, Event.CLARIFICATION_ASKED, append)
        yield from self._mission_log_steps(record, Event.CLARIFICATION_ASKED, question=question)

    def _inbox_steps(self, person: str) -> Steps[list[Record]]:
        inbox = yield StoreOp("get", (KIND_INBOX, digest_id(person)))
        records: list[Record] = []
        for pending_id in [] if inbox is None else inbox.data["ids"]:
            record = yield StoreOp("get", (KIND_PENDING, pending_id))
            if record is None or record.data["person"] != person:
                continue
            record = yield from self.server.pending.settle_steps(record)
            if state_of(record) in OPEN:
                records.append(record)
        return records

    @staticmethod
    def _fire(
        record: Record, event: Event, update: Callable[[dict[str, Any]], None] | None = None
    ) -> Steps[Record]:
        try:
            return (yield from fire_steps(record, event, update))
        except Refused as refused:
            state = state_of(refused.record).value
            raise problem(
                409, "invalid_state", f"not possible while the request is {state}"
            ) from None

    def _can_ask(self, record: Record) -> bool:
        data = record.data
        return (
            "clarification" in data["capabilities"]
            and len(data["clarifications"]) < self.server.config.clarification_rounds
            and state_of(record) is State.INTERACTING
        )

    # -- views --------------------------------------------------------------------------------

    def _view(self, record: Record) -> ConsentView:
        mission = self._mission_of(record)
        found = None if mission is None else self.server.missions.get(mission)
        meta: Mapping[str, object] = {}
        if record.data["kind"] in TOKEN_KINDS:
            meta = self._metadata(record.data["resource"])
        return self._build(record, meta, found)

    async def _aview(self, record: Record) -> ConsentView:
        mission = self._mission_of(record)
        found = None if mission is None else await self.server.missions.aget(mission)
        meta: Mapping[str, object] = {}
        if record.data["kind"] in TOKEN_KINDS:
            meta = await self._ametadata(record.data["resource"])
        return self._build(record, meta, found)

    @staticmethod
    def _mission_of(record: Record) -> str | None:
        value = record.data.get("mission_s256")
        return None if value is None else str(value)

    def _metadata(self, resource: str) -> Mapping[str, object]:
        try:
            return self.server.discovery.metadata(resource, DWK_RESOURCE)
        except (AAuthError, ValueError, OSError):
            return {}  # best effort: the page still shows the resource identifier

    async def _ametadata(self, resource: str) -> Mapping[str, object]:
        try:
            return await self.server.discovery.ametadata(resource, DWK_RESOURCE)
        except (AAuthError, ValueError, OSError):
            return {}

    def _build(
        self, record: Record, meta: Mapping[str, object], mission: Mission | None = None
    ) -> ConsentView:
        data = record.data
        described = meta.get("scope_descriptions")
        descriptions = described if isinstance(described, dict) else {}
        scopes = tuple(
            (s, d if isinstance(d := descriptions.get(s), str) else None) for s in data["scope"]
        )
        used = len(data["clarifications"])
        return ConsentView(
            pending_id=record.id,
            state=str(data["state"]),
            kind=str(data["kind"]),
            agent=str(data["agent"]),
            agent_issuer=str(data["agent_iss"]),
            resource=str(data["resource"]),
            resource_name=_text(meta.get("name")),
            resource_description=_text(meta.get("description")),
            scopes=scopes,
            justification=data.get("justification"),
            platform=data.get("platform"),
            device=data.get("device"),
            clarifications=tuple((c["question"], c["answer"]) for c in data["clarifications"]),
            rounds_left=max(0, self.server.config.clarification_rounds - used),
            can_ask=self._can_ask(record),
            expires_at=float(data["expires_at"]),
            binds_agent=not data["bound"],
            mission=mission,
            proposal=data.get("proposal"),
        )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _set(**values: object) -> Callable[[dict[str, Any]], None]:
    def update(data: dict[str, Any]) -> None:
        data.update(values)

    return update
