"""Shared state: two AS workers on one real Redis share a pending request (one answers the
claims, the other delivers the token exactly once), and a restarted AS keeps its
issued-token records and revocations (a SQLite file)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from aauth_server.access import AccessRequest, AccessServer, Issue, RequireClaims, Verdict
from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.tokens.jwt import decode_unverified
from tests.access.as_harness import AsWorld, body_of, header, pending_path
from tests.redis_server import ensure_redis
from tests.support import PS_ISSUER


def claims_then_issue(request: AccessRequest) -> Verdict:
    if "email" not in request.claims:
        return RequireClaims(["email"])
    return Issue(claims={"email": request.claims["email"]})


async def _async_answer(server: AccessServer, request: HttpRequest) -> HttpResponse | None:
    """Through the async driver, closing the async store on the loop that opened it."""
    try:
        return await server.ahandle(request)
    finally:
        await server.aclose()


def test_two_workers_on_one_redis_share_a_pending_request(tmp_path: Path) -> None:
    aw = AsWorld(
        policy=claims_then_issue,
        store=ensure_redis(),
        async_store=None,
        store_prefix=f"aauth-test:{uuid.uuid4().hex}",
        records=f"sqlite:///{tmp_path / 'records.db'}",
        records_migrate=True,
    )
    other = AccessServer(aw.config)
    try:
        first = aw.send(aw.token_request(aw.triple()))
        assert header(first, "aauth-requirement") == "requirement=claims"
        path = pending_path(first)
        # The second worker sees the request the first one opened, and takes the answer.
        seen = other.handle(aw.signed("GET", path))
        assert seen is not None and body_of(seen)["required_claims"] == ["email"]
        answered = asyncio.run(_async_answer(other, aw.signed("POST", path, {"email": "w@x"})))
        assert answered is not None and answered.status == 202
        # The first worker delivers; afterwards neither hands it out again.
        done = aw.send(aw.signed("GET", path))
        assert done.status == 200
        jti = str(decode_unverified(body_of(done)["auth_token"]).payload["jti"])
        again = other.handle(aw.signed("GET", path))
        assert again is not None and again.status == 410
        # Both workers write to the same records.
        assert other.records.run(other.rec.issued(jti)) is not None
    finally:
        other.close()
        aw.server.close()


def test_a_restart_keeps_issued_tokens_and_revocations(tmp_path: Path) -> None:
    records = f"sqlite:///{tmp_path / 'as.db'}"
    aw = AsWorld(records=records, records_migrate=True)
    body = aw.triple()
    token = body_of(aw.send(aw.token_request(body)))["auth_token"]
    jti = str(decode_unverified(token).payload["jti"])
    presented = str(decode_unverified(body["presented_token"]).payload["jti"])
    revoked = aw.send(
        aw.signed("POST", "/revoke", {"jti": presented, "exp": int(aw.clock.now()) + 3600})
    )
    assert revoked.status == 200
    aw.server.close()
    restarted = AccessServer(aw.config)
    try:
        issued = restarted.records.run(restarted.rec.issued(jti))
        assert issued is not None and issued.presented_jti == presented
        assert restarted.records.run(restarted.rec.is_revoked(PS_ISSUER, presented))
        aw.server = restarted
        again = aw.send(aw.token_request(body))
        assert body_of(again)["error"] == "revoked_presented_token"
    finally:
        restarted.close()
