"""Every revocation error of digest 5.7 at the PS's revocation endpoint (the resource's and
the Access Server's answer the same codes through the same steps, :mod:`aauth_server.revocation`):
``invalid_request`` 400, ``unsupported_iss`` 403, ``rate_limited`` 429 with ``Retry-After``
(counted across workers through the shared pending store: memory and a real Redis),
``server_error`` 500 when the record store is down, and a bad signature ``401``."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.records import RecordStore
from aauth_server.storage.memory import AsyncMemoryStore, MemoryState, MemoryStore
from aauth_server.storage.uri import open_async_store, open_store
from aauth_server.tokens.aauth import DWK_AGENT, DWK_PERSON
from tests.person.ps_harness import PsWorld, sender
from tests.redis_server import ensure_redis, free_port
from tests.support import AP_ISSUER, PS_ISSUER


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _error(response: HttpResponse) -> tuple[int, str]:
    body = json.loads(response.body) if response.body else {}
    return response.status, str(body.get("error"))


def _revocation(pw: PsWorld, body: bytes, **kw: Any) -> HttpRequest:
    return pw.server_signed(body, issuer=AP_ISSUER, dwk=DWK_AGENT, key=pw.world.provider.key, **kw)


def test_invalid_request_unsupported_iss_and_a_bad_signature(mode: str) -> None:
    pw = PsWorld()
    send = sender(pw.app, mode)
    for body in (b"not json", b"[]", b'{"exp": 1}', b'{"jti": "x"}', b'{"jti": "", "exp": 1}'):
        assert _error(send(_revocation(pw, body))) == (400, "invalid_request"), body
    far = json.dumps({"jti": "x", "exp": pw.clock.now() + 10 * 86400}).encode()
    assert _error(send(_revocation(pw, far))) == (400, "invalid_request")
    # The PS's own identity does not issue tokens revocable at the PS.
    own = pw.server_signed(
        b'{"jti":"x","exp":1}', issuer=PS_ISSUER, dwk=DWK_PERSON, key=pw.world.ps_key
    )
    assert _error(send(own)) == (403, "unsupported_iss")
    # A body changed after signing: the content digest no longer matches.
    signed = _revocation(pw, b'{"jti":"x","exp":1}')
    tampered = HttpRequest(signed.method, signed.url, signed.headers, b'{"jti":"y","exp":1}')
    refused = send(tampered)
    assert refused.status == 401 and refused.header("signature-error")
    # Signed with a key the AP does not publish.
    from aauth_server.keys.jwk import PrivateKey

    stranger = PrivateKey.generate("Ed25519", kid=pw.world.provider.key.kid)
    forged = pw.server_signed(b'{"jti":"x","exp":1}', issuer=AP_ISSUER, dwk=DWK_AGENT, key=stranger)
    assert send(forged).status == 401


@pytest.mark.parametrize(
    ("backend", "mode"),
    # The async Redis client belongs to one event loop; the harness runs one per request.
    [("memory", "sync"), ("memory", "async"), ("redis", "sync")],
)
def test_the_rate_limit_is_shared_by_every_worker(backend: str, mode: str) -> None:
    first = PsWorld(revocations_per_minute=3)
    clock = first.clock
    if backend == "memory":
        state = MemoryState()
        stores: dict[str, Any] = {
            "store": MemoryStore(state, clock=clock),
            "async_store": AsyncMemoryStore(state, clock=clock),
        }
    else:
        url, prefix = ensure_redis(), f"rev-rate-{uuid.uuid4().hex}"
        stores = {
            "store": open_store(url, prefix=prefix, clock=clock),
            "async_store": open_async_store(url, prefix=prefix, clock=clock),
        }
    # Two workers of one PS: separate processes' objects, one pending store.
    a = PsWorld(clock=clock, revocations_per_minute=3, **stores)
    b = PsWorld(
        clock=clock,
        revocations_per_minute=3,
        discovery=a.world.discovery(),  # the same AP and its published key
        signing_key=a.world.ps_key,
        **stores,
    )
    send_a, send_b = sender(a.app, mode), sender(b.app, mode)
    answers = [send_a(a.revoke_agent_token()).status, send_b(a.revoke_agent_token()).status]
    answers.append(send_a(a.revoke_agent_token()).status)
    limited = send_b(a.revoke_agent_token())
    assert answers == [200, 200, 200]
    assert _error(limited) == (429, "rate_limited")
    assert limited.header("retry-after") == "60"
    # The next minute counts afresh.
    clock.advance(60)
    assert send_a(a.revoke_agent_token()).status == 200


def test_server_error_when_the_record_store_is_down(mode: str) -> None:
    pw = PsWorld()
    send = sender(pw.app, mode)
    assert send(pw.revoke_agent_token()).status == 200
    # The database goes away: a record store whose PostgreSQL nobody answers.
    pw.ps.records = RecordStore(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x")
    response = send(pw.revoke_agent_token())
    assert _error(response) == (500, "server_error")
    assert b"127.0.0.1" not in response.body  # the cause is for the operator's log
