"""Who is who at the PS: directed subjects, agent-person bindings and page presence.

* The directed ``sub`` (digest 3.3, 13.11) is ``base64url(HMAC-SHA256(subject_secret,
  person "\\0" resource))``: stable per person and resource, unlinkable across resources,
  independent of the agent and its key.
* A binding maps ``(agent token iss, sub)`` to one person (digest 12: 1:1); it is made when
  the person approves a request of an agent the PS did not know, and kept in the durable
  records (:class:`Bindings`).
* Presence says the person has a PS page open (the built-in relay channel): the page calls
  :meth:`Presence.touch` while open; an agent without the ``interaction`` capability can
  then still be answered ``202 requirement=approval`` instead of ``user_unreachable``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..keys.jwk import b64url_encode
from ..resource.state import digest_id
from ..steps import Steps, StoreOp
from ..storage.base import RecordExists, RecordNotFound, VersionConflict

if TYPE_CHECKING:
    from .server import PersonServer

KIND_PRESENCE = "presence"
PRESENCE_TTL = 30.0


def directed_sub(secret: bytes, person: str, resource: str) -> str:
    mac = hmac.new(secret, f"{person}\0{resource}".encode(), hashlib.sha256)
    return b64url_encode(mac.digest())


class Bindings:
    """Agent-person bindings in the durable records (digest 12: 1:1, by agent token
    ``(iss, sub)``), kept ``binding_lifetime`` seconds after they were made."""

    def __init__(self, server: PersonServer) -> None:
        self.server = server

    def person_steps(self, agent_issuer: str, agent: str) -> Steps[str | None]:
        server = self.server
        now = server.config.clock.now()
        person: str | None = yield server.rop(server.rec.bound_person(agent_issuer, agent, now=now))
        return person

    def bind_steps(
        self, agent_issuer: str, agent: str, person: str, ttl: float | None = None
    ) -> Steps[bool]:
        """Bind the agent to ``person``; False when it is already bound to someone else."""
        server = self.server
        lifetime = server.config.binding_lifetime if ttl is None else ttl
        now = server.config.clock.now()
        bound: bool = yield server.rop(
            server.rec.bind(agent_issuer, agent, person, now=now, ttl=lifetime)
        )
        return bound

    def bind(self, agent_issuer: str, agent: str, person: str, ttl: float | None = None) -> bool:
        return self.server.run(self.bind_steps(agent_issuer, agent, person, ttl))

    async def abind(
        self, agent_issuer: str, agent: str, person: str, ttl: float | None = None
    ) -> bool:
        return await self.server.arun(self.bind_steps(agent_issuer, agent, person, ttl))

    def person(self, agent_issuer: str, agent: str) -> str | None:
        return self.server.run(self.person_steps(agent_issuer, agent))


def upsert_steps(kind: str, id: str, data: Mapping[str, object], ttl: float) -> Steps[None]:
    """Create or overwrite a small record (last writer wins)."""
    for _ in range(3):
        record = yield StoreOp("get", (kind, id))
        try:
            if record is None:
                yield StoreOp("create", (kind, id, data, ttl))
            else:
                yield StoreOp("compare_and_set", (kind, id, record.version, data, ttl))
            return
        except (RecordExists, VersionConflict, RecordNotFound):
            continue  # someone else wrote it meanwhile: their write is as good as ours


class Presence:
    """The person's open PS page, refreshed by the page (TTL 30 s)."""

    def __init__(self, server: PersonServer) -> None:
        self.server = server

    def touch(self, person: str) -> None:
        self.server.run(self._touch_steps(person))

    async def atouch(self, person: str) -> None:
        await self.server.arun(self._touch_steps(person))

    def _touch_steps(self, person: str) -> Steps[None]:
        now = self.server.config.clock.now()
        yield from upsert_steps(KIND_PRESENCE, digest_id(person), {"at": now}, PRESENCE_TTL)

    @staticmethod
    def present_steps(person: str) -> Steps[bool]:
        record = yield StoreOp("get", (KIND_PRESENCE, digest_id(person)))
        return record is not None
