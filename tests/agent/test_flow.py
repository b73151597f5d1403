"""AgentFlow against the real PS core and a real resource guard, in process.

httpx routes each request by host to the component that serves it (the PS core of
``tests/person/ps_harness`` or a ``ResourceGuard``); time is a FixedClock that the flow's
injected ``sleep`` advances, and the scripted person acts at those pauses.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest

from aauth_server.agent import Agent
from aauth_server.agent.flow import AgentFlow, Clarification, FlowError, Interaction
from aauth_server.errors import AAuthError
from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.resource import ResourceGuard
from aauth_server.resource.guard import Protection
from aauth_server.tokens.jwt import decode_unverified
from tests.person.ps_harness import ALICE, PsWorld
from tests.support import PS_ISSUER, RESOURCE

PROTECTIONS = {
    "/profile": Protection("person-token"),
    "/data": Protection("auth-token", scope="data.read"),
}
RELAYED_URL = RESOURCE + "/aauth/interact"


class Resource:
    """The guard in front of two endpoints answering with what the guard established."""

    def __init__(self, ps: PsWorld) -> None:
        self.guard = ResourceGuard(ps.world.resource_config(trusted_ps=(PS_ISSUER,)))

    def send(self, request: HttpRequest) -> HttpResponse:
        own = self.guard.handle(request)
        if isinstance(own, HttpResponse):
            return own
        protection = PROTECTIONS.get(request.path)
        if protection is None:
            return HttpResponse(404, [], b"")
        try:
            who = self.guard.check(request, protection)
        except AAuthError as error:
            return error.to_response()
        return HttpResponse.json(200, {"sub": getattr(who, "sub", None)})


@dataclass
class Env:
    ps: PsWorld
    resource: Resource
    client: httpx.Client
    agent: Agent
    notes: list[str] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)
    directed: list[Interaction] = field(default_factory=list)
    #: What the person does at the agent's next pause (one step per pause).
    person_steps: list[Callable[[], None]] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.ps.tick(seconds)
        if self.person_steps:
            self.person_steps.pop(0)()

    def flow(self, **kw: object) -> AgentFlow:
        settings: dict[str, object] = {
            "interact": self.directed.append,
            "ps": PS_ISSUER,
            "observe": lambda note, _req, _resp: self.notes.append(note),
            "wait": 0,
            "sleep": self.sleep,
            "clock": self.ps.clock,
        }
        settings.update(kw)
        return AgentFlow(self.agent, self.client, **settings)  # type: ignore[arg-type]

    def pending_id(self) -> str:
        (view,) = [v for v in self.ps.ps.consent.pending_for(ALICE) if v.state != "delivered"]
        return view.pending_id

    def open_directed(self) -> str:
        """The person follows the last link the agent gave them, logged in as alice."""
        return self.ps.ps.consent.open(self.directed[-1].code, ALICE).pending_id


def _router(ps: PsWorld, resource: Resource) -> httpx.MockTransport:
    def route(request: httpx.Request) -> httpx.Response:
        neutral = HttpRequest(
            request.method,
            str(request.url),
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
            request.read(),
        )
        host = request.url.host
        target = ps.app.send if host == "ps.example" else resource.send
        answer = target(neutral)
        return httpx.Response(answer.status, headers=answer.headers, content=answer.body)

    return httpx.MockTransport(route)


@pytest.fixture
def env() -> Env:
    ps = PsWorld()
    resource = Resource(ps)
    world = ps.world
    agent = Agent(world.agent_key, world.agent_token, world.agent_id)
    client = httpx.Client(transport=_router(ps, resource))
    return Env(ps, resource, client, agent)


def _approve_first_person_token(env: Env, flow: AgentFlow) -> None:
    def person_approves() -> None:
        env.ps.ps.consent.approve(env.open_directed(), ALICE)

    env.person_steps.append(person_approves)
    response = flow.request("GET", RESOURCE + "/profile")
    assert response.status_code == 200, response.text
    assert response.json()["sub"] == env.ps.sub_for(ALICE)


def test_person_token_through_interaction_then_resource_200(env: Env) -> None:
    flow = env.flow()
    _approve_first_person_token(env, flow)
    # The PS hosts its consent page: the agent directs the person there, no relay.
    (directed,) = env.directed
    assert directed.url.startswith(PS_ISSUER + "/consent/request/")
    assert directed.link == f"{directed.url}?code={directed.code}"
    assert env.notes == [
        "resource GET",
        "PS metadata",
        "PS person_token",
        "PS poll",
        "resource GET",
    ]
    token = flow.person_tokens[RESOURCE]
    assert decode_unverified(token).payload["aud"] == RESOURCE


def test_auth_token_with_clarification_round(env: Env) -> None:
    questions: list[Clarification] = []

    def clarify(question: Clarification) -> str:
        questions.append(question)
        return "To show your **records** in the report."

    flow = env.flow(clarify=clarify, justification="Build the monthly report")
    _approve_first_person_token(env, flow)
    env.notes.clear()

    def person_asks() -> None:
        pending = env.open_directed()
        env.ps.ps.consent.ask(pending, ALICE, "Why do you need access to my data?")

    def person_reads_answer_and_approves() -> None:
        view = env.ps.ps.consent.view(env.pending_id(), ALICE)
        assert view.clarifications == (
            ("Why do you need access to my data?", "To show your **records** in the report."),
        )
        assert view.justification == "Build the monthly report"
        env.ps.ps.consent.approve(view.pending_id, ALICE)

    env.person_steps += [person_asks, person_reads_answer_and_approves]
    response = flow.request("GET", RESOURCE + "/data")
    assert response.status_code == 200, response.text
    assert questions == [Clarification("Why do you need access to my data?")]
    assert env.notes == [
        "resource GET",
        "PS auth_token",
        "PS poll",
        "clarification answer",
        "PS poll",
        "resource GET",
    ]
    claims = decode_unverified(flow.auth_tokens[RESOURCE]).payload
    assert claims["scope"] == "data.read" and claims["iss"] == PS_ISSUER


def test_relay_falls_back_to_directing_the_user_on_424(env: Env) -> None:
    flow = env.flow()
    _approve_first_person_token(env, flow)
    env.directed.clear()
    made_up = Interaction(RELAYED_URL, "ABCD-EF23")
    outcome = flow.relay(made_up, description="Confirm the export")
    assert not outcome.relayed
    assert outcome.response.status_code == 424
    assert outcome.response.json()["error"] == "interaction_unavailable"
    assert env.directed == [made_up]


def test_relay_taken_by_the_ps_when_the_person_has_a_page_open(env: Env) -> None:
    flow = env.flow()
    _approve_first_person_token(env, flow)
    env.directed.clear()
    env.ps.ps.presence.touch(ALICE)
    outcome = flow.relay(Interaction(RELAYED_URL, "ABCD-EF23"))
    assert outcome.relayed and outcome.location is not None
    assert outcome.location.startswith(PS_ISSUER + "/relay/")
    assert env.directed == []  # the PS reaches the person; the agent does not


def test_resource_interaction_is_relayed_first() -> None:
    # A 202 interaction from a resource goes to the PS relay before the agent acts itself.
    ps = PsWorld()
    resource = Resource(ps)
    code = "WXYZ-2345"

    def route(request: httpx.Request) -> httpx.Response:
        if request.url.host == "ps.example":
            neutral = HttpRequest(
                request.method,
                str(request.url),
                [(k.decode(), v.decode()) for k, v in request.headers.raw],
                request.read(),
            )
            answer = ps.app.send(neutral)
            return httpx.Response(answer.status, headers=answer.headers, content=answer.body)
        if request.url.path == "/start":
            headers = {
                "AAuth-Requirement": f'requirement=interaction; url="{RELAYED_URL}"; code="{code}"',
                "Location": "/pending/abc",
                "Retry-After": "0",
            }
            return httpx.Response(202, headers=headers, json={"status": "pending"})
        return httpx.Response(200, json={"done": True})

    world = ps.world
    env = Env(
        ps,
        resource,
        httpx.Client(transport=httpx.MockTransport(route)),
        Agent(world.agent_key, world.agent_token, world.agent_id),
    )
    flow = env.flow()
    response = flow.request("GET", RESOURCE + "/start")
    assert response.json() == {"done": True}
    assert env.notes == ["resource GET", "PS metadata", "PS relay", "resource poll"]
    assert env.directed == [Interaction(RELAYED_URL, code)]  # unbound agent: 424, fallback


def test_denied_request_raises_flow_error(env: Env) -> None:
    flow = env.flow()
    env.person_steps.append(lambda: env.ps.ps.consent.deny(env.open_directed(), ALICE))
    with pytest.raises(FlowError) as raised:
        flow.request("GET", RESOURCE + "/profile")
    assert raised.value.error == "denied"
    assert raised.value.response is not None and raised.value.response.status_code == 403


def test_without_interaction_capability_the_person_is_unreachable(env: Env) -> None:
    flow = env.flow(capabilities=())
    with pytest.raises(FlowError) as raised:
        flow.person_token(RESOURCE)
    assert raised.value.error == "user_unreachable"
    assert env.directed == []


def test_plain_polls_follow_retry_after_and_slow_down_adds_five_seconds(env: Env) -> None:
    flow = env.flow(wait=None)

    # The second pause lets no time pass, so the poll after it comes too soon.
    def sleep(seconds: float) -> None:
        env.sleeps.append(seconds)
        if len(env.sleeps) == 3:
            env.ps.ps.consent.approve(env.open_directed(), ALICE)
        env.ps.tick(0 if len(env.sleeps) == 2 else seconds)

    flow.sleep = sleep
    token = flow.person_token(RESOURCE)
    assert decode_unverified(token).payload["aud"] == RESOURCE
    assert env.sleeps == [5, 5, 10]
    assert env.notes.count("PS poll") == 3


def test_the_ps_comes_from_the_agent_token_when_not_given(env: Env) -> None:
    with pytest.raises(ValueError, match="ps claim"):
        AgentFlow(env.agent, env.client, interact=env.directed.append)
    token = env.ps.world.provider.issue(env.ps.world.agent_key.public, "assistant", ps=PS_ISSUER)
    agent = Agent(env.agent.key, token, env.agent.agent_id)
    assert AgentFlow(agent, env.client, interact=env.directed.append).ps == PS_ISSUER


def test_flow_error_reads_the_problem_code() -> None:
    body = json.dumps({"error": "denied", "detail": "no"}).encode()
    response = httpx.Response(403, content=body, headers={"Content-Type": "application/json"})
    assert FlowError("x", response).error == "denied"
    signed = httpx.Response(401, headers={"Signature-Error": "error=invalid_signature"})
    assert FlowError("x", signed).error == "invalid_signature"
    assert FlowError("x").error is None
