"""Person Server: pending requests, interaction, clarification (more modules join later)."""

from __future__ import annotations

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

__all__ = [
    "OPEN",
    "SETTLED",
    "TERMINAL",
    "TRANSITIONS",
    "Event",
    "LifecycleError",
    "State",
    "allowed_events",
    "body_status",
    "next_state",
    "poll_answer",
]
