"""A mission as the Person Server holds it (digest 8): the blob and its ``s256``, its status,
its accepted updates, and the answers every endpoint gives for a mission it cannot use.

A mission is identified by this PS and ``s256``, the unpadded base64url SHA-256 of the mission
blob: the exact bytes the PS persists, returns on approval and serves for audit.  The blob
holds ``agent``, ``approved_at`` (ISO 8601 UTC, to the microsecond: it makes ``s256``
unique), ``description`` and, when given, ``expires_at``, ``approved_tools`` and
``approved_resources``.  What is not part of the mission's meaning lives outside the blob:
the owner (agent token ``iss`` and ``sub``), the person, the status and why it ended.

Statuses: ``active`` and ``terminated`` (digest 8.5: terminated is final), plus our extension
``suspended`` (the person halted it from Mission Control; resume makes it active again).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..errors import AAuthError
from ..keys.jwk import b64url_encode

ACTIVE = "active"
SUSPENDED = "suspended"
TERMINATED = "terminated"
#: Reasons the digest names; any other string is allowed and still means terminated.
REASONS = ("completed", "revoked", "expired", "superseded", "administrative")
_S256 = re.compile(r"[A-Za-z0-9_-]{43}")


def mission_s256(blob: bytes) -> str:
    """``s256`` of a mission blob (or update): unpadded base64url SHA-256 of exactly those bytes."""
    return b64url_encode(hashlib.sha256(blob).digest())


def valid_s256(value: object) -> bool:
    return isinstance(value, str) and _S256.fullmatch(value) is not None


def iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("mission times must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def iso_at(epoch: float) -> str:
    return iso(datetime.fromtimestamp(epoch, UTC))


def epoch(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.timestamp()


def compact(document: Mapping[str, Any]) -> bytes:
    """The bytes we persist and hash: compact UTF-8 JSON, keys in the order given."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def build_blob(
    *,
    agent: str,
    approved_at: float,
    description: str,
    expires_at: datetime | None = None,
    tools: Sequence[Mapping[str, str]] | None = None,
    resources: Sequence[str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> bytes:
    if not isinstance(description, str) or not description.strip():
        raise ValueError("a mission needs a description")
    doc: dict[str, Any] = dict(extra or {})
    doc.update(agent=agent, approved_at=iso_at(approved_at), description=description)
    if expires_at is not None:
        doc["expires_at"] = iso(expires_at)
    if tools is not None:
        doc["approved_tools"] = [dict(tool) for tool in tools]
    if resources is not None:
        doc["approved_resources"] = list(resources)
    return compact(doc)


@dataclass(frozen=True, slots=True)
class MissionUpdate:
    """An accepted update (digest 8.5): its bytes exactly as hashed, and who accepted it."""

    seq: int
    blob: bytes
    s256: str
    accepted_at: float
    accepted_by: str

    @property
    def document(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.blob)
        return value

    @property
    def description(self) -> str:
        return str(self.document.get("description", ""))


@dataclass(frozen=True, slots=True)
class Mission:
    """One mission as this PS holds it; ``updates`` are its accepted updates in order."""

    s256: str
    blob: bytes
    agent_issuer: str
    agent: str
    person: str
    state: str
    termination_reason: str | None = None
    status_at: float | None = None
    updates: tuple[MissionUpdate, ...] = ()

    @property
    def status(self) -> str:
        return self.state

    @property
    def terminated_at(self) -> float | None:
        return self.status_at if self.state == TERMINATED else None

    @property
    def document(self) -> dict[str, Any]:
        """The blob, decoded (the PS wrote it: a JSON object)."""
        value: dict[str, Any] = json.loads(self.blob)
        return value

    @property
    def description(self) -> str:
        return str(self.document["description"])

    @property
    def descriptions(self) -> tuple[str, ...]:
        """The approved description, then each accepted update's: the mission's meaning."""
        return (self.description, *(u.description for u in self.updates))

    @property
    def expires_at(self) -> float | None:
        """``expires_at`` of the blob as epoch seconds; None when the mission has none."""
        return epoch(self.document.get("expires_at"))

    @property
    def approved_resources(self) -> tuple[str, ...] | None:
        value = self.document.get("approved_resources")
        return None if not isinstance(value, list) else tuple(str(r) for r in value)

    @property
    def approved_tools(self) -> tuple[dict[str, Any], ...]:
        value = self.document.get("approved_tools")
        return tuple(t for t in value if isinstance(t, dict)) if isinstance(value, list) else ()

    @property
    def tool_names(self) -> frozenset[str]:
        return frozenset(str(t.get("name")) for t in self.approved_tools if t.get("name"))

    @property
    def active(self) -> bool:
        return self.state == ACTIVE

    @property
    def suspended(self) -> bool:
        return self.state == SUSPENDED

    def expired_at(self, now: float) -> bool:
        expires = self.expires_at
        return self.state != TERMINATED and expires is not None and now >= expires

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


def mission_terminated(mission: Mission) -> AAuthError:
    """Digest 8.6: the answer of any PS endpoint given an ended ``mission_s256``."""
    extra = {
        "mission_status": TERMINATED,
        "termination_reason": mission.termination_reason or "administrative",
    }
    return AAuthError(
        "this mission is no longer active", error="mission_terminated", status=403, extra=extra
    )


def mission_suspended() -> AAuthError:
    """Our extension: the person suspended the mission; it may resume."""
    return AAuthError(
        "the person suspended this mission",
        error="mission_suspended",
        status=403,
        extra={"mission_status": SUSPENDED},
    )


def mission_not_found() -> AAuthError:
    # One answer for "no such mission" and "not this agent's": nothing to tell them apart.
    return AAuthError("no such mission", error="mission_not_found", status=404)


def status_error(mission: Mission) -> AAuthError | None:
    """The digest 8.6 answer for a mission that is not active, else None."""
    if mission.state == TERMINATED:
        return mission_terminated(mission)
    if mission.state == SUSPENDED:
        return mission_suspended()
    return None


__all__ = [
    "ACTIVE",
    "REASONS",
    "SUSPENDED",
    "TERMINATED",
    "Mission",
    "MissionUpdate",
    "build_blob",
    "compact",
    "epoch",
    "iso",
    "iso_at",
    "mission_not_found",
    "mission_s256",
    "mission_suspended",
    "mission_terminated",
    "status_error",
    "valid_s256",
]
