"""``502 as_unreachable`` (AS down, slower than ``access_timeout``, garbage, a token failing
each delivery check of digest 3.5) and relayed AS errors, at the PS token endpoint and at
its pending URL, on both drivers."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from aauth_server.keys.jwk import PrivateKey
from tests.federation.harness import FedWorld, Reply, ScriptedAS, body_of


def _unreachable(response: Any) -> None:
    assert response.status == 502, response.body
    assert response.header("content-type") == "application/problem+json"
    assert body_of(response)["error"] == "as_unreachable"


def test_as_down(fresh: ScriptedAS) -> None:
    access = fresh
    # A port nothing listens on, trusted like any AS.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    down = f"http://127.0.0.1:{probe.getsockname()[1]}"
    probe.close()
    for driver in ("sync", "async"):
        world = FedWorld(access, driver=driver, trusted_access_servers=[down])
        try:
            pt = world.person_token()
            rt = world.resource_token(pt, aud=down)
            _unreachable(world.send(world.auth_request(rt, pt)))
        finally:
            world.ps.close()


def test_as_slower_than_the_deadline(fed: FedWorld, access: ScriptedAS) -> None:
    access.on("POST", "/token", Reply(200, {"auth_token": "x"}, delay=2.5))
    _unreachable(fed.ask_token())


def test_as_slower_than_the_deadline_at_a_poll(fed: FedWorld, access: ScriptedAS) -> None:
    access.on("POST", "/token", access.deferred())
    access.on("GET", access.PENDING, Reply(200, {"auth_token": "x"}, delay=2.5))
    location = fed.ask_token().header("location")
    assert location is not None
    _unreachable(fed.poll_after(location))
    assert fed.poll_after(location).status == 410


GARBAGE = [
    Reply(200, raw=b"<html>hello</html>", headers=[("Content-Type", "text/html")]),
    Reply(200, {"token": "wrong member"}),
    Reply(200, {"auth_token": "not.a.jwt"}),
    Reply(302, headers=[("Location", "https://elsewhere.example/")]),
    Reply(202, {"status": "pending"}),  # no Location, no Retry-After
    Reply(
        202,
        {"status": "pending"},
        [("Location", "https://elsewhere.example/p"), ("Retry-After", "1")],
    ),
    Reply(401, {"error": "invalid_signature"}),
    Reply(400, raw=b"bad", headers=[("Content-Type", "text/plain")]),
    Reply(503, raw=b"", headers=[]),
    Reply(418, {"no_error_member": True}),
    Reply(200, raw=b'{"auth_token": "' + b"x" * 300_000 + b'"}'),  # over the egress size cap
    Reply(200, raw=b'{"auth_token": "a.b.c"}', headers=[("Content-Type", "text/plain")]),
    Reply(404, {"error": "not_found"}),  # well-formed, but not an answer of a token endpoint
    Reply(402, {"error": "payment_required"}, [("Location", "/pay")]),
]


@pytest.mark.parametrize("reply", GARBAGE, ids=lambda r: f"{r.status}")
def test_as_answering_garbage(fed: FedWorld, access: ScriptedAS, reply: Reply) -> None:
    access.on("POST", "/token", reply)
    _unreachable(fed.ask_token())


def test_garbage_metadata(fed: FedWorld, access: ScriptedAS) -> None:
    saved = dict(access.metadata)
    access.metadata["auth_token_endpoint"] = "https://elsewhere.example/token"
    try:
        # The metadata cache of the discovery is fresh per world.
        _unreachable(fed.ask_token())
    finally:
        access.metadata.clear()
        access.metadata.update(saved)
    assert access.requests() == []


BAD_TOKENS: dict[str, dict[str, Any]] = {
    "signature": {"key": PrivateKey.generate("Ed25519", kid="as-1")},
    "iss": {"iss": "https://other-as.example"},
    "aud": {"aud": "https://other-resource.example"},
    "cnf": {"cnf_jwk": PrivateKey.generate("Ed25519").public},
    "sub": {"sub": "somebody-else"},
    "ps": {"ps": "https://other-ps.example"},
    "scope": {"scope": "data.read data.write"},
    "exp": {"lifetime": 3600},
}


#: What the PS says about each failed check (the detail of the 502).
SAYS = {
    "signature": "signature does not verify",
    "iss": "another issuer",
    "aud": "aud does not name",
    "cnf": "another key",
    "sub": "another person",
    "ps": "another person server",
    "scope": "more than the resource token",
    "exp": "outlives the presented token",
}


@pytest.mark.parametrize("check", sorted(BAD_TOKENS))
def test_token_failing_a_delivery_check(fed: FedWorld, access: ScriptedAS, check: str) -> None:
    access.on("POST", "/token", access.issued(**BAD_TOKENS[check]))
    # The presented person token lives 30 minutes: a one-hour AS token outlives it.
    response = fed.ask_token(lifetime=1800)
    _unreachable(response)
    assert SAYS[check] in body_of(response)["detail"]


def test_token_passing_every_check_with_a_short_presented_token(
    fed: FedWorld, access: ScriptedAS
) -> None:
    access.on("POST", "/token", access.issued())  # exp capped at the presented token's
    assert fed.ask_token(lifetime=1800).status == 200


def test_bad_token_at_a_poll_ends_the_pending_request(fed: FedWorld, access: ScriptedAS) -> None:
    access.on("POST", "/token", access.deferred())
    access.on("GET", access.PENDING, access.issued(sub="somebody-else"))
    response = fed.ask_token()
    assert response.status == 202
    location = response.header("location")
    _unreachable(fed.poll_after(location))
    assert fed.poll_after(location).status == 410


def test_as_gone_at_a_poll(fed: FedWorld, access: ScriptedAS) -> None:
    access.on("POST", "/token", access.deferred())
    access.on("GET", access.PENDING, Reply(200, raw=b"{", headers=[("Content-Type", "text/x")]))
    location = fed.ask_token().header("location")
    _unreachable(fed.poll_after(location))


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (403, "denied"),
        (400, "invalid_resource_token"),
        (400, "expired_presented_token"),
        (500, "server_error"),
    ],
)
def test_as_error_is_relayed(fed: FedWorld, access: ScriptedAS, status: int, code: str) -> None:
    access.on("POST", "/token", Reply(status, {"error": code, "detail": "the AS says no"}))
    response = fed.ask_token()
    assert response.status == status
    assert response.header("content-type") == "application/problem+json"
    assert body_of(response) == {"error": code, "detail": "the AS says no"}


def test_as_polling_error_is_relayed(fed: FedWorld, access: ScriptedAS) -> None:
    access.on("POST", "/token", access.deferred())
    access.on("GET", access.PENDING, Reply(403, {"error": "denied", "detail": "policy"}))
    location = fed.ask_token().header("location")
    response = fed.poll_after(location)
    assert response.status == 403
    assert body_of(response)["error"] == "denied"
    assert fed.poll_after(location).status == 410


def test_as_slow_down_at_a_poll_keeps_the_request(fed: FedWorld, access: ScriptedAS) -> None:
    access.on("POST", "/token", access.deferred())
    access.on(
        "GET",
        access.PENDING,
        Reply(429, {"error": "slow_down"}, [("Retry-After", "10")]),
        access.issued(),
    )
    location = fed.ask_token().header("location")
    slowed = fed.poll_after(location)
    assert slowed.status == 202
    assert int(slowed.header("retry-after")) >= 15  # the AS's Retry-After plus 5 s
    assert fed.poll_after(location, 5).status == 202  # not due yet: the AS is not polled
    assert len(access.requests("GET")) == 1
    assert fed.poll_after(location, 15).status == 200


@pytest.mark.parametrize(("status", "code"), [(408, "expired"), (410, "gone"), (403, "revoked")])
def test_as_polling_errors_keep_their_status(
    fed: FedWorld, access: ScriptedAS, status: int, code: str
) -> None:
    access.on("POST", "/token", access.deferred())
    access.on("GET", access.PENDING, Reply(status, {"error": code}))
    location = fed.ask_token().header("location")
    response = fed.poll_after(location)
    assert (response.status, body_of(response)["error"]) == (status, code)


def test_lost_pending_url_at_the_as_is_unreachable(fed: FedWorld, access: ScriptedAS) -> None:
    access.on("POST", "/token", access.deferred())
    access.on("GET", access.PENDING, Reply(404, {"error": "not_found"}))
    location = fed.ask_token().header("location")
    _unreachable(fed.poll_after(location))
