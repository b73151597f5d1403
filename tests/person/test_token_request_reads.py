"""The auth-token request's records: the agent's facts and the pair's revocation facts are
read in one transaction (one statement), the issued token is written in a second, and every
check still answers where, and in the order, it always did."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from aauth_server.records import RecordStore, Txn
from aauth_server.tokens.jwt import decode_unverified
from tests.person.ps_harness import PsWorld, body_of
from tests.person.test_ps_endpoints import _rt, assert_error, auto, bound


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Transactions:
    """The names of the record transactions the PS runs for requests (both drivers go
    through run); the revocation worker's own, on its thread, are not the requests'."""

    def __init__(self, store: RecordStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.names: list[str] = []
        run = store.run

        def counted(txn: Txn[Any]) -> Any:
            if threading.current_thread().name != "aauth-revocations":
                self.names.append(txn.name)
            return run(txn)

        monkeypatch.setattr(store, "run", counted)

    def take(self) -> list[str]:
        names, self.names = self.names, []
        return names


@pytest.fixture
def world(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[PsWorld, Any, Transactions]]:
    pw, send = bound(mode, policy=auto(auto_approve_scopes=("data.read",)))
    yield pw, send, Transactions(pw.ps.records, monkeypatch)


def test_an_issued_auth_token_takes_one_read_and_one_write(world: Any) -> None:
    pw, send, txns = world
    assert send(pw.post("/token", _rt(pw))).status == 200
    txns.take()  # the first request also stores which agent the agent token names
    response = send(pw.post("/token", _rt(pw)))
    assert response.status == 200, response.body
    assert txns.take() == ["request_facts", "record_issued"]
    # The write committed before the answer: the token is on record.
    jti = decode_unverified(body_of(response)["auth_token"]).payload["jti"]
    assert pw.ps.records.run(pw.ps.rec.issued(str(jti))) is not None


def test_a_revoked_pair_is_found_by_the_one_read(world: Any) -> None:
    pw, send, txns = world
    body = _rt(pw)
    assert send(pw.resource_revocation(body["resource_token"])).status == 200
    txns.take()
    assert_error(send(pw.post("/token", body)), 400, "revoked_resource_token")
    assert txns.take() == ["request_facts"]


def test_a_revoked_agent_token_answers_before_the_body_is_judged(world: Any) -> None:
    pw, send, txns = world
    assert send(pw.revoke_agent_token()).status == 200
    txns.take()
    for body in (_rt(pw), b"not json", {"resource_token": 1}, {}):
        assert_error(send(pw.post("/token", body)), 401, "revoked_jwt")
    # A body without a usable pair reads the agent's facts alone, as before.
    assert txns.take() == ["request_facts", "agent_facts", "agent_facts", "agent_facts"]


def test_a_body_error_still_answers_after_the_agent_checks(world: Any) -> None:
    pw, send, _ = world
    assert_error(send(pw.post("/token", b"[1]")), 400, "invalid_request")
    wrong_type = pw.post("/token", _rt(pw), headers=[("Content-Type", "text/plain")])
    assert_error(send(wrong_type), 400, "invalid_request")
    # A pair that does not decode is judged by the verification, with its own code.
    body = _rt(pw)
    body["presented_token"] = "x.y.z"
    assert_error(send(pw.post("/token", body)), 400, "invalid_presented_token")


def test_a_cut_off_agent_is_found_by_the_one_read(world: Any) -> None:
    pw, send, txns = world
    presented = pw.person_token()
    assert send(pw.post("/token", _rt(pw))).status == 200  # the PS learns who the token names
    assert send(pw.revoke_agent_token()).status == 200
    fresh = pw.new_agent_token()
    pw.tick(1)
    txns.take()
    request = pw.post("/token", _rt(pw, presented), token=fresh)
    assert_error(send(request), 400, "revoked_presented_token")
    assert txns.take() == ["request_facts"]
