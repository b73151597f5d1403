"""Audit events: each goes to the application's hook and to the ``aauth_server.ath`` log.

Events carry identifiers and decisions, never secrets: no client secret, no token, no
attestation, no upstream credential (a token appears as the first 8 hex of its digest).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

log = logging.getLogger("aauth_server.ath")

EVENTS: Final = frozenset(
    {
        "agent_registered",
        "agent_registration_denied",
        "attestation_failed",
        "authorization_started",
        "access_granted",
        "access_denied",
        "token_revoked",
        "proxy_request",
        "scope_violation",
    }
)


class Audit:
    def __init__(self, hook: Any = None) -> None:
        self.hook = hook

    def __call__(self, event: str, **fields: Any) -> None:
        if event not in EVENTS:
            raise ValueError(f"unknown ATH audit event {event!r}")
        record: Mapping[str, Any] = dict(fields)
        log.info("ath %s %s", event, " ".join(f"{k}={v!r}" for k, v in record.items()))
        if self.hook is not None:
            try:
                self.hook(event, record)
            except Exception:  # an audit sink's failure must not fail the request
                log.exception("the ATH audit hook failed on %s", event)
