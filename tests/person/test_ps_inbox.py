"""A person's consent list (the PS inbox) holds the requests that may still be open, not every
request the person was ever asked: it stays bounded however long requests keep coming, and
reading it costs one store read per recent request, not per request ever made."""

from __future__ import annotations

from typing import Any

from aauth_server.person.pending import KIND_INBOX, RETENTION
from aauth_server.resource.state import digest_id
from tests.person.ps_harness import ALICE, PsWorld

STEP = 30  # seconds between two requests of the agent


def _world() -> PsWorld:
    pw = PsWorld()
    pw.bind()
    return pw


def _inbox(pw: PsWorld) -> list[str]:
    record = pw.ps.config.store.get(KIND_INBOX, digest_id(ALICE))
    return [] if record is None else list(record.data["ids"])


def _request(pw: PsWorld, *, cancel: bool) -> str:
    response = pw.app.send(pw.person_request())
    assert response.status == 202, response.body
    location = response.header("location") or ""
    if cancel:
        assert pw.app.send(pw.poll(location, method="DELETE")).status == 204
    return location.rsplit("/", 1)[1]


def _reads_of(pw: PsWorld) -> tuple[list[str], int]:
    """The person's open requests, and how many store reads listing them took."""
    store = pw.ps.config.store
    reads = 0
    real = store.get

    def get(kind: str, id: str) -> Any:
        nonlocal reads
        reads += 1
        return real(kind, id)

    store.get = get  # type: ignore[method-assign]
    try:
        shown = [view.pending_id for view in pw.ps.consent.pending_for(ALICE)]
    finally:
        store.get = real  # type: ignore[method-assign]
    return shown, reads


def test_the_consent_list_stays_bounded_while_requests_keep_coming() -> None:
    pw = _world()
    window = pw.config.pending_lifetime + RETENTION
    most = window // STEP + 1
    cycles = 3 * window // STEP
    for _ in range(cycles):
        _request(pw, cancel=True)
        assert len(_inbox(pw)) <= most
        pw.tick(STEP)
    shown, reads = _reads_of(pw)
    assert shown == []
    assert reads <= most + 1  # the list, then one read per request on it (was: one per cycle)


def test_an_open_request_stays_listed_until_it_expires() -> None:
    pw = _world()
    pw.tick(STEP)
    kept = _request(pw, cancel=False)
    for _ in range(pw.config.pending_lifetime // STEP - 1):
        pw.tick(STEP)
        _request(pw, cancel=True)
        assert kept in _inbox(pw)
        assert _reads_of(pw)[0] == [kept]
    pw.tick(STEP)  # past its expires_at: timed out, no longer shown
    assert _reads_of(pw)[0] == []
    pw.tick(RETENTION)  # and its record gone: the next request drops it from the list
    _request(pw, cancel=True)
    assert kept not in _inbox(pw)


def test_a_list_written_without_deadlines_is_pruned_after_its_own_expiry() -> None:
    pw = _world()
    store = pw.ps.config.store
    ttl = pw.config.pending_lifetime + RETENTION
    old_ids = ["o" * 32, "p" * 32]
    old = store.create(KIND_INBOX, digest_id(ALICE), {"ids": old_ids}, ttl)
    # Its ids count as expiring with the list they were on (an upper bound for each request
    # on it), and go RETENTION later, like any other.
    for _ in range(2 * ttl // STEP):
        pw.tick(STEP)
        latest = _request(pw, cancel=True)
        inbox = _inbox(pw)
        assert latest in inbox
        assert (inbox[:2] == old_ids) is (pw.clock.now() < old.expires_at + RETENTION)
