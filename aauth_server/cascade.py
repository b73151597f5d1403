"""Revocation cascades (digest 5.7): record first, cascade, answer ``200`` only when every
downstream revocation is terminal, ``202`` and a pending URL while it is not.

Written once for every server that revokes downstream (the Person Server, the Access
Server, a mission's halt):

* :func:`closure_steps` says which tokens a revocation reaches: the tokens this server
  issued against a revoked token (``presented_iss``/``presented_jti``: an AS's auth tokens
  issued against a PS's person token) and from it (``upstream_iss``/``upstream_jti``:
  chained tokens), transitively.
* :meth:`CascadeWorker.queue_steps` revokes them here first (a revoked token presented back
  is refused), then queues one durable outbox message per ``(recipient, jti)``: at the
  token's ``aud`` (a resource, ``aauth-resource.json``) and at the Access Server a person
  token was presented to (``presented_to``, ``aauth-access.json``).
* :class:`CascadeWorker` sends the outbox (leased per message, so several workers share it;
  retries with backoff, ``Retry-After``, ``202`` polling under this server's identity) and
  records each terminal outcome: ``revoked``, ``unsupported`` (no endpoint, or refused:
  honoured until ``exp``), ``unavailable`` (gave up) or ``expired`` (nothing left to revoke).
* :class:`CascadeAnswer` answers the caller: nothing downstream -> ``200`` at once (empty
  body, never ``202``); otherwise it holds the request until every message is terminal
  (``Prefer: wait=N`` honoured; by default about one round trip per downstream server, at
  most :data:`MAX_HOLD`), then ``200`` (an Access Server lists the outcomes in
  ``{"downstream": [...]}``; a PS answers its AP with an empty body), or else ``202`` with a
  pending URL the same caller polls with a signed ``GET`` (anyone else: ``404``).  Repeating
  the revocation queues the failed messages again (the outbox does).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .clock import Clock
from .errors import AAuthError, Deferred, ServerError
from .http import HttpRequest, HttpResponse
from .records import IssuedToken, OutboxItem, RecordOps, RecordStore
from .records.ops import OUTBOX_TERMINAL
from .records.store import RecordsUnavailable
from .revocation import problem
from .revocation_client import PENDING, REFUSED, REVOKED, RevocationClient, backoff
from .steps import Call, Steps, StoreOp
from .storage.base import RecordNotFound, StorageError, VersionConflict
from .tokens.aauth import DWK_ACCESS, DWK_RESOURCE
from .verifier import RequestVerifier

log = logging.getLogger("aauth_server.cascade")

#: Outbox kinds: a revocation at a resource, and one at an Access Server.
KIND_RESOURCE = "revoke"
KIND_ACCESS = "revoke-access"
_DOCUMENTS = {KIND_RESOURCE: DWK_RESOURCE, KIND_ACCESS: DWK_ACCESS}
#: The pending-store kind of a cascade answered ``202``.
KIND_CASCADE = "revocation-cascade"
#: Seconds a worker holds a message it is sending.
LEASE = 60.0
#: Longest the worker sleeps before looking at the outbox again.
IDLE = 5.0
#: The default hold per downstream server (about one round trip), and the longest hold.
ROUND_TRIP = 2.0
MAX_HOLD = 20.0
#: How long a cascade's pending URL lives.
PENDING_LIFETIME = 3600.0
#: The most tokens one revocation reaches (a bound on the work one request can cause).
MAX_CLOSURE = 10_000
#: How an outbox outcome reads in an AS's ``downstream`` list (no ``error``: revoked).
ERRORS = {"unsupported": "revocation_unsupported", "unavailable": "revocation_unavailable"}

Target = tuple[str, str, str]  # (outbox kind, recipient, jti)
#: A metadata fetch the recipient answered "not found" (discovery's FetchError reason).
_NO_DOCUMENT = re.compile(r"HTTP status (404|410)\b")


class Sleep(Call):
    """Pause the steps: ``time.sleep`` under the sync driver, ``asyncio.sleep`` under async."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def call(self) -> None:
        time.sleep(self.seconds)

    async def acall(self) -> None:
        await asyncio.sleep(self.seconds)


class Guarded(Call):
    """A record transaction whose store failure is the revocation endpoint's ``500
    server_error`` (digest 5.7), not the ``503`` other endpoints answer."""

    __slots__ = ("op",)

    def __init__(self, op: Call) -> None:
        self.op = op

    def call(self) -> Any:
        try:
            return self.op.call()
        except StorageError as exc:
            raise _records_down(exc) from exc

    async def acall(self) -> Any:
        try:
            return await self.op.acall()
        except StorageError as exc:
            raise _records_down(exc) from exc


def revocation_recorder(
    records: RecordStore, ops: RecordOps
) -> Callable[[str, str, int, float], Steps[None]]:
    """``record`` for :func:`~aauth_server.revocation.revocation_steps` at a server with
    durable records (PS, AS): the caller's revocation of ``jti``, kept until its ``exp``
    plus the grace, recorded before any cascade (a store failure is ``500``)."""
    from .resource.state import REVOCATION_GRACE  # lazy, as in revocation_steps

    def record(caller: str, jti: str, exp: int, now: float) -> Steps[None]:
        txn = ops.revoke(caller, jti, exp=exp + REVOCATION_GRACE, now=now, source="caller")
        yield Guarded(records.op(txn))

    return record


def _records_down(exc: StorageError) -> AAuthError:
    log.error("revocation: the record store failed: %s", exc)
    return ServerError("the revocation could not be recorded")


def closure_steps(
    records: RecordStore,
    ops: RecordOps,
    roots: Iterable[tuple[str, str]],
    *,
    now: float,
    initial: Iterable[IssuedToken] = (),
) -> Steps[list[IssuedToken]]:
    """Every unexpired token this server issued against or from the revoked tokens
    ``roots`` (``(iss, jti)``) and ``initial``, transitively; ``initial`` included."""
    found: dict[str, IssuedToken] = {t.jti: t for t in initial}
    frontier = list(roots) + [(ops.issuer, jti) for jti in found]
    visited: set[tuple[str, str]] = set()
    while frontier and len(found) < MAX_CLOSURE:
        iss, jti = frontier.pop()
        if (iss, jti) in visited:
            continue
        visited.add((iss, jti))
        for txn in (
            ops.issued_where(unexpired_at=now, presented_iss=iss, presented_jti=jti),
            ops.issued_where(unexpired_at=now, upstream_iss=iss, upstream_jti=jti),
        ):
            tokens: list[IssuedToken] = yield Guarded(records.op(txn))
            for token in tokens:
                if token.jti not in found:
                    found[token.jti] = token
                    frontier.append((ops.issuer, token.jti))
    return list(found.values())


class CascadeWorker:
    """The durable revocation outbox of one server, and the worker that sends it."""

    def __init__(
        self,
        *,
        records: RecordStore,
        ops: RecordOps,
        clock: Clock,
        issuer: str,
        metadata: Callable[[str, str], Mapping[str, object]],
        client: RevocationClient,
        attempts: int = 8,
        grace: float = 300.0,
    ) -> None:
        self.records = records
        self.ops = ops
        self.clock = clock
        self.issuer = issuer
        self.metadata = metadata
        self.client = client
        self.attempts = attempts
        self.grace = grace
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- queueing -----------------------------------------------------------------------------

    def queue_steps(
        self,
        tokens: Sequence[IssuedToken],
        *,
        source: str,
        mission: str | None = None,
    ) -> Steps[list[Target]]:
        """Revoke ``tokens`` here, then queue their revocation downstream; the messages
        (``(kind, recipient, jti)``) the caller may wait on."""
        now = self.clock.now()
        targets: list[Target] = []
        items: dict[str, list[dict[str, Any]]] = {KIND_RESOURCE: [], KIND_ACCESS: []}
        for token in tokens:
            # Our own record first: a revoked token presented back to us is refused.
            yield Guarded(
                self.records.op(
                    self.ops.revoke(
                        self.issuer, token.jti, exp=token.exp + self.grace, now=now, source=source
                    )
                )
            )
            item = {
                "jti": token.jti,
                "exp": token.exp,
                "mission": mission if mission is not None else token.mission,
                "token_type": token.type,
            }
            items[KIND_RESOURCE].append({**item, "recipient": token.aud})
            targets.append((KIND_RESOURCE, token.aud, token.jti))
            if token.presented_to:
                items[KIND_ACCESS].append({**item, "recipient": token.presented_to})
                targets.append((KIND_ACCESS, token.presented_to, token.jti))
        queued = 0
        for kind, batch in items.items():
            if batch:
                op = self.ops.enqueue(batch, now=now, kind=kind)
                queued += yield Guarded(self.records.op(op))
        if tokens:
            jtis = [t.jti for t in tokens]
            yield Guarded(self.records.op(self.ops.mark_revoked(jtis, now=now)))
        if queued:
            self.kick()
        return targets

    def status_steps(self, targets: Sequence[Target]) -> Steps[list[OutboxItem]]:
        items: list[OutboxItem] = yield Guarded(self.records.op(self.ops.outbox_for(targets)))
        return items

    # -- sending ------------------------------------------------------------------------------

    def run_due(self, limit: int = 20) -> int:
        """Send what is due now (one pass); the number of messages handled."""
        now = self.clock.now()
        items = self.records.run(self.ops.claim_due(now=now, lease=LEASE, limit=limit))
        for item in items:
            try:
                self._send(item)
            except (RecordsUnavailable, StorageError) as exc:
                log.warning("outbox: could not record the outcome for %s: %s", item.id, exc)
        return len(items)

    def _send(self, item: OutboxItem) -> None:
        now = self.clock.now()
        if item.exp <= now:
            self._finish(item, "expired", "the token expired before the recipient confirmed")
            return
        try:
            document = self.metadata(item.recipient, _DOCUMENTS.get(item.kind, DWK_RESOURCE))
        except (AAuthError, ValueError, OSError) as exc:
            if _NO_DOCUMENT.search(str(exc)):
                # The recipient answers that it publishes no such document: it has no
                # revocation endpoint either (a definite answer, unlike a 5xx or a timeout).
                self._finish(item, "unsupported", f"no metadata ({exc}): honoured until exp")
            else:
                self._retry(item, f"no metadata: {exc}", None)
            return
        endpoint = document.get("revocation_endpoint")
        if not isinstance(endpoint, str) or not endpoint:
            self._finish(item, "unsupported", "no revocation_endpoint: honoured until exp")
            return
        attempt = self.client.attempt(endpoint, item.jti, item.exp, item.poll_url)
        if attempt.outcome == REVOKED:
            # An Access Server says how its own cascade went: kept for the audit trail.
            failed = [
                f"{d.get('recipient')}: {d.get('error')}"
                for d in attempt.downstream
                if d.get("error")
            ]
            self._finish(
                item,
                "revoked",
                "confirmed" + (f"; downstream {', '.join(failed)}" if failed else ""),
            )
        elif attempt.outcome == REFUSED:
            self._finish(item, "unsupported", f"refused: {attempt.detail}: honoured until exp")
        elif attempt.outcome == PENDING:
            wait = attempt.retry_after or 5.0
            self.records.run(
                self.ops.retry_later(
                    item.id, next_at=now + wait, detail=attempt.detail, poll_url=attempt.poll_url
                )
            )
            self._wake.set()
        else:
            self._retry(item, attempt.detail, attempt.retry_after)

    def _retry(self, item: OutboxItem, detail: str, retry_after: float | None) -> None:
        if item.attempts >= self.attempts:
            self._finish(item, "unavailable", f"gave up after {item.attempts} attempts: {detail}")
            return
        wait = retry_after if retry_after is not None else backoff(item.attempts)
        next_at = self.clock.now() + wait
        if next_at >= item.exp:
            self._finish(item, "expired", f"{detail}; the token expires before the next attempt")
            return
        self.records.run(self.ops.retry_later(item.id, next_at=next_at, detail=detail))

    def _finish(self, item: OutboxItem, status: str, detail: str) -> None:
        now = self.clock.now()
        if not self.records.run(self.ops.finish(item.id, status=status, now=now, detail=detail)):
            return  # another worker finished it meanwhile
        log.info("revocation of %s at %s: %s (%s)", item.jti, item.recipient, status, detail)
        self.finished(item, status, detail, now)

    def finished(self, item: OutboxItem, status: str, detail: str, now: float) -> None:
        """A message reached a terminal outcome (a hook: the mission halt logs it)."""

    # -- the background worker ----------------------------------------------------------------

    def kick(self) -> None:
        """Make sure the worker runs, and wake it now."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._loop, name="aauth-revocations", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def resume(self) -> None:
        """Start the worker if messages from before a restart are still pending."""
        try:
            due = self.records.run(self.ops.next_due())
        except StorageError as exc:
            log.warning("outbox: cannot read it at startup: %s", exc)
            return
        if due is not None:
            self.kick()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                while self.run_due() and not self._stop.is_set():
                    pass
                due = self.records.run(self.ops.next_due())
            except Exception:  # the worker must outlive any one failure
                log.exception("outbox worker: a pass failed")
                due = self.clock.now() + IDLE
            if due is None:
                with self._lock:
                    if not self._wake.is_set():
                        # Nothing pending: end; the next kick() starts a new worker.
                        self._thread = None
                        return
                continue
            self._wake.wait(min(IDLE, max(0.05, due - self.clock.now())))


_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*\"?(\d{1,6})\"?", re.IGNORECASE)


def prefer_wait(request: HttpRequest) -> float | None:
    """The ``Prefer: wait=N`` of a request (RFC 7240), if any."""
    value = request.header("prefer")
    if not value:
        return None
    match = _PREFER_WAIT.search(value)
    return None if match is None else float(match.group(1))


class CascadeAnswer:
    """The answer of a revocation endpoint with something downstream (digest 5.7)."""

    def __init__(
        self,
        worker: CascadeWorker,
        *,
        verifier: RequestVerifier,
        location: Callable[[str], str],
        hold: float | None = None,
        max_hold: float = MAX_HOLD,
        report_downstream: bool,
        poll_interval: float = 0.05,
    ) -> None:
        self.worker = worker
        self.verifier = verifier
        self.location = location
        #: A fixed hold in seconds; None: ``ROUND_TRIP`` per downstream server.
        self.hold = hold
        self.max_hold = max_hold
        #: An Access Server lists the outcomes (``{"downstream": [...]}``); a PS does not.
        self.report_downstream = report_downstream
        self.poll_interval = poll_interval

    def _hold(self, request: HttpRequest, targets: Sequence[Target]) -> float:
        wanted = prefer_wait(request)
        if wanted is None:
            recipients = len({recipient for _, recipient, _ in targets})
            wanted = self.hold if self.hold is not None else ROUND_TRIP * recipients
        return max(0.0, min(wanted, self.max_hold))

    def _wait_steps(self, targets: Sequence[Target], hold: float) -> Steps[list[OutboxItem] | None]:
        """The messages once all are terminal, or None when ``hold`` runs out first."""
        deadline = time.monotonic() + hold
        pause = self.poll_interval
        while True:
            items = yield from self.worker.status_steps(targets)
            if all(i.status in OUTBOX_TERMINAL for i in items):
                return items
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            yield Sleep(min(pause, left))
            pause = min(pause * 2, 0.5)

    def _done(self, items: Sequence[OutboxItem]) -> HttpResponse:
        headers = [("Cache-Control", "no-store")]
        if not self.report_downstream or not items:
            return HttpResponse(200, headers, b"")
        # One entry per recipient; its worst outcome (a failure outweighs a success).
        errors: dict[str, str | None] = {}
        for item in items:
            error = ERRORS.get(item.status)
            current = errors.get(item.recipient)
            if item.recipient not in errors or (error is not None and current is None):
                errors[item.recipient] = error
            elif error == "revocation_unavailable":
                errors[item.recipient] = error
        downstream = [
            {"recipient": recipient} if error is None else {"recipient": recipient, "error": error}
            for recipient, error in sorted(errors.items())
        ]
        return HttpResponse.json(200, {"downstream": downstream}, headers=headers)

    def answer_steps(
        self, request: HttpRequest, caller: str, targets: Sequence[Target]
    ) -> Steps[HttpResponse]:
        """``200`` once every message is terminal, else ``202`` and a pending URL."""
        if not targets:
            # Nothing downstream: at once, with an empty body, never 202.
            return HttpResponse(200, [("Cache-Control", "no-store")], b"")
        self.worker.kick()
        items = yield from self._wait_steps(targets, self._hold(request, targets))
        if items is not None:
            return self._done(items)
        from .resource.state import new_id  # lazy: the resource package imports revocation

        pending_id = new_id()
        data = {"caller": caller, "targets": [list(t) for t in targets], "state": "pending"}
        yield StoreOp("create", (KIND_CASCADE, pending_id, data, PENDING_LIFETIME))
        raise Deferred(self.location(pending_id), retry_after=1)

    def poll_steps(self, request: HttpRequest, pending_id: str) -> Steps[HttpResponse]:
        """A signed ``GET`` of the pending URL by the caller that revoked."""
        verified = yield from self.verifier.steps(request)
        record = None
        if re.fullmatch(r"[A-Za-z0-9_\-]{16,64}", pending_id):
            record = yield StoreOp("get", (KIND_CASCADE, pending_id))
        if record is None or record.data.get("caller") != verified.issuer:
            # Another server's cascade is not ours to show: the same answer as none at all.
            raise problem(404, "not_found", "no such pending revocation")
        if record.data.get("state") == "done":
            raise problem(410, "gone", "this revocation was answered already")
        targets = [(str(k), str(r), str(j)) for k, r, j in record.data["targets"]]
        wanted = prefer_wait(request)
        hold = 0.0 if wanted is None else max(0.0, min(wanted, self.max_hold))
        items = yield from self._wait_steps(targets, hold)
        if items is None:
            raise Deferred(self.location(pending_id), retry_after=1)
        done = {**record.data, "state": "done"}
        try:
            yield StoreOp("compare_and_set", (KIND_CASCADE, pending_id, record.version, done))
        except (VersionConflict, RecordNotFound):
            pass  # a concurrent poll answered it too: the same outcome
        return self._done(items)


__all__ = [
    "ERRORS",
    "KIND_ACCESS",
    "KIND_CASCADE",
    "KIND_RESOURCE",
    "MAX_HOLD",
    "ROUND_TRIP",
    "CascadeAnswer",
    "CascadeWorker",
    "Guarded",
    "Sleep",
    "closure_steps",
    "prefer_wait",
    "revocation_recorder",
]
