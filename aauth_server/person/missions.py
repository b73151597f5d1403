"""Missions at the Person Server (digest 8): the record, its two states, and its log.

A mission is identified by this PS and ``s256``, the unpadded base64url SHA-256 of the
mission blob: the exact bytes the PS persists, returns on approval and serves for audit.
The blob holds ``agent``, ``approved_at`` (ISO 8601, to the microsecond: it makes ``s256``
unique), ``description`` and, when given, ``expires_at``, ``approved_tools`` and
``approved_resources``.  What is not part of the mission's meaning lives outside the blob:
the owner (agent token ``iss`` and ``sub``), the person, the state and the reason it ended.

States are ``active`` and ``terminated`` only; a terminated mission never returns to
active.  ``expires_at`` passing terminates it (reason ``expired``) on the next read.

Every PS endpoint given a ``mission_s256`` goes through :meth:`Missions.require_steps`:
an unknown mission and another agent's mission answer the same ``404 mission_not_found``
(no existence oracle); an inactive one answers ``403 mission_terminated`` with
``mission_status`` and ``termination_reason``.  Token requests, their outcomes and relays
naming a mission are appended to the mission log (:meth:`Missions.history`).

Applications create and end missions with :meth:`Missions.approve` and
:meth:`Missions.terminate` (sync) or their ``a``-prefixed twins; the agent-facing mission
endpoint (proposal, update, completion) is not part of this module.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..errors import AAuthError
from ..keys.jwk import b64url_decode, b64url_encode
from ..revocation import problem
from ..steps import Steps, StoreOp
from ..storage.base import Record, RecordExists, RecordNotFound, VersionConflict

if TYPE_CHECKING:
    from .server import PersonServer

KIND_MISSION = "ps-mission"
KIND_MISSION_LOG = "ps-mission-log"
ACTIVE = "active"
TERMINATED = "terminated"
#: Reasons the digest names; any other string is allowed and still means terminated.
REASONS = ("completed", "revoked", "expired", "superseded", "administrative")
_S256 = re.compile(r"[A-Za-z0-9_-]{43}")
_CAS_ATTEMPTS = 16


def mission_s256(blob: bytes) -> str:
    """``s256`` of a mission blob: unpadded base64url of SHA-256 over exactly those bytes."""
    return b64url_encode(hashlib.sha256(blob).digest())


def valid_s256(value: object) -> bool:
    return isinstance(value, str) and _S256.fullmatch(value) is not None


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("mission times must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _epoch(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.timestamp()


@dataclass(frozen=True, slots=True)
class Mission:
    """One mission as this PS holds it."""

    s256: str
    blob: bytes
    agent_issuer: str
    agent: str
    person: str
    state: str
    termination_reason: str | None = None
    terminated_at: float | None = None

    @property
    def document(self) -> dict[str, Any]:
        """The blob, decoded (the PS wrote it: a JSON object)."""
        value: dict[str, Any] = json.loads(self.blob)
        return value

    @property
    def description(self) -> str:
        return str(self.document["description"])

    @property
    def expires_at(self) -> float | None:
        """``expires_at`` of the blob as epoch seconds; None when the mission has none."""
        return _epoch(self.document.get("expires_at"))

    @property
    def active(self) -> bool:
        return self.state == ACTIVE

    def approval(
        self,
        *,
        capabilities: Sequence[str] | None = None,
        person_tokens: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """The approval response body of digest 8.3."""
        body: dict[str, Any] = {"s256": self.s256, "mission": b64url_encode(self.blob)}
        if capabilities is not None:
            body["capabilities"] = list(capabilities)
        if person_tokens:
            body["person_tokens"] = dict(person_tokens)
        return body


def _mission(record: Record) -> Mission:
    data = record.data
    return Mission(
        s256=record.id,
        blob=b64url_decode(str(data["blob"])),
        agent_issuer=str(data["agent_iss"]),
        agent=str(data["agent"]),
        person=str(data["person"]),
        state=str(data["state"]),
        termination_reason=data.get("reason"),
        terminated_at=data.get("terminated_at"),
    )


def mission_terminated(mission: Mission) -> AAuthError:
    """Digest 8.6: the answer of any PS endpoint given an inactive ``mission_s256``."""
    extra = {
        "mission_status": TERMINATED,
        "termination_reason": mission.termination_reason or "administrative",
    }
    return AAuthError(
        "this mission is no longer active", error="mission_terminated", status=403, extra=extra
    )


def _not_found() -> AAuthError:
    # One answer for "no such mission" and "not this agent's": nothing to tell them apart.
    return problem(404, "mission_not_found", "no such mission")


class Missions:
    def __init__(self, server: PersonServer) -> None:
        self.server = server

    @property
    def _ttl(self) -> float:
        return float(self.server.config.mission_retention)

    # -- creating and ending ------------------------------------------------------------------

    def approve_steps(
        self,
        *,
        agent_issuer: str,
        agent: str,
        person: str,
        description: str,
        expires_at: datetime | None = None,
        tools: Sequence[Mapping[str, str]] | None = None,
        resources: Sequence[str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Steps[Mission]:
        if not isinstance(description, str) or not description.strip():
            raise ValueError("a mission needs a description")
        now = self.server.config.clock.now()
        doc: dict[str, Any] = dict(extra or {})
        doc.update(
            agent=agent,
            approved_at=_iso(datetime.fromtimestamp(now, UTC)),
            description=description,
        )
        if expires_at is not None:
            doc["expires_at"] = _iso(expires_at)
        if tools is not None:
            doc["approved_tools"] = [dict(tool) for tool in tools]
        if resources is not None:
            doc["approved_resources"] = list(resources)
        blob = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        s256 = mission_s256(blob)
        data = {
            "blob": b64url_encode(blob),
            "agent_iss": agent_issuer,
            "agent": agent,
            "person": person,
            "state": ACTIVE,
        }
        try:
            record: Record = yield StoreOp("create", (KIND_MISSION, s256, data, self._ttl))
        except RecordExists:
            # Same agent, time to the microsecond and description: the same mission.
            existing = yield StoreOp("get", (KIND_MISSION, s256))
            if existing is None:
                raise
            record = existing
        mission = _mission(record)
        yield from self.log_steps(s256, {"event": "approved", "person": person})
        return mission

    def terminate_steps(self, s256: str, reason: str = "administrative") -> Steps[Mission]:
        """End a mission; ending an ended one keeps its first reason.  ``LookupError`` when
        this PS holds no such mission."""
        if not isinstance(reason, str) or not reason:
            raise ValueError("a termination reason is a non-empty string")
        record = yield from self._record_steps(s256)
        if record is None:
            raise LookupError(f"no mission {s256}")
        mission = yield from self._end_steps(record, reason)
        return mission

    def _end_steps(self, record: Record, reason: str) -> Steps[Mission]:
        for _ in range(_CAS_ATTEMPTS):
            if record.data["state"] != ACTIVE:
                return _mission(record)
            now = self.server.config.clock.now()
            data = {**record.data, "state": TERMINATED, "reason": reason, "terminated_at": now}
            try:
                stored: Record = yield StoreOp(
                    "compare_and_set", (KIND_MISSION, record.id, record.version, data, self._ttl)
                )
            except (VersionConflict, RecordNotFound):
                fresh = yield StoreOp("get", (KIND_MISSION, record.id))
                if fresh is None:
                    raise LookupError(f"no mission {record.id}") from None
                record = fresh
                continue
            mission = _mission(stored)
            yield from self.log_steps(mission.s256, {"event": "terminated", "reason": reason})
            return mission
        raise problem(503, "temporarily_unavailable", "the mission is busy; retry")

    # -- reading ------------------------------------------------------------------------------

    def _record_steps(self, s256: str) -> Steps[Record | None]:
        if not valid_s256(s256):
            return None
        record: Record | None = yield StoreOp("get", (KIND_MISSION, s256))
        return record

    def get_steps(self, s256: str) -> Steps[Mission | None]:
        """The mission, with an elapsed ``expires_at`` applied (it terminates ``expired``)."""
        record = yield from self._record_steps(s256)
        if record is None:
            return None
        mission = _mission(record)
        expires = mission.expires_at
        if mission.active and expires is not None and self.server.config.clock.now() >= expires:
            mission = yield from self._end_steps(record, "expired")
        return mission

    def require_steps(
        self, s256: object, agent_issuer: str, agent: str, person: str | None
    ) -> Steps[Mission]:
        """The active mission ``s256`` of this agent and of the person it is bound to now,
        or the digest 8.6 error."""
        if not isinstance(s256, str) or not s256:
            raise problem(400, "invalid_request", "mission_s256 must be a string")
        if not valid_s256(s256):
            raise problem(400, "invalid_request", "mission_s256 is not a base64url SHA-256")
        mission = yield from self.get_steps(s256)
        caller = (agent_issuer, agent, person)
        if mission is None or (mission.agent_issuer, mission.agent, mission.person) != caller:
            raise _not_found()
        if not mission.active:
            raise mission_terminated(mission)
        return mission

    def is_active_steps(self, s256: str) -> Steps[Mission | None]:
        """The mission when it is still active, else None (gone, ended or expired)."""
        mission = yield from self.get_steps(s256)
        return mission if mission is not None and mission.active else None

    # -- the log ------------------------------------------------------------------------------

    def log_steps(self, s256: str, entry: Mapping[str, Any]) -> Steps[None]:
        """Append ``entry`` to the log of mission ``s256``.

        Entries are records ``{s256}.{n}``; an append claims the first free ``n`` from the
        head (a hint record) onwards with ``create``, which only one writer can win, so
        concurrent appends never overwrite each other and the numbers stay contiguous.  The
        head is then advanced by compare-and-set when nobody advanced it further."""
        head = yield StoreOp("get", (KIND_MISSION_LOG, s256))
        number = 1 if head is None else int(head.data["n"]) + 1
        while True:
            data = {**entry, "at": self.server.config.clock.now(), "seq": number}
            try:
                yield StoreOp("create", (KIND_MISSION_LOG, f"{s256}.{number}", data, self._ttl))
                break
            except RecordExists:
                number += 1
        for _ in range(_CAS_ATTEMPTS):
            try:
                if head is None:
                    yield StoreOp("create", (KIND_MISSION_LOG, s256, {"n": number}, self._ttl))
                elif int(head.data["n"]) < number:
                    args = (KIND_MISSION_LOG, s256, head.version, {"n": number}, self._ttl)
                    yield StoreOp("compare_and_set", args)
                return
            except (RecordExists, VersionConflict, RecordNotFound):
                head = yield StoreOp("get", (KIND_MISSION_LOG, s256))
        # The head is only a hint: readers and writers probe past it.

    def history_steps(self, s256: str) -> Steps[list[dict[str, Any]]]:
        """The mission log, oldest first (entries past their retention are gone)."""
        if not valid_s256(s256):
            return []
        head = yield StoreOp("get", (KIND_MISSION_LOG, s256))
        known = 0 if head is None else int(head.data["n"])
        entries: list[dict[str, Any]] = []
        number = 1
        while True:
            record = yield StoreOp("get", (KIND_MISSION_LOG, f"{s256}.{number}"))
            if record is not None:
                entries.append(dict(record.data))
            elif number > known:
                return entries
            number += 1

    # -- sync and async faces -----------------------------------------------------------------

    def approve(self, **kwargs: Any) -> Mission:
        """Record an approved mission (keyword arguments of :meth:`approve_steps`)."""
        return self.server.run(self.approve_steps(**kwargs))

    async def aapprove(self, **kwargs: Any) -> Mission:
        return await self.server.arun(self.approve_steps(**kwargs))

    def terminate(self, s256: str, reason: str = "administrative") -> Mission:
        return self.server.run(self.terminate_steps(s256, reason))

    async def aterminate(self, s256: str, reason: str = "administrative") -> Mission:
        return await self.server.arun(self.terminate_steps(s256, reason))

    def get(self, s256: str) -> Mission | None:
        return self.server.run(self.get_steps(s256))

    async def aget(self, s256: str) -> Mission | None:
        return await self.server.arun(self.get_steps(s256))

    def history(self, s256: str) -> list[dict[str, Any]]:
        return self.server.run(self.history_steps(s256))

    async def ahistory(self, s256: str) -> list[dict[str, Any]]:
        return await self.server.arun(self.history_steps(s256))


__all__ = [
    "ACTIVE",
    "KIND_MISSION",
    "KIND_MISSION_LOG",
    "REASONS",
    "TERMINATED",
    "Mission",
    "Missions",
    "mission_s256",
    "mission_terminated",
    "valid_s256",
]
