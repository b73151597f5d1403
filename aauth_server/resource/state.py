"""Resource state shared by workers: revocations, the replay cache, held invocations, sessions.

Everything lives in the pending store (memory for one process, Redis for several), in a
sync and an async flavour over the same backend, so Flask, Django and Starlette workers
of one deployment agree.  A backend outage surfaces as ``503`` with ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import TypeVar

from ..storage.base import AsyncPendingStore, PendingStore

T = TypeVar("T")

KIND_REVOKED = "revoked"
KIND_HELD = "held"
KIND_RESULT = "held-result"
KIND_SESSION_PENDING = "session-pending"
KIND_SESSION = "session"
#: How long past a revoked token's ``exp`` we keep refusing it (clock skew between parties).
REVOCATION_GRACE = 300.0


def new_id(nbytes: int = 24) -> str:
    """An unguessable identifier for pending URLs and session tokens."""
    return secrets.token_urlsafe(nbytes)


def digest_id(*parts: str) -> str:
    """A fixed-length store id for values that may hold any character (issuers, jtis)."""
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()


class ResourceState:
    """Implements the verifier's :class:`~aauth_server.verifier.VerificationState`."""

    def __init__(self, store: PendingStore, async_store: AsyncPendingStore) -> None:
        self.store = store
        self.async_store = async_store

    # -- revocation ------------------------------------------------------------------------

    def is_revoked(self, iss: str, jti: str) -> bool:
        return self.store.get(KIND_REVOKED, digest_id(iss, jti)) is not None

    async def ais_revoked(self, iss: str, jti: str) -> bool:
        return await self.async_store.get(KIND_REVOKED, digest_id(iss, jti)) is not None

    # -- replay cache ----------------------------------------------------------------------

    def first_use(self, key: str, ttl: float) -> bool:
        return self.store.remember_once("replay:" + digest_id(key), ttl)

    async def afirst_use(self, key: str, ttl: float) -> bool:
        return await self.async_store.remember_once("replay:" + digest_id(key), ttl)
