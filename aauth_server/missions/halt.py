"""Halting a mission's access at the resources (issue 10 item 7; digest 5.7, 8.5).

When a mission is suspended or ended, every unexpired token the PS issued under it (person
and auth tokens, as the issued-token records say, and the tokens chained from them) is
revoked here and queued in the durable outbox of the shared revocation cascade
(:mod:`aauth_server.cascade`): one message per (recipient, jti), at the token's resource
and at the Access Server a person token was presented to.  The cascade's worker sends each
(signed as the PS, ``202`` polled under the same identity, ``Retry-After`` honoured, backing
off after failures) and this module writes each terminal outcome in the mission log:

- ``revoked``: the resource confirmed;
- ``unsupported``: it has no revocation endpoint or refused ours: the token is honoured
  until its ``exp`` (Mission Control says "until <exp>");
- ``unavailable``: it never answered usefully within ``revocation_attempts``;
- ``expired``: the token expired before the resource confirmed (nothing left to revoke).
"""

from __future__ import annotations

from typing import Any

from ..cascade import CascadeWorker, closure_steps
from ..records import OutboxItem
from ..steps import Steps
from .model import Mission


class HaltAtResources(CascadeWorker):
    """The PS's cascade worker, with the mission halt hook and the mission log."""

    # -- queueing (a Missions halt hook, run as steps by the PS's driver) --------------------

    def on_halt_steps(self, mission: Mission, event: str) -> Steps[None]:
        now = self.clock.now()
        tokens = yield self.records.op(
            self.ops.issued_where(mission=mission.s256, unexpired_at=now, unrevoked=True)
        )
        if not tokens:
            return
        # Chained tokens issued from these go too (digest 5.7).
        tokens = yield from closure_steps(self.records, self.ops, (), now=now, initial=tokens)
        targets = yield from self.queue_steps(tokens, source=event, mission=mission.s256)
        entry = {
            "event": "revocations_queued",
            "reason": event,
            "actor": "ps",
            "tokens": len(tokens),
            "resources": sorted({recipient for _, recipient, _ in targets}),
            "queued": len(targets),
        }
        yield self.records.op(self.ops.append_log(mission.s256, entry, now=now))

    def finished(self, item: OutboxItem, status: str, detail: str, now: float) -> None:
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


__all__ = ["HaltAtResources"]
