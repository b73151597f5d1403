"""Resource state shared by workers: revocations, the replay cache, held invocations, sessions.

Everything lives in the pending store (memory for one process, Redis for several), in a
sync and an async flavour over the same backend, so Flask, Django and Starlette workers
of one deployment agree.  A backend outage surfaces as ``503`` with ``Retry-After``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..errors import AAuthError
from ..storage.base import AsyncPendingStore, PendingStore, StorageUnavailable

T = TypeVar("T")

KIND_REVOKED = "revoked"
KIND_HELD = "held"
KIND_RESULT = "held-result"
KIND_SESSION_PENDING = "session-pending"
KIND_SESSION = "session"
#: How long past a revoked token's ``exp`` we keep refusing it (clock skew between parties).
REVOCATION_GRACE = 300.0


class Unavailable(AAuthError):
    """The shared store is unreachable: retry later, nothing acknowledged is lost."""

    status = 503
    error = "temporarily_unavailable"

    def __init__(self, retry_after: int, detail: str = "state store unavailable") -> None:
        super().__init__(detail, headers=[("Retry-After", str(retry_after))])


def digest_id(*parts: str) -> str:
    """A fixed-length store id for values that may hold any character (issuers, jtis)."""
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()


def guarded(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except StorageUnavailable as exc:
        raise Unavailable(exc.retry_after) from exc


async def aguarded(fn: Callable[[], Awaitable[T]]) -> T:
    try:
        return await fn()
    except StorageUnavailable as exc:
        raise Unavailable(exc.retry_after) from exc


class ResourceState:
    """Implements the verifier's :class:`~aauth_server.verifier.VerificationState`."""

    def __init__(self, store: PendingStore, async_store: AsyncPendingStore) -> None:
        self.store = store
        self.async_store = async_store

    # -- revocation ------------------------------------------------------------------------

    def is_revoked(self, iss: str, jti: str) -> bool:
        return guarded(lambda: self.store.get(KIND_REVOKED, digest_id(iss, jti))) is not None

    async def ais_revoked(self, iss: str, jti: str) -> bool:
        record = await aguarded(lambda: self.async_store.get(KIND_REVOKED, digest_id(iss, jti)))
        return record is not None

    # -- replay cache ----------------------------------------------------------------------

    def first_use(self, key: str, ttl: float) -> bool:
        return guarded(lambda: self.store.remember_once("replay:" + digest_id(key), ttl))

    async def afirst_use(self, key: str, ttl: float) -> bool:
        return await aguarded(
            lambda: self.async_store.remember_once("replay:" + digest_id(key), ttl)
        )
