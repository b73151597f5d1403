"""PS-AS collapse (issue 11 item 2): a PS of the same process calls the AS without the
network hop, as a step its own driver answers; the AS still runs every check, its policy,
its own pending store and records, and the trust list."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

from aauth_server.access import AccessRequest, Issue, RequireClaims, Verdict
from aauth_server.http import HttpResponse
from aauth_server.steps import Driver
from aauth_server.storage.memory import AsyncMemoryStore, MemoryState, MemoryStore
from tests.access.as_harness import AsWorld, body_of, header
from tests.support import PS_ISSUER


def claims_then_issue(request: AccessRequest) -> Verdict:
    if "email" not in request.claims:
        return RequireClaims(["email"])
    return Issue(claims={"email": request.claims["email"]})


def other_driver(aw: AsWorld) -> Driver:
    """A driver with a store of its own (the PS's): the AS's steps must not land there."""
    state = MemoryState()
    return Driver(aw.server.server_verifier, MemoryStore(state), AsyncMemoryStore(state))


def ps_steps(aw: AsWorld, body: dict[str, Any]) -> Generator[Any, Any, list[HttpResponse]]:
    access = aw.server
    first = yield access.token_request_call(PS_ISSUER, body)
    location = header(first, "location")
    assert location is not None
    answered = yield access.pending_call(PS_ISSUER, "POST", location, body={"email": "i@p"})
    done = yield access.pending_call(PS_ISSUER, "GET", location)
    return [first, answered, done]


def test_a_ps_of_this_process_calls_the_as_as_a_step() -> None:
    aw = AsWorld(policy=claims_then_issue)
    first, answered, done = other_driver(aw).run(ps_steps(aw, aw.triple()))
    assert (first.status, body_of(first)["required_claims"]) == (202, ["email"])
    assert answered.status == 202
    assert done.status == 200 and "auth_token" in body_of(done)


def test_the_async_driver_and_errors_as_responses() -> None:
    aw = AsWorld(policy=claims_then_issue)

    async def run() -> list[HttpResponse]:
        return await other_driver(aw).arun(ps_steps(aw, aw.triple()))

    assert [r.status for r in asyncio.run(run())] == [202, 202, 200]
    bad = other_driver(aw).run(_one(aw.server.token_request_call(PS_ISSUER, {"x": 1})))
    assert (bad.status, body_of(bad)["error"]) == (400, "invalid_request")
    untrusted = other_driver(aw).run(
        _one(aw.server.token_request_call("https://other-ps.example", aw.triple()))
    )
    assert (untrusted.status, body_of(untrusted)["error"]) == (403, "denied")
    other = other_driver(aw).run(
        _one(aw.server.pending_call("https://other-ps.example", "GET", "/pending/" + "a" * 32))
    )
    assert other.status == 404


def _one(step: Any) -> Generator[Any, Any, HttpResponse]:
    response: HttpResponse = yield step
    return response
