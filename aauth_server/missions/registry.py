"""Missions over the durable records, as steps the Person Server's drivers run.

Every read and write is one record transaction (:mod:`aauth_server.records`), so what an
agent, the person and Mission Control see survives a restart and is shared by every worker.
Status changes and their log entries commit together.  Hooks registered with
:meth:`Missions.on_halt` run after a mission is suspended or ended (the PS uses one to revoke
the mission's tokens at their resources).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

from ..clock import Clock
from ..errors import AAuthError
from ..records import ACTIVE, SUSPENDED, TERMINATED, LogEntry, RecordOps, RecordStore
from ..records.rows import MissionRow, MissionUpdateRow
from ..steps import Steps
from .model import (
    Mission,
    MissionUpdate,
    build_blob,
    compact,
    iso_at,
    mission_not_found,
    mission_s256,
    status_error,
    valid_s256,
)

T = TypeVar("T")
Runner = Callable[[Steps[Any]], Any]
HaltHook = Callable[[Mission, str], Steps[None]]


def _bad(detail: str) -> AAuthError:
    return AAuthError(detail, error="invalid_request", status=400)


def to_mission(row: MissionRow, updates: Sequence[MissionUpdateRow] = ()) -> Mission:
    return Mission(
        s256=row.s256,
        blob=row.blob,
        agent_issuer=row.agent_issuer,
        agent=row.agent,
        person=row.person,
        state=row.status,
        termination_reason=row.termination_reason,
        status_at=row.status_at,
        updates=tuple(
            MissionUpdate(u.seq, u.blob, u.digest, u.accepted_at, u.accepted_by) for u in updates
        ),
    )


class MissionLog:
    """A query over one mission's log for policies: each method is a step generator
    (``count = yield from request.mission_log.count(resource=...)``), answered by an index
    lookup whatever the log's length."""

    def __init__(self, missions: Missions, s256: str) -> None:
        self._missions = missions
        self.s256 = s256

    def count(self, **filters: Any) -> Steps[int]:
        result: int = yield self._missions.op(self._missions.ops.log_count(self.s256, **filters))
        return result

    def recent(self, limit: int = 20, **filters: Any) -> Steps[list[LogEntry]]:
        txn = self._missions.ops.log_page(self.s256, limit=limit, **filters)
        result: list[LogEntry] = yield self._missions.op(txn)
        return result


class Missions:
    def __init__(
        self,
        *,
        records: RecordStore,
        ops: RecordOps,
        clock: Clock,
        run: Runner,
        arun: Callable[[Steps[Any]], Any],
    ) -> None:
        self.records = records
        self.ops = ops
        self.clock = clock
        self._run = run
        self._arun = arun
        self._halt_hooks: list[HaltHook] = []

    def op(self, txn: Any) -> Any:
        return self.records.op(txn)

    def on_halt(self, hook: HaltHook) -> None:
        """``hook(mission, event)`` runs (as steps) after ``suspended`` or ``terminated``."""
        self._halt_hooks.append(hook)

    # -- creating -----------------------------------------------------------------------------

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
        actor: str | None = None,
    ) -> Steps[Mission]:
        now = self.clock.now()
        blob = build_blob(
            agent=agent,
            approved_at=now,
            description=description,
            expires_at=expires_at,
            tools=tools,
            resources=resources,
            extra=extra,
        )
        s256 = mission_s256(blob)
        entry = {"event": "approved", "agent": agent, "actor": actor or person}
        row, _created = yield self.op(
            self.ops.create_mission(
                s256=s256,
                blob=blob,
                agent_issuer=agent_issuer,
                agent=agent,
                person=person,
                approved_at=now,
                expires_at=None if expires_at is None else expires_at.timestamp(),
                first_entry=entry,
            )
        )
        return to_mission(row)

    # -- reading ------------------------------------------------------------------------------

    def get_steps(self, s256: str) -> Steps[Mission | None]:
        """The mission as stored, with its updates; no side effects (an elapsed
        ``expires_at`` is applied by :meth:`current_steps`)."""
        if not valid_s256(s256):
            return None
        row, updates = yield self.op(self.ops.mission_with_updates(s256))
        return None if row is None else to_mission(row, updates)

    def current_steps(self, s256: str) -> Steps[Mission | None]:
        """The mission with an elapsed ``expires_at`` applied (it ends ``expired``)."""
        mission = yield from self.get_steps(s256)
        if mission is not None and mission.expired_at(self.clock.now()):
            mission = yield from self._end_steps(mission, "expired", None)
        return mission

    def is_active_steps(self, s256: str) -> Steps[Mission | None]:
        mission = yield from self.current_steps(s256)
        return mission if mission is not None and mission.active else None

    def require_steps(
        self,
        s256: object,
        agent_issuer: str,
        agent: str,
        person: str | None,
        *,
        allow_suspended: bool = False,
    ) -> Steps[Mission]:
        """The mission ``s256`` of this agent and of the person it is bound to now, active
        (or suspended, when allowed); else the digest 8.6 error.

        Ownership is checked before anything else happens: an unknown mission and another
        agent's answer the same, and a probe never ends or logs someone else's mission."""
        if not isinstance(s256, str) or not s256:
            raise _bad("mission_s256 must be a string")
        if not valid_s256(s256):
            raise _bad("mission_s256 is not a base64url SHA-256")
        mission = yield from self.get_steps(s256)
        caller = (agent_issuer, agent, person)
        if mission is None or (mission.agent_issuer, mission.agent, mission.person) != caller:
            raise mission_not_found()
        if mission.expired_at(self.clock.now()):
            mission = yield from self._end_steps(mission, "expired", None)
        error = status_error(mission)
        if error is not None and not (allow_suspended and mission.suspended):
            raise error
        return mission

    def of_person_steps(
        self, person: str, *, limit: int = 50, before: float | None = None
    ) -> Steps[list[Mission]]:
        rows = yield self.op(self.ops.missions_of(person, limit=limit, before=before))
        now = self.clock.now()
        missions = []
        for row in rows:
            mission = to_mission(row)
            if mission.expired_at(now):
                mission = yield from self._end_steps(mission, "expired", None)
            missions.append(mission)
        return missions

    # -- status -------------------------------------------------------------------------------

    def terminate_steps(
        self, s256: str, reason: str = "administrative", actor: str | None = None
    ) -> Steps[Mission]:
        """End a mission (final); ending an ended one keeps its first reason.
        ``LookupError`` when this PS holds no such mission."""
        if not isinstance(reason, str) or not reason:
            raise ValueError("a termination reason is a non-empty string")
        mission = yield from self.get_steps(s256)
        if mission is None:
            raise LookupError(f"no mission {s256}")
        return (yield from self._end_steps(mission, reason, actor))

    def _end_steps(self, mission: Mission, reason: str, actor: str | None) -> Steps[Mission]:
        entry = {"event": "terminated", "reason": reason, "actor": actor or "ps"}
        row, moved = yield self.op(
            self.ops.set_mission_status(
                mission.s256,
                TERMINATED,
                now=self.clock.now(),
                allowed_from=[ACTIVE, SUSPENDED],
                reason=reason,
                entry=entry,
            )
        )
        ended = replace(to_mission(row), updates=mission.updates)
        if moved:
            for hook in self._halt_hooks:
                yield from hook(ended, "terminated")
        return ended

    def suspend_steps(self, s256: str, actor: str) -> Steps[Mission]:
        """Halt an active mission (our extension); a suspended one stays as it is."""
        return (yield from self._move_steps(s256, SUSPENDED, [ACTIVE], actor))

    def resume_steps(self, s256: str, actor: str) -> Steps[Mission]:
        return (yield from self._move_steps(s256, ACTIVE, [SUSPENDED], actor))

    def _move_steps(self, s256: str, status: str, allowed: list[str], actor: str) -> Steps[Mission]:
        mission = yield from self.current_steps(s256)
        if mission is None:
            raise LookupError(f"no mission {s256}")
        event = "suspended" if status == SUSPENDED else "resumed"
        row, moved = yield self.op(
            self.ops.set_mission_status(
                s256,
                status,
                now=self.clock.now(),
                allowed_from=allowed,
                entry={"event": event, "actor": actor},
            )
        )
        moved_to = replace(to_mission(row), updates=mission.updates)
        if moved and status == SUSPENDED:
            for hook in self._halt_hooks:
                yield from hook(moved_to, "suspended")
        return moved_to

    def accept_update_steps(
        self, s256: str, description: str, actor: str, *, max_updates: int | None = None
    ) -> Steps[MissionUpdate | None]:
        """Persist an accepted update (digest 8.5); None when the mission is not active;
        :class:`~aauth_server.records.ops.MissionUpdatesFull` when it holds ``max_updates``
        accepted updates already (None: no cap)."""
        if not isinstance(description, str) or not description.strip():
            raise ValueError("an update needs a description")
        now = self.clock.now()
        blob = compact({"description": description, "accepted_at": iso_at(now)})
        digest = mission_s256(blob)
        entry = {"event": "update_accepted", "update_s256": digest, "actor": actor}
        seq = yield self.op(
            self.ops.add_mission_update(
                s256,
                blob=blob,
                digest=digest,
                now=now,
                accepted_by=actor,
                entry=entry,
                max_updates=max_updates,
            )
        )
        if seq is None:
            return None
        return MissionUpdate(int(seq), blob, digest, now, actor)

    # -- the log ------------------------------------------------------------------------------

    def log_steps(self, s256: str, entry: Mapping[str, Any]) -> Steps[int | None]:
        """Append ``entry`` (``event`` required) to the log; its ``seq``."""
        seq: int | None = yield self.op(self.ops.append_log(s256, entry, now=self.clock.now()))
        return seq

    def history_steps(self, s256: str) -> Steps[list[dict[str, Any]]]:
        """The whole log, oldest first, as dicts."""
        if not valid_s256(s256):
            return []
        entries: list[dict[str, Any]] = []
        after = 0
        while True:
            batch: list[LogEntry] = yield self.op(self.ops.log_since(s256, after=after))
            entries += [e.as_dict() for e in batch]
            if len(batch) < 1000:
                return entries
            after = batch[-1].seq

    def page_steps(
        self, s256: str, *, before: int | None = None, limit: int = 50
    ) -> Steps[list[LogEntry]]:
        result: list[LogEntry] = yield self.op(self.ops.log_page(s256, before=before, limit=limit))
        return result

    def log(self, s256: str) -> MissionLog:
        return MissionLog(self, s256)

    # -- sync and async faces -----------------------------------------------------------------

    def approve(self, **kwargs: Any) -> Mission:
        """Record an approved mission (keyword arguments of :meth:`approve_steps`)."""
        result: Mission = self._run(self.approve_steps(**kwargs))
        return result

    async def aapprove(self, **kwargs: Any) -> Mission:
        result: Mission = await self._arun(self.approve_steps(**kwargs))
        return result

    def terminate(self, s256: str, reason: str = "administrative") -> Mission:
        result: Mission = self._run(self.terminate_steps(s256, reason))
        return result

    async def aterminate(self, s256: str, reason: str = "administrative") -> Mission:
        result: Mission = await self._arun(self.terminate_steps(s256, reason))
        return result

    def get(self, s256: str) -> Mission | None:
        result: Mission | None = self._run(self.current_steps(s256))
        return result

    async def aget(self, s256: str) -> Mission | None:
        result: Mission | None = await self._arun(self.current_steps(s256))
        return result

    def history(self, s256: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._run(self.history_steps(s256))
        return result

    async def ahistory(self, s256: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._arun(self.history_steps(s256))
        return result


__all__ = ["MissionLog", "Missions", "to_mission"]
