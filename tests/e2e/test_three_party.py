"""End to end, three parties on 127.0.0.1: the example Person Server (Starlette mount under
uvicorn), an agent provider whose tokens name it, and the Starlette resource trusting it.

Each flow runs once with the PS on the memory store and once on a real Redis (a unique key
prefix per run).  The agent is :class:`AgentFlow`; the person is scripted over HTTP with a
session cookie and the page's CSRF token, as a browser acts.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from aauth_server.agent import Agent
from aauth_server.agent.flow import AgentFlow, Clarification, FlowError, Interaction
from aauth_server.tokens.jwt import decode_unverified
from example_apps._procs import AppSpec, RunningApp, running_apps
from example_apps.three_party import PASSWORD, ScriptedPerson
from tests.redis_server import ensure_redis

QUESTION = "Why do you need access to my data?"
ANSWER = "To add up **this month's** records."


@dataclass
class Parties:
    ps: RunningApp
    provider: RunningApp
    resource: RunningApp
    client: httpx.Client
    store: str


@pytest.fixture(scope="module", params=["memory", "redis"])
def parties(request: pytest.FixtureRequest) -> Iterator[Parties]:
    ps_args = ["--dev", "--framework", "starlette", "--password", PASSWORD]
    ps_args += ["--poll-interval", "1"]
    if request.param == "redis":
        ps_args += ["--store", ensure_redis(), "--store-prefix", f"e2e-3p-{uuid.uuid4().hex}"]
    ps_spec = AppSpec("person-server", "example_apps.person_server", tuple(ps_args))
    with running_apps([ps_spec]) as (ps,):
        others = [
            AppSpec("agent-provider", "example_apps.agent_provider", ("--dev", "--ps", ps.url)),
            AppSpec("starlette", "example_apps.starlette_resource", ("--dev", "--ps", ps.url)),
        ]
        with (
            running_apps(others) as (provider, resource),
            httpx.Client(timeout=30, trust_env=False) as client,
        ):
            yield Parties(ps, provider, resource, client, request.param)


@dataclass
class Agent3P:
    """An enrolled agent with its flow, recording what it was told and asked."""

    flow: AgentFlow
    person: ScriptedPerson
    directed: list[Interaction] = field(default_factory=list)
    questions: list[Clarification] = field(default_factory=list)
    notes: list[tuple[str, int]] = field(default_factory=list)


def _agent(parties: Parties, local: str) -> Agent3P:
    agent = Agent.enroll_dev(parties.provider.url, local, client=parties.client)
    person = ScriptedPerson(parties.ps.url)
    holder: list[Agent3P] = []

    def interact(interaction: Interaction) -> None:
        holder[0].directed.append(interaction)

    def clarify(asked: Clarification) -> str:
        holder[0].questions.append(asked)
        return ANSWER

    def observe(note: str, _request: httpx.Request, response: httpx.Response) -> None:
        holder[0].notes.append((note, response.status_code))
        if person.errors:  # nobody will decide: fail now, not at the flow's deadline
            raise FlowError(f"the scripted person failed: {person.errors[-1]}")

    flow = AgentFlow(
        agent, parties.client, interact=interact, clarify=clarify, observe=observe, wait=10
    )
    holder.append(Agent3P(flow, person))
    return holder[0]


def _person_approves_at(a: Agent3P) -> None:
    """The agent's interact callback: hand the link to the person, who approves."""

    def opens_and_approves(link: str) -> None:
        a.person.open(link)
        a.person.approve()

    def interact(interaction: Interaction) -> None:
        a.directed.append(interaction)
        a.person.act(lambda: opens_and_approves(interaction.link))

    a.flow.interact = interact


def _bind(parties: Parties, a: Agent3P) -> None:
    _person_approves_at(a)
    response = a.flow.request("GET", parties.resource.url + "/profile")
    a.person.join()
    assert response.status_code == 200, response.text
    assert response.json()["ps"] == parties.ps.url
    a.notes.clear()
    a.directed.clear()


def test_full_three_party_flow(parties: Parties) -> None:
    a = _agent(parties, "e2e-three-party")
    try:
        _person_approves_at(a)
        profile = a.flow.request("GET", parties.resource.url + "/profile")
        a.person.join()
        assert profile.status_code == 200, profile.text
        assert a.notes[0] == ("resource GET", 401)
        assert ("PS person_token", 202) in a.notes
        (directed,) = a.directed
        assert directed.url.startswith(parties.ps.url + "/consent/request/")
        person_token = a.flow.person_tokens[parties.resource.url]
        sub = decode_unverified(person_token).payload["sub"]
        assert profile.json() == {"ps": parties.ps.url, "sub": sub}

        a.notes.clear()
        saw_answer: list[str] = []

        def asks_reads_approves(link: str) -> None:
            a.person.open(link)
            a.person.ask(QUESTION)
            a.person.wait_for_answer()
            saw_answer.append(a.person.page)
            a.person.approve()

        def interact(interaction: Interaction) -> None:
            a.directed.append(interaction)
            a.person.act(lambda: asks_reads_approves(interaction.link))

        a.flow.interact = interact
        data = a.flow.request("GET", parties.resource.url + "/data")
        a.person.join()
        assert a.person.errors == []
        assert data.status_code == 200, data.text
        assert data.json() == {"scope": "data.read"}
        assert a.questions == [Clarification(QUESTION)]
        assert ("resource GET", 401) == a.notes[0]
        assert ("PS auth_token", 202) in a.notes
        assert ("clarification answer", 202) in a.notes
        # The answer reached the consent page as agent-asserted, sanitised Markdown.
        (page,) = saw_answer
        agent_part = page[page.index('id="agent-asserted"') :]
        assert "<strong>this month's</strong>" in agent_part.replace("&#39;", "'")
        auth = decode_unverified(a.flow.auth_tokens[parties.resource.url]).payload
        assert auth["iss"] == parties.ps.url and auth["sub"] == sub
        assert auth["scope"] == "data.read"
    finally:
        a.person.close()


def test_relay_falls_back_when_the_person_has_no_page_open(parties: Parties) -> None:
    a = _agent(parties, "e2e-relay")
    try:
        _bind(parties, a)
        # The link is made up: the agent records where it would send the person, no more.
        a.flow.interact = a.directed.append
        made_up = Interaction(parties.resource.url + "/aauth/interact", "RELA-Y234")
        outcome = a.flow.relay(made_up, description="Confirm the export")
        assert outcome.response.status_code == 424
        assert outcome.response.json()["error"] == "interaction_unavailable"
        assert not outcome.relayed and a.directed == [made_up]

        # With alice's PS page open (the page polls its events URL), the PS takes it.
        a.directed.clear()
        events = a.person.http.get(parties.ps.url + "/consent/events")
        assert events.status_code == 200
        outcome = a.flow.relay(made_up)
        assert outcome.relayed, outcome.response.text
        assert outcome.response.status_code == 202
        assert outcome.location is not None and outcome.location.startswith(parties.ps.url)
        assert a.directed == []
    finally:
        a.person.close()


def test_three_party_demo_runs_and_prints_its_outcomes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "example_apps.three_party"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    steps = (
        "profile-challenge",
        "person-token-deferred",
        "profile",
        "data-challenge",
        "auth-token-deferred",
        "clarification",
        "clarification-answer",
        "data",
        "relay",
        "fallback",
    )
    for step in steps:
        assert f"[three-party] PASS {step}:" in out, out
    assert "FAIL" not in out
    assert "< AAuth-Requirement: requirement=person-token" in out
    assert "< AAuth-Requirement: requirement=clarification" in out
    assert "< 424 Failed Dependency" in out
    assert "directing the user itself to " in out and "?code=DEMO-2345" in out
