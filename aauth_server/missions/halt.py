"""Halting a mission's access at the resources (issue 10 item 7; digest 5.7, 8.5).

When a mission is suspended or ended, every unexpired token the PS issued under it (person
and auth tokens, as the issued-token records say) is queued in the durable outbox, one
message per (resource, jti), in the same breath as the PS records the tokens revoked for
itself.  A background worker sends each: it discovers the resource's
``revocation_endpoint`` from its metadata, POSTs ``{jti, exp}`` signed as the PS
(:mod:`aauth_server.revocation_client`), polls a ``202`` under the same identity, honours
``Retry-After``, backs off after failures, and records the terminal outcome in the outbox
and in the mission log:

- ``revoked``: the resource confirmed;
- ``unsupported``: it has no revocation endpoint or refused ours: the token is honoured
  until its ``exp`` (Mission Control says "until <exp>");
- ``unavailable``: it never answered usefully within ``revocation_attempts``;
- ``expired``: the token expired before the resource confirmed (nothing left to revoke).

The outbox is leased per message (``claim_due``), so several PS workers share it without
sending one message twice, and a worker that died mid-way leaves its messages to the others
once the lease runs out.  A restarted PS picks up what is still pending.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from ..clock import Clock
from ..errors import AAuthError
from ..records import OutboxItem, RecordOps, RecordStore
from ..records.store import RecordsUnavailable
from ..revocation_client import PENDING, REFUSED, REVOKED, RevocationClient, backoff
from ..steps import Steps
from ..storage.base import StorageError
from ..tokens.aauth import DWK_RESOURCE
from .model import Mission

log = logging.getLogger("aauth_server.missions.halt")
#: Seconds a worker holds a message it is sending.
LEASE = 60.0
#: Longest the worker sleeps before looking at the outbox again.
IDLE = 5.0


class HaltAtResources:
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

    # -- queueing (a Missions halt hook, run as steps by the PS's driver) --------------------

    def on_halt_steps(self, mission: Mission, event: str) -> Steps[None]:
        now = self.clock.now()
        tokens = yield self.records.op(
            self.ops.issued_where(mission=mission.s256, unexpired_at=now, unrevoked=True)
        )
        if not tokens:
            return
        items = []
        for token in tokens:
            # Our own record first: a revoked person token presented back to us is refused.
            yield self.records.op(
                self.ops.revoke(
                    self.issuer, token.jti, exp=token.exp + self.grace, now=now, source=event
                )
            )
            items.append(
                {
                    "recipient": token.aud,
                    "jti": token.jti,
                    "exp": token.exp,
                    "mission": mission.s256,
                    "token_type": token.type,
                }
            )
            if token.presented_to:
                items.append({**items[-1], "recipient": token.presented_to})
        queued = yield self.records.op(self.ops.enqueue(items, now=now))
        yield self.records.op(self.ops.mark_revoked([t.jti for t in tokens], now=now))
        entry = {
            "event": "revocations_queued",
            "reason": event,
            "actor": "ps",
            "tokens": len(tokens),
            "resources": sorted({i["recipient"] for i in items}),
            "queued": queued,
        }
        yield self.records.op(self.ops.append_log(mission.s256, entry, now=now))
        if queued:
            self.kick()

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
            self._finish(item, "expired", "the token expired before the resource confirmed")
            return
        try:
            document = self.metadata(item.recipient, DWK_RESOURCE)
        except (AAuthError, ValueError, OSError) as exc:
            self._retry(item, f"no metadata: {exc}", None)
            return
        endpoint = document.get("revocation_endpoint")
        if not isinstance(endpoint, str) or not endpoint:
            self._finish(item, "unsupported", "no revocation_endpoint: honoured until exp")
            return
        attempt = self.client.attempt(endpoint, item.jti, item.exp, item.poll_url)
        if attempt.outcome == REVOKED:
            self._finish(item, "revoked", "confirmed")
        elif attempt.outcome == REFUSED:
            self._finish(item, "unsupported", f"refused: {attempt.detail}: honoured until exp")
        elif attempt.outcome == PENDING:
            wait = attempt.retry_after or 5.0
            self.records.run(
                self.ops.retry_later(
                    item.id, next_at=now + wait, detail=attempt.detail, poll_url=attempt.poll_url
                )
            )
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
        if item.mission is not None:
            entry: dict[str, Any] = {
                "event": "revocation",
                "resource": item.recipient,
                "jti": item.jti,
                "exp": item.exp,
                "decision": status,
                "reason": detail,
                "actor": "ps",
                "kind": item.token_type,
            }
            self.records.run(self.ops.append_log(item.mission, entry, now=now))

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


__all__ = ["HaltAtResources"]
