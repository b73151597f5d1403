"""Call chaining, interaction chaining and a parent-mediated sub-agent, end to end on
127.0.0.1: every party is its own process under uvicorn — the agent provider, the downstream
Starlette resource, the example intermediary (``example_apps.intermediary``) and two example
Person Servers.

* PS "auto" approves the chaining agent and the intermediary (``data.read`` too), so the
  chain runs agent -> intermediary -> downstream without asking anyone but the first
  binding;
* PS "ask" approves only its agent: the intermediary's downstream person-token request puts
  the person at the PS's consent page, which the intermediary chains back to its caller.

The person is scripted over HTTP as a browser acts (:class:`ScriptedPerson`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from aauth_server.agent import Agent
from aauth_server.agent.flow import AgentFlow, FlowError, Interaction, ParentMediated
from aauth_server.tokens.jwt import decode_unverified
from example_apps._procs import AppSpec, RunningApp, running_apps
from example_apps.three_party import PASSWORD, ScriptedPerson

CHAIN_AGENT = "chainer"
ASK_AGENT = "asker"
PARENT_AGENT = "parent"


@dataclass
class Parties:
    provider: RunningApp
    downstream: RunningApp
    intermediary: RunningApp
    ps_auto: RunningApp
    ps_ask: RunningApp
    client: httpx.Client

    def agent_id(self, local: str) -> str:
        return f"aauth:{local}@{self.provider.url.removeprefix('http://')}"


@pytest.fixture(scope="module")
def parties() -> Iterator[Parties]:
    first = [
        AppSpec("agent-provider", "example_apps.agent_provider", ("--dev",)),
        AppSpec("downstream", "example_apps.starlette_resource", ("--dev", "--trust-any-ps")),
    ]
    with running_apps(first) as (provider, downstream):
        mid_spec = AppSpec(
            "intermediary",
            "example_apps.intermediary",
            ("--dev", "--trust-any-ps", "--downstream", downstream.url, "--hold", "5"),
        )
        with running_apps([mid_spec]) as (intermediary,):
            host = provider.url.removeprefix("http://")
            mid_agent = f"aauth:intermediary@{intermediary.url.removeprefix('http://')}"
            common = ("--dev", "--password", PASSWORD, "--poll-interval", "1")
            auto = (
                *common,
                "--auto-approve", f"aauth:{CHAIN_AGENT}@{host}", f"aauth:{PARENT_AGENT}@{host}",
                mid_agent,
                "--auto-approve-scope", "data.read", "summary.read",
            )  # fmt: skip
            ask = (*common, "--auto-approve", f"aauth:{ASK_AGENT}@{host}")
            specs = [
                AppSpec("ps-auto", "example_apps.person_server", auto),
                AppSpec("ps-ask", "example_apps.person_server", ask),
            ]
            with (
                running_apps(specs) as (ps_auto, ps_ask),
                httpx.Client(timeout=30, trust_env=False) as client,
            ):
                yield Parties(provider, downstream, intermediary, ps_auto, ps_ask, client)


@dataclass
class Caller:
    flow: AgentFlow
    person: ScriptedPerson
    directed: list[Interaction] = field(default_factory=list)
    notes: list[tuple[str, int]] = field(default_factory=list)


def _caller(parties: Parties, local: str, ps: RunningApp, agent: Agent | None = None) -> Caller:
    agent = agent or Agent.enroll_dev(parties.provider.url, local, client=parties.client)
    person = ScriptedPerson(ps.url)
    holder: list[Caller] = []

    def interact(interaction: Interaction) -> None:
        # Alice follows the link the agent shows her and approves what she lands on.
        holder[0].directed.append(interaction)

        def opens_and_approves() -> None:
            person.open(interaction.link)
            person.approve()

        person.act(opens_and_approves)

    def observe(note: str, _request: httpx.Request, response: httpx.Response) -> None:
        holder[0].notes.append((note, response.status_code))
        if person.errors:
            raise FlowError(f"the scripted person failed: {person.errors[-1]}")

    flow = AgentFlow(agent, parties.client, interact=interact, observe=observe, ps=ps.url, wait=10)
    holder.append(Caller(flow, person))
    return holder[0]


def test_call_chaining_through_the_example_intermediary(parties: Parties) -> None:
    c = _caller(parties, CHAIN_AGENT, parties.ps_auto)
    try:
        response = c.flow.request("GET", parties.intermediary.url + "/summary")
        c.person.join()
        assert c.person.errors == []
        assert response.status_code == 200, response.text
        body = response.json()
        assert body == {"via": parties.intermediary.url, "downstream": {"scope": "data.read"}}
        # One interaction: alice bound the agent when it asked for the intermediary.
        (bind,) = c.directed
        assert bind.url.startswith(parties.ps_auto.url)
        upstream = decode_unverified(c.flow.person_tokens[parties.intermediary.url]).payload
        assert upstream["aud"] == parties.intermediary.url

        # The intermediary publishes itself as its own agent provider.
        doc = parties.client.get(parties.intermediary.url + "/.well-known/aauth-agent.json")
        assert doc.status_code == 200
        assert doc.json()["issuer"] == parties.intermediary.url
        jwks = parties.client.get(doc.json()["jwks_uri"]).json()
        assert [k["kty"] for k in jwks["keys"]] == ["OKP"]

        # Again, with the person token the agent holds: no interaction at all.
        c.directed.clear()
        again = c.flow.request("GET", parties.intermediary.url + "/summary")
        assert again.status_code == 200 and c.directed == []
    finally:
        c.person.close()


def test_an_upstream_auth_token(parties: Parties) -> None:
    """The caller presents an auth token at the intermediary: that is the upstream token
    (``ps`` names the PS to ask, the PS issued it itself)."""
    c = _caller(parties, CHAIN_AGENT, parties.ps_auto)
    try:
        response = c.flow.request("GET", parties.intermediary.url + "/report")
        c.person.join()
        assert c.person.errors == []
        assert response.status_code == 200, response.text
        assert response.json()["downstream"] == {"scope": "data.read"}
        upstream = decode_unverified(c.flow.auth_tokens[parties.intermediary.url])
        assert upstream.header["typ"] == "aa-auth+jwt"
        assert upstream.payload["scope"] == "summary.read"
        assert upstream.payload["ps"] == upstream.payload["iss"] == parties.ps_auto.url
    finally:
        c.person.close()


def test_interaction_chaining(parties: Parties) -> None:
    c = _caller(parties, ASK_AGENT, parties.ps_ask)
    try:
        # Bind the agent first (alice approves the person token for the intermediary).
        c.flow.person_tokens[parties.intermediary.url] = c.flow.person_token(
            parties.intermediary.url
        )
        c.person.join()
        assert len(c.directed) == 1
        c.directed.clear()
        c.notes.clear()

        response = c.flow.request("GET", parties.intermediary.url + "/who")
        c.person.join()
        assert c.person.errors == []
        assert response.status_code == 200, response.text
        who = response.json()
        assert who["via"] == parties.intermediary.url
        assert who["downstream"]["ps"] == parties.ps_ask.url
        # The intermediary's own 202, code and Location; its page sent alice onward.
        (chained,) = c.directed
        assert chained.url == parties.intermediary.url + "/aauth/chain/interact"
        assert ("resource GET", 202) in c.notes
        assert ("resource poll", 200) in c.notes
        # Never the upstream sub: the downstream person is alice's sub for the downstream.
        upstream = decode_unverified(c.flow.person_tokens[parties.intermediary.url]).payload
        assert who["downstream"]["sub"] != upstream["sub"]

        # The code was single use.
        used = parties.client.get(chained.link, follow_redirects=False)
        assert used.status_code == 410
    finally:
        c.person.close()


def test_parent_mediated_sub_agent(parties: Parties) -> None:
    parent = _caller(parties, PARENT_AGENT, parties.ps_auto)
    child_agent = parent.flow.agent.spawn_dev(parties.provider.url, "helper", client=parties.client)
    assert child_agent.agent_id == parties.agent_id(f"{PARENT_AGENT}+helper")
    child = AgentFlow(
        child_agent,
        parties.client,
        interact=parent.flow.interact,
        mediator=ParentMediated(parent.flow, child_agent),
        wait=10,
    )
    try:
        response = child.request("GET", parties.downstream.url + "/data")
        parent.person.join()
        assert parent.person.errors == []
        assert response.status_code == 200, response.text
        assert response.json() == {"scope": "data.read"}
        # Tokens bound to the sub-agent's key, asked for by the parent.
        auth = decode_unverified(child.auth_tokens[parties.downstream.url]).payload
        assert auth["cnf"]["jwk"]["x"] == child_agent.key.public_jwk()["x"]
        assert ("PS person_token", 202) in parent.notes  # alice bound the parent
        assert any(note == "PS auth_token" for note, _ in parent.notes)

        # The PS refuses a token request the sub-agent signs itself.
        with pytest.raises(FlowError) as refused:
            AgentFlow(
                child_agent, parties.client, interact=parent.flow.interact,
                ps=parties.ps_auto.url,
            ).person_token(parties.downstream.url)  # fmt: skip
        assert refused.value.error == "invalid_request"
    finally:
        parent.person.close()
