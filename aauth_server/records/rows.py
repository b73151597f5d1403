"""What the record operations return: plain frozen rows, no SQLAlchemy types."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Log entry members stored in their own columns (queries filter on them); the rest of an
#: entry is kept as JSON in ``detail``.
LOG_COLUMNS = ("event", "agent", "resource", "scope", "decision", "reason", "actor")


@dataclass(frozen=True, slots=True)
class MissionRow:
    s256: str
    blob: bytes
    agent_issuer: str
    agent: str
    person: str
    status: str
    termination_reason: str | None
    approved_at: float
    expires_at: float | None
    status_at: float
    log_seq: int
    update_seq: int

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> MissionRow:
        return cls(
            s256=row["s256"],
            blob=bytes(row["blob"]),
            agent_issuer=row["agent_issuer"],
            agent=row["agent"],
            person=row["person"],
            status=row["status"],
            termination_reason=row["termination_reason"],
            approved_at=float(row["approved_at"]),
            expires_at=None if row["expires_at"] is None else float(row["expires_at"]),
            status_at=float(row["status_at"]),
            log_seq=int(row["log_seq"]),
            update_seq=int(row["update_seq"]),
        )


@dataclass(frozen=True, slots=True)
class MissionUpdateRow:
    seq: int
    blob: bytes
    digest: str
    accepted_at: float
    accepted_by: str

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> MissionUpdateRow:
        return cls(
            seq=int(row["seq"]),
            blob=bytes(row["blob"]),
            digest=row["digest"],
            accepted_at=float(row["accepted_at"]),
            accepted_by=row["accepted_by"],
        )


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One mission log entry: ``seq`` (1, 2, ... in append order), ``at`` and the entry."""

    seq: int
    at: float
    event: str
    agent: str | None = None
    resource: str | None = None
    scope: tuple[str, ...] | None = None
    decision: str | None = None
    reason: str | None = None
    actor: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> LogEntry:
        scope = row["scope"]
        return cls(
            seq=int(row["seq"]),
            at=float(row["at"]),
            event=row["event"],
            agent=row["agent"],
            resource=row["resource"],
            scope=None if scope is None else tuple(scope.split()),
            decision=row["decision"],
            reason=row["reason"],
            actor=row["actor"],
            detail=json.loads(row["detail"]) if row["detail"] else {},
        )

    def as_dict(self) -> dict[str, Any]:
        """The entry as it was appended, plus ``seq`` and ``at``."""
        out: dict[str, Any] = dict(self.detail)
        for name in LOG_COLUMNS:
            value = getattr(self, name)
            if value is not None:
                out[name] = list(value) if name == "scope" else value
        out["seq"] = self.seq
        out["at"] = self.at
        return out


def log_columns(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Split an entry into its columns and the JSON ``detail``."""
    values: dict[str, Any] = {}
    detail = {k: v for k, v in entry.items() if k not in LOG_COLUMNS and k not in ("seq", "at")}
    for name in LOG_COLUMNS:
        value = entry.get(name)
        if name == "scope" and value is not None and not isinstance(value, str):
            value = " ".join(str(s) for s in value)
        values[name] = None if value is None else str(value)
    if not values["event"]:
        raise ValueError("a log entry needs an event")
    values["detail"] = json.dumps(detail, separators=(",", ":"), sort_keys=True) if detail else None
    return values


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token this server issued (digest 5.2 retention, 5.7 records to keep)."""

    jti: str
    type: str
    aud: str
    iat: float
    exp: float
    agent_issuer: str | None = None
    agent: str | None = None
    agent_jti: str | None = None
    person: str | None = None
    sub: str | None = None
    mission: str | None = None
    scope: str | None = None
    upstream_iss: str | None = None
    upstream_jti: str | None = None
    presented_iss: str | None = None
    presented_jti: str | None = None
    presented_to: str | None = None
    revoked_at: float | None = None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> IssuedToken:
        values = {name: row[name] for name in cls.__slots__}
        return cls(**values)

    def values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One outbound message (a revocation) and how far it got."""

    id: int
    kind: str
    recipient: str
    jti: str
    exp: float
    mission: str | None
    token_type: str | None
    status: str
    detail: str | None
    attempts: int
    next_at: float
    poll_url: str | None
    created_at: float
    finished_at: float | None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> OutboxItem:
        return cls(
            id=int(row["id"]),
            kind=row["kind"],
            recipient=row["recipient"],
            jti=row["jti"],
            exp=float(row["exp"]),
            mission=row["mission"],
            token_type=row["token_type"],
            status=row["status"],
            detail=row["detail"],
            attempts=int(row["attempts"]),
            next_at=float(row["next_at"]),
            poll_url=row["poll_url"],
            created_at=float(row["created_at"]),
            finished_at=None if row["finished_at"] is None else float(row["finished_at"]),
        )


__all__ = [
    "LOG_COLUMNS",
    "IssuedToken",
    "LogEntry",
    "MissionRow",
    "MissionUpdateRow",
    "OutboxItem",
    "log_columns",
]
