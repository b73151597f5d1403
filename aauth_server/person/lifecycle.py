"""The Person Server's pending-request lifecycle, as data (digest 5.5, 5.6, 6, 7).

Rows are states, columns events; a cell is the target state, ``.`` means refused
(``next_state`` raises ``LifecycleError``).  A test checks this grid against ``TRANSITIONS``.

Events: STRT=interaction_started ASK=clarification_asked ANSW=clarification_answered
    UPDT=request_updated APPR=approved DENY=denied ABAN=abandoned REVK=revoked
    LOCK=code_locked FAIL=failed ASUN=as_unreachable TIME=timed_out CANC=cancelled
    DELV=delivered
States: pend=pending intr=interacting clar=clarifying ques=questioned appr=approved
    deny=denied aban=abandoned revk=revoked lock=code_locked fail=failed
    asun=as_unreachable expd=expired canc=cancelled delv=delivered

::

                   STRT ASK  ANSW UPDT APPR DENY ABAN REVK LOCK FAIL ASUN TIME CANC DELV
    pending        intr ques .    .    appr deny .    revk lock fail asun expd canc .
    interacting    .    clar .    .    appr deny aban revk .    fail asun expd canc .
    clarifying     .    .    intr intr appr deny aban revk .    fail asun expd canc .
    questioned     .    .    pend pend appr deny .    revk .    fail asun expd canc .
    approved       .    .    .    .    .    .    .    revk .    .    .    expd canc delv
    denied         .    .    .    .    .    .    .    .    .    .    .    .    canc delv
    abandoned      .    .    .    .    .    .    .    .    .    .    .    .    canc delv
    revoked        .    .    .    .    .    .    .    .    .    .    .    .    canc delv
    code_locked    .    .    .    .    .    .    .    .    .    .    .    .    canc delv
    failed         .    .    .    .    .    .    .    .    .    .    .    .    canc delv
    as_unreachable .    .    .    .    .    .    .    .    .    .    .    .    canc delv
    expired        .    .    .    .    .    .    .    .    .    .    .    .    canc delv
    cancelled      .    .    .    .    .    .    .    .    .    .    .    .    .    .
    delivered      .    .    .    .    .    .    .    .    .    .    .    .    .    .

Poll answers (``poll_answer``): open states ``202`` (body ``status`` ``pending``, or
``interacting`` once the person engaged; a question for the agent adds
``requirement=clarification``); approved ``200``; denied/abandoned/revoked ``403``;
expired ``408``; code_locked ``410 invalid_code``; failed ``500 server_error``;
as_unreachable ``502``; cancelled/delivered ``410`` without a code.

Open states wait for a decision; settled states hold an outcome the agent has not yet
received; terminal states only answer ``410 Gone``.  Decisions the digest leaves to us:

- A settled outcome is not terminal: digest 5.5 says the pending URL answers ``410`` once the
  terminal response went out, so the poll that hands out any outcome (approval *or* error)
  fires ``delivered``.  For deferred auth-token delivery, whose answer repeats from the
  retained result (5.5), ``poll_answer(..., result_retained=True)`` keeps answering ``200``.
- The polling-error table (5.6) and poll state machine (5.5) name outcomes beyond
  denied/abandoned/expired, so each has a state: ``revoked`` (403, a token the request depends
  on was revoked), ``code_locked`` (410 ``invalid_code``, too many wrong interaction codes),
  ``failed`` (500 ``server_error``, e.g. callback ``server_error``/``temporarily_unavailable``)
  and ``as_unreachable`` (502).  Callback ``access_denied``/``user_abandoned``/
  ``interaction_expired`` map to the ``denied``/``abandoned``/``timed_out`` events (6.3).
- ``interaction_started`` fires once: the code is single use, so a second redemption is
  refused here and answered ``invalid_code`` by the interaction endpoint.
- ``approved``/``denied`` from ``pending``: out-of-band completion (6.3, -11) lets an approver
  decide without visiting the page.  ``abandoned`` needs someone to have engaged first.
- The person asks a clarification from the consent session only (``interacting``).  The
  PS policy may ask the agent before any person is involved (``AskAgent``): ``pending`` ->
  ``questioned``, and the answer (or an ``updated_request``) returns the request to
  ``pending`` for the policy to decide again; returning to ``interacting`` would tell the
  agent to stop prompting a person who never arrived.  The person may still approve or deny
  a questioned request (it is in their consent list).
- One question at a time: ``clarification_asked`` while ``clarifying`` is refused (the round
  limit is counted elsewhere).  An answer or an ``updated_request`` without an open question is
  refused.  Both return the request to ``interacting``.
- The person may approve, deny or walk away while a question is open; the late answer is then
  refused.  The clarification ``timeout`` elapsing is ``timed_out`` (digest 13.13).
- An approved result not yet collected can be cancelled (agent ``DELETE``), revoked (a token it
  depends on was revoked, so it must not be handed out) or expire (``408`` says "may restart",
  better than serving a stale grant).  Settled refusals do not expire or get revoked: their
  outcome already says no, and storage ages the record out.
- ``DELETE`` (``cancelled``) is honoured until the pending URL is gone, settled states included.
- ``clarifying`` bodies say ``"interacting"``: the person is at the page (stop prompting); the
  ``clarification`` member carries the question.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

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


class State(enum.StrEnum):
    PENDING = "pending"
    INTERACTING = "interacting"
    CLARIFYING = "clarifying"
    #: The PS policy asked the agent a question; no person is involved yet.
    QUESTIONED = "questioned"
    APPROVED = "approved"
    DENIED = "denied"
    ABANDONED = "abandoned"
    REVOKED = "revoked"
    CODE_LOCKED = "code_locked"
    FAILED = "failed"
    AS_UNREACHABLE = "as_unreachable"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    DELIVERED = "delivered"


class Event(enum.StrEnum):
    INTERACTION_STARTED = "interaction_started"
    """The person reached the interaction page (code redeemed) or an approver engaged."""
    CLARIFICATION_ASKED = "clarification_asked"
    CLARIFICATION_ANSWERED = "clarification_answered"
    """The agent POSTed ``action: clarification_response``."""
    REQUEST_UPDATED = "request_updated"
    """The agent POSTed ``action: updated_request`` and the new token pair verified."""
    APPROVED = "approved"
    DENIED = "denied"
    """The person declined, or the callback said ``access_denied``."""
    ABANDONED = "abandoned"
    """The code was used but never completed, or the callback said ``user_abandoned``."""
    REVOKED = "revoked"
    """A token the request depends on (agent, person, upstream, mission) was revoked."""
    CODE_LOCKED = "code_locked"
    """Too many wrong interaction codes: the interaction failed for good."""
    FAILED = "failed"
    """Callback ``server_error``/``temporarily_unavailable``, or an internal failure."""
    AS_UNREACHABLE = "as_unreachable"
    """Federating to the Access Server failed (unreachable, garbage, bad token)."""
    TIMED_OUT = "timed_out"
    """The pending lifetime or clarification timeout elapsed (callback ``interaction_expired``)."""
    CANCELLED = "cancelled"
    """The agent sent a signed ``DELETE`` of the pending URL."""
    DELIVERED = "delivered"
    """A poll received the settled outcome; from now on the pending URL is gone."""


# Events that end an open request the same way whatever the open state.
_ENDINGS: dict[Event, State] = {
    Event.DENIED: State.DENIED,
    Event.REVOKED: State.REVOKED,
    Event.FAILED: State.FAILED,
    Event.AS_UNREACHABLE: State.AS_UNREACHABLE,
    Event.TIMED_OUT: State.EXPIRED,
    Event.CANCELLED: State.CANCELLED,
}
# What a settled outcome still accepts: the poll that hands it out, or the agent's DELETE.
_SETTLED_EXITS: dict[Event, State] = {
    Event.DELIVERED: State.DELIVERED,
    Event.CANCELLED: State.CANCELLED,
}

_TABLE: dict[State, dict[Event, State]] = {
    State.PENDING: {
        Event.INTERACTION_STARTED: State.INTERACTING,
        Event.CLARIFICATION_ASKED: State.QUESTIONED,
        Event.APPROVED: State.APPROVED,
        Event.CODE_LOCKED: State.CODE_LOCKED,
        **_ENDINGS,
    },
    State.INTERACTING: {
        Event.CLARIFICATION_ASKED: State.CLARIFYING,
        Event.APPROVED: State.APPROVED,
        Event.ABANDONED: State.ABANDONED,
        **_ENDINGS,
    },
    State.CLARIFYING: {
        Event.CLARIFICATION_ANSWERED: State.INTERACTING,
        Event.REQUEST_UPDATED: State.INTERACTING,
        Event.APPROVED: State.APPROVED,
        Event.ABANDONED: State.ABANDONED,
        **_ENDINGS,
    },
    State.QUESTIONED: {
        Event.CLARIFICATION_ANSWERED: State.PENDING,
        Event.REQUEST_UPDATED: State.PENDING,
        Event.APPROVED: State.APPROVED,
        **_ENDINGS,
    },
    State.APPROVED: {
        Event.REVOKED: State.REVOKED,
        Event.TIMED_OUT: State.EXPIRED,
        **_SETTLED_EXITS,
    },
    State.DENIED: dict(_SETTLED_EXITS),
    State.ABANDONED: dict(_SETTLED_EXITS),
    State.REVOKED: dict(_SETTLED_EXITS),
    State.CODE_LOCKED: dict(_SETTLED_EXITS),
    State.FAILED: dict(_SETTLED_EXITS),
    State.AS_UNREACHABLE: dict(_SETTLED_EXITS),
    State.EXPIRED: dict(_SETTLED_EXITS),
    State.CANCELLED: {},
    State.DELIVERED: {},
}

TRANSITIONS: Mapping[tuple[State, Event], State] = MappingProxyType(
    {(state, event): target for state, row in _TABLE.items() for event, target in row.items()}
)
"""Every allowed (state, event) pair and its target; any pair absent is refused."""

OPEN: frozenset[State] = frozenset(
    {State.PENDING, State.INTERACTING, State.CLARIFYING, State.QUESTIONED}
)
"""No decision yet: polls answer ``202``."""
TERMINAL: frozenset[State] = frozenset({State.CANCELLED, State.DELIVERED})
"""Nothing happens any more: polls answer ``410 Gone``."""
SETTLED: frozenset[State] = frozenset(State) - OPEN - TERMINAL
"""An outcome the agent has not collected yet."""


class LifecycleError(Exception):
    """The event is not allowed in the request's current state."""

    def __init__(self, state: State, event: Event) -> None:
        super().__init__(f"event {event.value!r} is not allowed in state {state.value!r}")
        self.state = state
        self.event = event


def next_state(state: State, event: Event) -> State:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise LifecycleError(state, event) from None


def allowed_events(state: State) -> frozenset[Event]:
    return frozenset(_TABLE[state])


_POLL: dict[State, tuple[int, str | None]] = {
    State.PENDING: (202, None),
    State.INTERACTING: (202, None),
    State.CLARIFYING: (202, None),
    State.QUESTIONED: (202, None),
    State.APPROVED: (200, None),
    State.DENIED: (403, "denied"),
    State.ABANDONED: (403, "abandoned"),
    State.REVOKED: (403, "revoked"),
    State.CODE_LOCKED: (410, "invalid_code"),
    State.FAILED: (500, "server_error"),
    State.AS_UNREACHABLE: (502, "as_unreachable"),
    State.EXPIRED: (408, "expired"),
    State.CANCELLED: (410, None),
    State.DELIVERED: (410, None),
}


def poll_answer(state: State, *, result_retained: bool = False) -> tuple[int, str | None]:
    """The status and AAuth ``error`` code a poll of the pending URL answers.

    ``result_retained`` is for deferred auth-token delivery, which repeats the approved result
    until its retention ends (digest 5.5); the caller sets it only while it holds that result.
    """
    if state is State.DELIVERED and result_retained:
        return (200, None)
    return _POLL[state]


_BODY_STATUS: dict[State, str] = {
    State.PENDING: "pending",
    State.INTERACTING: "interacting",
    State.CLARIFYING: "interacting",
    State.QUESTIONED: "pending",
}


def body_status(state: State) -> str | None:
    """The ``status`` member of a ``202`` body, or ``None`` when the poll does not answer 202."""
    return _BODY_STATUS.get(state)
