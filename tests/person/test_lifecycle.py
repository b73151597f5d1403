"""The pending-request lifecycle: the whole table, its documentation, poll answers, stories."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable

import pytest

from aauth_server.person import lifecycle
from aauth_server.person.lifecycle import (
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

S, E = State, Event

# The table written out independently of the module, so a change to either shows up here.
EXPECTED: dict[tuple[State, Event], State] = {
    (S.PENDING, E.INTERACTION_STARTED): S.INTERACTING,
    (S.PENDING, E.CLARIFICATION_ASKED): S.QUESTIONED,
    (S.PENDING, E.APPROVED): S.APPROVED,
    (S.PENDING, E.DENIED): S.DENIED,
    (S.PENDING, E.REVOKED): S.REVOKED,
    (S.PENDING, E.CODE_LOCKED): S.CODE_LOCKED,
    (S.PENDING, E.FAILED): S.FAILED,
    (S.PENDING, E.AS_UNREACHABLE): S.AS_UNREACHABLE,
    (S.PENDING, E.TIMED_OUT): S.EXPIRED,
    (S.PENDING, E.CANCELLED): S.CANCELLED,
    (S.INTERACTING, E.CLARIFICATION_ASKED): S.CLARIFYING,
    (S.INTERACTING, E.APPROVED): S.APPROVED,
    (S.INTERACTING, E.DENIED): S.DENIED,
    (S.INTERACTING, E.ABANDONED): S.ABANDONED,
    (S.INTERACTING, E.REVOKED): S.REVOKED,
    (S.INTERACTING, E.FAILED): S.FAILED,
    (S.INTERACTING, E.AS_UNREACHABLE): S.AS_UNREACHABLE,
    (S.INTERACTING, E.TIMED_OUT): S.EXPIRED,
    (S.INTERACTING, E.CANCELLED): S.CANCELLED,
    (S.CLARIFYING, E.CLARIFICATION_ANSWERED): S.INTERACTING,
    (S.CLARIFYING, E.REQUEST_UPDATED): S.INTERACTING,
    (S.CLARIFYING, E.APPROVED): S.APPROVED,
    (S.CLARIFYING, E.DENIED): S.DENIED,
    (S.CLARIFYING, E.ABANDONED): S.ABANDONED,
    (S.CLARIFYING, E.REVOKED): S.REVOKED,
    (S.CLARIFYING, E.FAILED): S.FAILED,
    (S.CLARIFYING, E.AS_UNREACHABLE): S.AS_UNREACHABLE,
    (S.CLARIFYING, E.TIMED_OUT): S.EXPIRED,
    (S.CLARIFYING, E.CANCELLED): S.CANCELLED,
    (S.QUESTIONED, E.CLARIFICATION_ANSWERED): S.PENDING,
    (S.QUESTIONED, E.REQUEST_UPDATED): S.PENDING,
    (S.QUESTIONED, E.APPROVED): S.APPROVED,
    (S.QUESTIONED, E.DENIED): S.DENIED,
    (S.QUESTIONED, E.REVOKED): S.REVOKED,
    (S.QUESTIONED, E.FAILED): S.FAILED,
    (S.QUESTIONED, E.AS_UNREACHABLE): S.AS_UNREACHABLE,
    (S.QUESTIONED, E.TIMED_OUT): S.EXPIRED,
    (S.QUESTIONED, E.CANCELLED): S.CANCELLED,
    (S.APPROVED, E.REVOKED): S.REVOKED,
    (S.APPROVED, E.TIMED_OUT): S.EXPIRED,
    (S.APPROVED, E.CANCELLED): S.CANCELLED,
    (S.APPROVED, E.DELIVERED): S.DELIVERED,
    **{
        (settled, event): target
        for settled in (
            S.DENIED,
            S.ABANDONED,
            S.REVOKED,
            S.CODE_LOCKED,
            S.FAILED,
            S.AS_UNREACHABLE,
            S.EXPIRED,
        )
        for event, target in ((E.CANCELLED, S.CANCELLED), (E.DELIVERED, S.DELIVERED))
    },
}


def test_every_state_event_pair_is_allowed_or_refused_as_the_table_says() -> None:
    refused = 0
    for state in State:
        for event in Event:
            want = EXPECTED.get((state, event))
            if want is None:
                with pytest.raises(LifecycleError) as caught:
                    next_state(state, event)
                assert (caught.value.state, caught.value.event) == (state, event)
                assert event not in allowed_events(state)
                refused += 1
            else:
                assert next_state(state, event) is want, (state, event)
                assert event in allowed_events(state)
    assert refused + len(EXPECTED) == len(State) * len(Event)
    assert dict(TRANSITIONS) == EXPECTED


def test_values_are_the_lowercase_wire_words() -> None:
    assert [s.value for s in State][:3] == ["pending", "interacting", "clarifying"]
    for member in (*State, *Event):
        assert member.value == member.name.lower()


def _docstring_grid() -> dict[tuple[State, Event], State]:
    doc = lifecycle.__doc__ or ""
    legend = dict(re.findall(r"\b([A-Za-z]{3,4})=([a-z_]+)\b", doc))
    rows = [line.split() for line in doc.splitlines() if line.startswith("    ")]
    header = next(r for r in rows if r and r[0] == "STRT")
    grid: dict[tuple[State, Event], State] = {}
    seen_states: list[State] = []
    for row in rows:
        if row and row[0] in set(State):
            state = State(row[0])
            seen_states.append(state)
            assert len(row) == len(header) + 1, row
            for abbrev, cell in zip(header, row[1:], strict=True):
                if cell != ".":
                    grid[(state, Event(legend[abbrev]))] = State(legend[cell])
    assert seen_states == list(State)
    assert {Event(legend[a]) for a in header} == set(Event)
    return grid


def test_docstring_grid_matches_the_table() -> None:
    assert _docstring_grid() == dict(TRANSITIONS)


def test_state_groups_partition_the_states() -> None:
    assert OPEN | SETTLED | TERMINAL == set(State)
    assert not (OPEN & SETTLED or OPEN & TERMINAL or SETTLED & TERMINAL)
    assert TERMINAL == {S.CANCELLED, S.DELIVERED}


@pytest.mark.parametrize("state", sorted(TERMINAL))
def test_terminal_states_refuse_every_event(state: State) -> None:
    assert allowed_events(state) == frozenset()
    for event in Event:
        with pytest.raises(LifecycleError):
            next_state(state, event)


@pytest.mark.parametrize("state", sorted(SETTLED))
def test_settled_outcomes_only_accept_delivery_or_cancel(state: State) -> None:
    # The outcome is fixed: only its hand-out (or the agent's DELETE) can follow.
    assert allowed_events(state) <= {E.DELIVERED, E.CANCELLED, E.REVOKED, E.TIMED_OUT}
    assert next_state(state, E.DELIVERED) is S.DELIVERED
    for event in (E.APPROVED, E.DENIED, E.INTERACTION_STARTED):
        with pytest.raises(LifecycleError):
            next_state(state, event)


def _reachable(start: State) -> set[State]:
    seen = {start}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        for event in allowed_events(state):
            target = next_state(state, event)
            if target not in seen:
                seen.add(target)
                queue.append(target)
    return seen


@pytest.mark.parametrize("state", sorted(set(State) - TERMINAL))
def test_every_non_terminal_state_can_reach_a_terminal_one(state: State) -> None:
    assert _reachable(state) & TERMINAL


def test_every_state_is_reachable_from_pending() -> None:
    assert _reachable(S.PENDING) == set(State)


POLL = {
    S.PENDING: (202, None, "pending"),
    S.INTERACTING: (202, None, "interacting"),
    S.CLARIFYING: (202, None, "interacting"),
    S.QUESTIONED: (202, None, "pending"),
    S.APPROVED: (200, None, None),
    S.DENIED: (403, "denied", None),
    S.ABANDONED: (403, "abandoned", None),
    S.REVOKED: (403, "revoked", None),
    S.EXPIRED: (408, "expired", None),
    S.CODE_LOCKED: (410, "invalid_code", None),
    S.FAILED: (500, "server_error", None),
    S.AS_UNREACHABLE: (502, "as_unreachable", None),
    S.CANCELLED: (410, None, None),
    S.DELIVERED: (410, None, None),
}


@pytest.mark.parametrize("state", list(State))
def test_poll_answer_and_body_status(state: State) -> None:
    status, error, body = POLL[state]
    assert poll_answer(state) == (status, error)
    assert body_status(state) == body
    assert (status == 202) == (state in OPEN)


def test_retained_auth_token_result_repeats_after_delivery() -> None:
    assert poll_answer(S.DELIVERED, result_retained=True) == (200, None)
    assert poll_answer(S.CANCELLED, result_retained=True) == (410, None)
    assert poll_answer(S.DENIED, result_retained=True) == (403, "denied")


def _walk(events: Iterable[Event], start: State = S.PENDING) -> list[State]:
    states = [start]
    for event in events:
        states.append(next_state(states[-1], event))
    return states


def test_story_clarification_round_trip_then_approval_and_delivery() -> None:
    states = _walk(
        [
            E.INTERACTION_STARTED,
            E.CLARIFICATION_ASKED,
            E.CLARIFICATION_ANSWERED,
            E.CLARIFICATION_ASKED,
            E.REQUEST_UPDATED,
            E.APPROVED,
            E.DELIVERED,
        ]
    )
    assert states == [
        S.PENDING,
        S.INTERACTING,
        S.CLARIFYING,
        S.INTERACTING,
        S.CLARIFYING,
        S.INTERACTING,
        S.APPROVED,
        S.DELIVERED,
    ]
    assert [poll_answer(s)[0] for s in states] == [202] * 6 + [200, 410]


def test_story_second_question_before_the_answer_is_refused() -> None:
    clarifying = _walk([E.INTERACTION_STARTED, E.CLARIFICATION_ASKED])[-1]
    with pytest.raises(LifecycleError):
        next_state(clarifying, E.CLARIFICATION_ASKED)
    # A late answer after the person already decided is refused too.
    approved = next_state(clarifying, E.APPROVED)
    with pytest.raises(LifecycleError):
        next_state(approved, E.CLARIFICATION_ANSWERED)


def test_story_deny_then_gone() -> None:
    states = _walk([E.INTERACTION_STARTED, E.DENIED, E.DELIVERED])
    assert [poll_answer(s) for s in states[1:]] == [(202, None), (403, "denied"), (410, None)]
    with pytest.raises(LifecycleError):
        next_state(states[-1], E.APPROVED)


def test_story_agent_cancels_while_interacting() -> None:
    states = _walk([E.INTERACTION_STARTED, E.CANCELLED])
    assert states[-1] is S.CANCELLED
    assert poll_answer(states[-1]) == (410, None)
    for late in (E.APPROVED, E.CANCELLED, E.DELIVERED):
        with pytest.raises(LifecycleError):
            next_state(states[-1], late)


def test_story_expire_while_interacting() -> None:
    states = _walk([E.INTERACTION_STARTED, E.TIMED_OUT, E.DELIVERED])
    assert [poll_answer(s) for s in states[1:]] == [(202, None), (408, "expired"), (410, None)]


def test_story_approved_but_uncollected_is_revoked_not_delivered() -> None:
    revoked = _walk([E.APPROVED, E.REVOKED])[-1]
    assert poll_answer(revoked) == (403, "revoked")
    assert next_state(revoked, E.DELIVERED) is S.DELIVERED


def test_story_code_redeemed_once() -> None:
    interacting = next_state(S.PENDING, E.INTERACTION_STARTED)
    with pytest.raises(LifecycleError):
        next_state(interacting, E.INTERACTION_STARTED)
    with pytest.raises(LifecycleError):
        next_state(interacting, E.CODE_LOCKED)


def test_story_the_policy_asks_the_agent_then_decides_again() -> None:
    states = _walk([E.CLARIFICATION_ASKED, E.CLARIFICATION_ANSWERED, E.CLARIFICATION_ASKED])
    assert states == [S.PENDING, S.QUESTIONED, S.PENDING, S.QUESTIONED]
    assert body_status(S.QUESTIONED) == "pending"  # nobody is at a page: keep prompting
    # The person was never there: nothing to abandon, no code to redeem while questioned.
    for event in (E.ABANDONED, E.INTERACTION_STARTED, E.CODE_LOCKED):
        with pytest.raises(LifecycleError):
            next_state(S.QUESTIONED, event)
    assert _walk([E.REQUEST_UPDATED, E.INTERACTION_STARTED], S.QUESTIONED)[-1] is S.INTERACTING
