"""Person Server: token endpoints, pending requests, consent, clarification, lifecycle."""

from __future__ import annotations

from .config import WELL_KNOWN_PATH, PersonServerConfig
from .consent import Consent, ConsentView, InvalidCode
from .lifecycle import (
    OPEN,
    SETTLED,
    TERMINAL,
    TRANSITIONS,
    Event,
    LifecycleError,
    State,
    allowed_events,
    body_status,
    next_state,
    poll_answer,
)
from .policy import (
    Approve,
    AskAgent,
    AskPerson,
    Decision,
    DefaultPolicy,
    Deny,
    Policy,
    TokenRequest,
)
from .server import PersonServer
from .subjects import Presence, directed_sub

__all__ = [
    "OPEN",
    "SETTLED",
    "TERMINAL",
    "TRANSITIONS",
    "WELL_KNOWN_PATH",
    "Approve",
    "AskAgent",
    "AskPerson",
    "Consent",
    "ConsentView",
    "Decision",
    "DefaultPolicy",
    "Deny",
    "Event",
    "InvalidCode",
    "LifecycleError",
    "PersonServer",
    "PersonServerConfig",
    "Policy",
    "Presence",
    "State",
    "TokenRequest",
    "allowed_events",
    "body_status",
    "directed_sub",
    "next_state",
    "poll_answer",
]
