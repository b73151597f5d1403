"""Decision logic as generators, and the two drivers that run it.

Protocol logic (the resource guard, the Person Server) is written once, as generators that
yield what they need from the outside world: a key from discovery, a revocation or replay
lookup (:mod:`aauth_server.verifier` needs), a pending-store operation (:class:`StoreOp`),
or a wait for a record to change (:class:`WaitOp`, long polls).  :class:`Driver` answers
those needs synchronously (Flask, Django sync views) or asynchronously (Starlette, Django
async views); nothing else differs between the two flavours.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import AAuthError, ConfigurationError, ServerError
from .http import HttpResponse
from .storage.base import AsyncPendingStore, PendingStore, StorageError, StorageUnavailable
from .verifier import Need, ReplayNeed, RequestVerifier, RevocationNeed

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class StoreOp:
    """A pending-store call (``create``, ``get``, ``compare_and_set``, ``consume``, ...)."""

    op: str
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class WaitOp:
    """Wait up to ``timeout`` seconds for record ``(kind, id)`` to leave ``version``.

    The async driver waits on the store's change notifications; the sync driver cannot
    park a worker thread for a long poll and answers with the current record at once.
    """

    kind: str
    id: str
    version: int
    timeout: float


class Call:
    """A step that answers itself, either way: ``call()`` under the sync driver, ``await
    acall()`` under the async one (a record-store transaction, :mod:`aauth_server.records`)."""

    __slots__ = ()

    def call(self) -> Any:
        raise NotImplementedError

    async def acall(self) -> Any:
        raise NotImplementedError


Step = Need | StoreOp | WaitOp | Call
#: The steps the pending store answers: one answered means the store is back.
_STORE_CALLS = (StoreOp, WaitOp, RevocationNeed, ReplayNeed)
Steps = Generator[Step, Any, T]


class Unavailable(AAuthError):
    """The shared store is unreachable: ``503`` + ``Retry-After``; nothing acknowledged is lost."""

    status = 503
    error = "temporarily_unavailable"

    def __init__(self, retry_after: int, detail: str = "state store unavailable") -> None:
        super().__init__(detail, headers=[("Retry-After", str(retry_after))])


log = logging.getLogger("aauth_server")


class Driver:
    def __init__(
        self,
        verifier: RequestVerifier,
        store: PendingStore,
        async_store: AsyncPendingStore,
        *,
        subject: str = "the server",
    ) -> None:
        self.verifier = verifier
        self.store = store
        self.async_store = async_store
        #: Who failed, for the operator's log and the 500's detail ("the resource").
        self.subject = subject
        #: The store is known to be down: logged once when it goes, once when it is back.
        self.store_down = False
        self._outage_lock = threading.Lock()

    def _store_unavailable(self, exc: StorageUnavailable) -> None:
        if self.store_down:
            return
        with self._outage_lock:
            if self.store_down:
                return
            self.store_down = True
        log.error(
            "AAuth: %s cannot reach its store (%s); answering 503 temporarily_unavailable "
            "until it is back (logged once per outage)",
            self.subject,
            exc,
        )

    def _store_answered(self) -> None:
        with self._outage_lock:
            if not self.store_down:
                return
            self.store_down = False
        log.warning("AAuth: %s reaches its store again; the outage is over", self.subject)

    def server_error(self, exc: Exception) -> AAuthError:
        """A store or configuration failure the logic did not handle: ``500 server_error``.

        The cause is for the operator's log (chained), never for the caller.
        """
        log.error("AAuth: %s failed: %s", self.subject, exc, exc_info=exc)
        return ServerError(f"{self.subject} could not complete this request")

    def respond(self, steps: Steps[R]) -> R | HttpResponse:
        """Run ``steps``; an AAuthError or an unhandled failure becomes its response."""
        try:
            return self.run(steps)
        except AAuthError as error:
            return error.to_response()
        except (StorageError, ConfigurationError) as exc:
            return self.server_error(exc).to_response()

    async def arespond(self, steps: Steps[R]) -> R | HttpResponse:
        try:
            return await self.arun(steps)
        except AAuthError as error:
            return error.to_response()
        except (StorageError, ConfigurationError) as exc:
            return self.server_error(exc).to_response()

    def run(self, steps: Steps[T]) -> T:
        store = self.store
        try:
            need = next(steps)
            while True:
                try:
                    # A store call (most steps) straight away; anything else via _answer.
                    if type(need) is StoreOp:
                        answer = getattr(store, need.op)(*need.args)
                    else:
                        answer = self._answer(need)
                except StorageUnavailable as exc:
                    self._store_unavailable(exc)
                    raise Unavailable(exc.retry_after) from exc
                except (StorageError, AAuthError) as exc:
                    # A lost race, a missing record or a key discovery could not find is the
                    # logic's to handle (the PS maps a bad parameter token's key to its own code).
                    need = steps.throw(exc)
                    continue
                if self.store_down and isinstance(need, _STORE_CALLS):
                    self._store_answered()
                need = steps.send(answer)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def arun(self, steps: Steps[T]) -> T:
        try:
            need = next(steps)
            while True:
                try:
                    answer = await self._aanswer(need)
                except StorageUnavailable as exc:
                    self._store_unavailable(exc)
                    raise Unavailable(exc.retry_after) from exc
                except (StorageError, AAuthError) as exc:
                    need = steps.throw(exc)
                    continue
                if self.store_down and isinstance(need, _STORE_CALLS):
                    self._store_answered()
                need = steps.send(answer)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def _answer(self, need: Step) -> object:
        if isinstance(need, StoreOp):
            return getattr(self.store, need.op)(*need.args)
        if isinstance(need, WaitOp):
            return self.store.get(need.kind, need.id)
        if isinstance(need, Call):
            return need.call()
        return self.verifier.resolve(need)

    async def _aanswer(self, need: Step) -> object:
        if isinstance(need, StoreOp):
            return await getattr(self.async_store, need.op)(*need.args)
        if isinstance(need, WaitOp):
            return await self.async_store.wait_for_change(
                need.kind, need.id, need.version, need.timeout
            )
        if isinstance(need, Call):
            return await need.acall()
        return await self.verifier.aresolve(need)
