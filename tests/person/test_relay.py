"""The interaction endpoint and its relay channels (digest 6.4, 11.3), sync and async drivers."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from aauth_server.errors import AAuthError
from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.person.channels import CallbackChannel, RelayView
from aauth_server.person.relay import KIND_RELAY_LOG, InteractionRelay
from aauth_server.tokens.aauth import mint_agent_token
from tests.person.ps_harness import ALICE, PsWorld, body_of
from tests.support import AP_ISSUER

MODES = ["sync", "async"]
URL = "https://resource.example/interact"
INTERACTION = {"type": "interaction", "url": URL, "code": "A1B2-C3D4", "capabilities": []}
QUESTION = {"type": "question", "question": "Which calendar should I use?"}


class Env:
    """A PS, its relay, and the world's agent, driven through one driver flavour."""

    def __init__(self, mode: str, **overrides: Any) -> None:
        self.mode = mode
        self.w = PsWorld(**overrides)
        self.relay = InteractionRelay(self.w.ps)

    def send(self, request: HttpRequest) -> HttpResponse:
        if self.mode == "sync":
            response = self.relay.handle(request)
        else:
            response = asyncio.run(self.relay.ahandle(request))
        assert response is not None
        return response

    def ask(self, body: Any, **kw: Any) -> HttpResponse:
        return self.send(self.w.post(self.w.config.interaction_path, body, **kw))

    def poll(self, location: str, **kw: Any) -> HttpResponse:
        return self.send(self.w.poll(location, **kw))

    def run(self, name: str, *args: Any) -> Any:
        if self.mode == "sync":
            return getattr(self.relay, name)(*args)
        return asyncio.run(getattr(self.relay, "a" + name)(*args))

    def present(self, person: str = ALICE) -> None:
        self.w.ps.presence.touch(person)

    def log_records(self) -> list[dict[str, Any]]:
        return [
            json.loads(entry.data)
            for entry in self.w.state.records.values()
            if entry.kind == KIND_RELAY_LOG
        ]


def _problem(response: HttpResponse, status: int, error: str) -> dict[str, Any]:
    assert response.status == status, response.body
    assert response.header("Content-Type") == "application/problem+json"
    body: dict[str, Any] = body_of(response)
    assert body["error"] == error
    return body


def _pending(response: HttpResponse, status: str = "pending") -> str:
    assert response.status == 202, response.body
    assert response.header("Cache-Control") == "no-store"
    assert response.header("Retry-After") == "5"  # the PS's poll_interval
    assert body_of(response) == {"status": status}
    location = response.header("Location")
    assert location is not None and location.startswith("https://ps.example/relay/")
    return location


def _recorder(sent: list[RelayView]) -> Any:
    def send(relay: RelayView) -> bool:
        sent.append(relay)
        return True

    return send


@pytest.fixture(params=MODES)
def env(request: pytest.FixtureRequest) -> Env:
    return Env(request.param)


# -- who can be reached ------------------------------------------------------------------------


def test_unbound_agent_gets_interaction_unavailable(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    env.present()
    with caplog.at_level(logging.INFO, logger="aauth_server.person.relay"):
        response = env.ask({**INTERACTION, "capabilities": ["interaction"]})
    body = _problem(response, 424, "interaction_unavailable")
    assert "direct the user yourself" in body["detail"]
    assert any("outcome=interaction_unavailable" in r.getMessage() for r in caplog.records)
    assert env.log_records()[0]["outcome"] == "interaction_unavailable"
    assert env.log_records()[0]["person"] is None


def test_bound_person_without_open_page_gets_interaction_unavailable(env: Env) -> None:
    env.w.bind()
    response = env.ask({**INTERACTION, "capabilities": ["interaction"]})
    _problem(response, 424, "interaction_unavailable")
    [entry] = env.log_records()
    assert (entry["person"], entry["type"]) == (ALICE, "interaction")


def test_page_presence_expires_after_its_ttl(env: Env) -> None:
    env.w.bind()
    env.present()
    env.w.tick(31)
    _problem(
        env.ask({**INTERACTION, "capabilities": ["interaction"]}), 424, "interaction_unavailable"
    )


@pytest.mark.parametrize("bound", [False, True])
def test_without_interaction_capability_the_user_is_unreachable(env: Env, bound: bool) -> None:
    if bound:
        env.w.bind()
    response = env.ask({**QUESTION, "capabilities": ["clarification"]})
    _problem(response, 403, "user_unreachable")
    assert env.log_records()[0]["outcome"] == "user_unreachable"


# -- bad bodies ----------------------------------------------------------------------------------

BAD_BODIES: dict[str, Any] = {
    "not json": b"{nope",
    "not an object": ["interaction"],
    "type missing": {"url": URL, "code": "A1B2C3D4"},
    "type unknown": {**INTERACTION, "type": "completion"},
    "type not a string": {**INTERACTION, "type": 1},
    "description not a string": {**INTERACTION, "description": 5},
    "description empty": {**INTERACTION, "description": "  "},
    "description too long": {**INTERACTION, "description": "x" * 4097},  # max_text
    "url missing": {"type": "interaction", "code": "A1B2C3D4"},
    "url not https": {**INTERACTION, "url": "http://resource.example/interact"},
    "url loopback without dev": {**INTERACTION, "url": "http://127.0.0.1:8000/interact"},
    "url with query": {**INTERACTION, "url": URL + "?x=1"},
    "url with fragment": {**INTERACTION, "url": URL + "#top"},
    "url with userinfo": {**INTERACTION, "url": "https://me@resource.example/i"},
    "url relative": {**INTERACTION, "url": "/interact"},
    "code missing": {"type": "interaction", "url": URL},
    "code not crockford": {**INTERACTION, "code": "UUUU-!!!!"},
    "code too long": {**INTERACTION, "code": "A" * 65},
    "payment code not a string": {"type": "payment", "url": URL, "code": 7},
    "max_wait zero": {**INTERACTION, "max_wait": 0},
    "max_wait string": {**INTERACTION, "max_wait": "30"},
    "max_wait boolean": {**INTERACTION, "max_wait": True},
    "max_wait fraction": {**INTERACTION, "max_wait": 1.5},
    "question missing": {"type": "question"},
    "question not a string": {"type": "question", "question": ["why"]},
    "question on an interaction": {**INTERACTION, "question": "why?"},
    "url on a question": {**QUESTION, "url": URL},
    "mission_s256 malformed": {**INTERACTION, "mission_s256": "abc"},
    "capabilities not an array": {**INTERACTION, "capabilities": "interaction"},
    "capabilities not strings": {**INTERACTION, "capabilities": [1]},
}


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_bad_bodies_are_invalid_request(env: Env, name: str) -> None:
    env.w.bind()
    env.present()
    _problem(env.ask(BAD_BODIES[name]), 400, "invalid_request")


def test_loopback_url_is_accepted_under_the_dev_setting() -> None:
    env = Env("sync", dev_loopback=True)
    env.w.bind()
    env.present()
    _pending(env.ask({**INTERACTION, "url": "http://127.0.0.1:8000/interact"}))


def test_payment_without_code_is_relayed(env: Env) -> None:
    env.w.bind()
    env.present()
    location = _pending(env.ask({"type": "payment", "url": URL}))
    [view] = env.run("pending_for", ALICE)
    assert (view.type, view.target) == ("payment", URL)
    assert location.endswith(view.id)


# -- interaction ---------------------------------------------------------------------------------


def test_interaction_relayed_to_the_open_page(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    env.w.bind()
    env.present()
    with caplog.at_level(logging.INFO, logger="aauth_server.person.relay"):
        location = _pending(env.ask({**INTERACTION, "description": "Sign in to *Example*"}))
        [view] = env.run("pending_for", ALICE)
        assert env.run("pending_for", "bob") == []
        assert view.description == "Sign in to *Example*"
        assert view.channel == "ps-page"
        assert _pending(env.poll(location)) == location

        engaged = env.run("engage", view.id, ALICE)
        assert engaged.state == "interacting"
        assert engaged.target == URL + "?code=A1B2-C3D4"
        _pending(env.poll(location), "interacting")
        final = env.poll(location)
        assert (final.status, body_of(final)) == (200, {"status": "engaged"})
        assert final.header("Cache-Control") == "no-store"
        _problem(env.poll(location), 410, "gone")
    assert env.run("pending_for", ALICE) == []
    outcomes = [r.getMessage() for r in caplog.records]
    assert any(
        f"agent={env.w.world.agent_id}" in m and "person=alice" in m and "type=interaction" in m
        for m in outcomes
    )
    assert any("outcome=relayed via ps-page" in m for m in outcomes)
    assert any("outcome=engaged" in m for m in outcomes)
    assert {e["outcome"] for e in env.log_records()} == {"relayed via ps-page", "engaged"}


def test_only_the_relaying_agent_may_poll(env: Env) -> None:
    env.w.bind()
    env.present()
    location = _pending(env.ask(INTERACTION))
    other = env.w.world.provider.issue(env.w.world.agent_key.public, "other-agent")
    _problem(env.poll(location, token=other), 403, "forbidden")
    _problem(env.poll(location.replace("/relay/", "/relay/x")), 404, "not_found")


def test_another_person_cannot_engage(env: Env) -> None:
    env.w.bind()
    env.present()
    _pending(env.ask(INTERACTION))
    [view] = env.run("pending_for", ALICE)
    with pytest.raises(AAuthError) as caught:
        env.run("engage", view.id, "bob")
    assert caught.value.status == 404


def test_max_wait_elapsing_before_engagement_is_expired(env: Env) -> None:
    env.w.bind()
    env.present()
    location = _pending(env.ask({**INTERACTION, "max_wait": 60}))
    env.w.tick(61)
    assert env.run("pending_for", ALICE) == []
    _problem(env.poll(location), 408, "expired")
    _problem(env.poll(location), 410, "gone")


def test_person_declines(env: Env) -> None:
    env.w.bind()
    env.present()
    location = _pending(env.ask(INTERACTION))
    [view] = env.run("pending_for", ALICE)
    assert env.run("decline", view.id, ALICE).state == "declined"
    _problem(env.poll(location), 403, "denied")
    _problem(env.poll(location), 410, "gone")


def test_agent_cancels_with_delete(env: Env) -> None:
    env.w.bind()
    env.present()
    location = _pending(env.ask(INTERACTION))
    assert env.poll(location, method="DELETE").status == 204
    _problem(env.poll(location), 410, "gone")
    assert env.run("pending_for", ALICE) == []


# -- question ------------------------------------------------------------------------------------


def test_question_answered_exactly_once(env: Env) -> None:
    env.w.bind()
    env.present()
    location = _pending(env.ask(QUESTION))
    [view] = env.run("pending_for", ALICE)
    assert view.question == QUESTION["question"]
    assert env.run("engage", view.id, ALICE).state == "interacting"
    _pending(env.poll(location), "interacting")
    _pending(env.poll(location), "interacting")
    assert env.run("answer", view.id, ALICE, "The **work** one").state == "answered"
    answered = env.poll(location)
    assert (answered.status, body_of(answered)) == (200, {"answer": "The **work** one"})
    _problem(env.poll(location), 410, "gone")
    with pytest.raises(AAuthError) as caught:
        env.run("answer", view.id, ALICE, "again")
    assert caught.value.status == 409


def test_only_questions_take_answers(env: Env) -> None:
    env.w.bind()
    env.present()
    _pending(env.ask(INTERACTION))
    [view] = env.run("pending_for", ALICE)
    with pytest.raises(AAuthError) as caught:
        env.run("answer", view.id, ALICE, "yes")
    assert caught.value.error == "invalid_request"


async def until_parked(env: Env, count: int, timeout: float = 5.0) -> None:
    """Return once ``count`` long polls are parked on the PS's async (memory) store, past
    their read and blocked on a change notification; fail after ``timeout`` seconds."""
    waiters = env.w.ps.async_store._waiters  # type: ignore[attr-defined]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while waiters.parked < count:
        assert loop.time() < deadline, f"{waiters.parked} of {count} long polls parked"
        await asyncio.sleep(0.005)


def test_long_poll_is_woken_by_the_answer() -> None:
    env = Env("async")
    env.w.bind()
    env.present()
    location = _pending(env.ask(QUESTION))
    [view] = env.run("pending_for", ALICE)

    async def scenario() -> tuple[HttpResponse, HttpResponse, float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        polls = [
            asyncio.create_task(env.relay.ahandle(env.w.poll(location, wait=20))) for _ in range(2)
        ]
        await until_parked(env, 2)  # both polls wait on the relay's change notification
        await env.relay.aanswer(view.id, ALICE, "Personal")
        first, second = await asyncio.gather(*polls)
        assert first is not None and second is not None
        return first, second, loop.time() - started

    first, second, elapsed = asyncio.run(scenario())
    assert elapsed < 5
    # Two waiting polls, one answer: exactly one of them carries it.
    answers = sorted([first.status, second.status])
    assert answers == [200, 410]
    winner = first if first.status == 200 else second
    assert body_of(winner) == {"answer": "Personal"}


def test_sync_driver_answers_long_polls_at_once() -> None:
    env = Env("sync")
    env.w.bind()
    env.present()
    location = _pending(env.ask(QUESTION))
    _pending(env.poll(location, wait=20))


# -- channels the application registers -------------------------------------------------------


def test_custom_channel_used_when_the_page_is_absent(env: Env) -> None:
    sent: list[RelayView] = []
    env.relay.register(CallbackChannel("push", lambda p: p == ALICE, _recorder(sent)))
    env.w.bind()
    location = _pending(env.ask(QUESTION))
    [pushed] = sent
    assert (pushed.person, pushed.type, pushed.channel) == (ALICE, "question", "push")
    assert location.endswith(pushed.id)
    # The person follows the notification to the PS page, where the relay is listed.
    [listed] = env.run("pending_for", ALICE)
    assert listed.id == pushed.id
    env.run("answer", pushed.id, ALICE, "Work")
    assert body_of(env.poll(location)) == {"answer": "Work"}
    assert {e["channel"] for e in env.log_records()} == {"push"}


def test_page_channel_wins_when_the_page_is_open(env: Env) -> None:
    sent: list[RelayView] = []
    env.relay.register(CallbackChannel("push", lambda p: True, _recorder(sent)))
    env.w.bind()
    env.present()
    _pending(env.ask(QUESTION))
    assert sent == []


def test_a_channel_that_fails_to_deliver_leaves_no_relay(env: Env) -> None:
    env.relay.register(CallbackChannel("push", lambda p: True, lambda r: False))
    env.w.bind()
    response = env.ask({**QUESTION, "capabilities": ["interaction"]})
    _problem(response, 424, "interaction_unavailable")
    assert env.run("pending_for", ALICE) == []


def test_routes_and_dispatch(env: Env) -> None:
    assert env.relay.routes() == [
        ("POST", "/interaction"),
        ("GET", "/relay/"),
        ("DELETE", "/relay/"),
    ]
    assert env.relay.handle(env.w.poll("https://ps.example/elsewhere")) is None


def test_a_sub_agent_cannot_relay(env: Env) -> None:
    env.w.bind()
    env.present()
    world = env.w.world
    sub_token = mint_agent_token(
        world.provider.key,
        iss=AP_ISSUER,
        sub=world.provider.agent_id("assistant+task1"),
        parent_agent=world.agent_id,
        cnf_jwk=world.agent_key.public,
        now=env.w.clock.now(),
    )
    _problem(env.ask(INTERACTION, token=sub_token), 400, "invalid_request")


def test_inbox_long_poll_sees_a_new_relay() -> None:
    env = Env("async")
    env.w.bind()
    env.present()
    inbox = asyncio.run(env.relay.ainbox(ALICE))
    assert inbox.relays == ()

    async def scenario() -> Any:
        waiting = asyncio.create_task(env.relay.await_inbox(ALICE, inbox.version, 20))
        await until_parked(env, 1)
        await env.relay.ahandle(env.w.post("/interaction", QUESTION))
        return await asyncio.wait_for(waiting, 5)

    newer = asyncio.run(scenario())
    assert newer.version != inbox.version
    assert [v.question for v in newer.relays] == [QUESTION["question"]]
