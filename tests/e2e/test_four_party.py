"""End to end, four parties on 127.0.0.1, each its own process under uvicorn: the example
Access Server (asking for a claim and a clarification), the example Person Server trusting
it (``--trust-as``), an agent provider whose tokens name the PS, and the Starlette resource
whose resource tokens name the AS (``--as``).

The flow runs with every server's pending state in memory and once on a real Redis (a unique
key prefix per run).  The agent is :class:`AgentFlow`; the person is scripted over HTTP as a
browser acts (session cookie, CSRF token from the page).
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
from aauth_server.fields import parse_aauth_requirement
from aauth_server.tokens.jwt import decode_unverified
from example_apps._procs import AppSpec, RunningApp, running_apps
from example_apps.four_party import ANSWER, CLAIM, QUESTION
from example_apps.three_party import PASSWORD, ScriptedPerson
from tests.redis_server import ensure_redis


@dataclass
class Parties:
    access: RunningApp
    ps: RunningApp
    provider: RunningApp
    resource: RunningApp
    client: httpx.Client
    store: str
    run: str


def _store(kind: str, name: str, run: str) -> tuple[str, ...]:
    if kind == "memory":
        return ()
    return ("--store", ensure_redis(), "--store-prefix", f"e2e-4p-{run}-{name}")


@pytest.fixture(scope="module", params=["memory", "redis"])
def parties(request: pytest.FixtureRequest) -> Iterator[Parties]:
    run = uuid.uuid4().hex
    kind = request.param
    as_args = ("--dev", "--require-claims", CLAIM, "--clarify", QUESTION)
    as_args += _store(kind, "as", run)[:2]  # its keys go under its own per-issuer prefix
    with running_apps([AppSpec("access-server", "example_apps.access_server", as_args)]) as (
        access,
    ):
        ps_args = ("--dev", "--framework", "starlette", "--password", PASSWORD)
        ps_args += ("--poll-interval", "1", "--trust-as", access.url, *_store(kind, "ps", run))
        with running_apps([AppSpec("person-server", "example_apps.person_server", ps_args)]) as (
            ps,
        ):
            others = [
                AppSpec("agent-provider", "example_apps.agent_provider", ("--dev", "--ps", ps.url)),
                AppSpec(
                    "starlette",
                    "example_apps.starlette_resource",
                    ("--dev", "--ps", ps.url, "--as", access.url, *_store(kind, "rs", run)),
                ),
            ]
            with (
                running_apps(others) as (provider, resource),
                httpx.Client(timeout=30, trust_env=False) as client,
            ):
                yield Parties(access, ps, provider, resource, client, kind, run)


@dataclass
class Seen:
    notes: list[tuple[str, httpx.Response]] = field(default_factory=list)
    directed: list[Interaction] = field(default_factory=list)
    questions: list[Clarification] = field(default_factory=list)


def test_four_party_flow_with_claims_and_clarification(parties: Parties) -> None:
    agent = Agent.enroll_dev(parties.provider.url, f"e2e-4p-{parties.store}", client=parties.client)
    person = ScriptedPerson(parties.ps.url)
    seen = Seen()

    def approves(link: str) -> None:
        person.open(link)
        person.approve()

    def interact(interaction: Interaction) -> None:
        seen.directed.append(interaction)
        person.act(lambda: approves(interaction.link))

    def clarify(asked: Clarification) -> str:
        seen.questions.append(asked)
        return ANSWER

    def observe(note: str, _request: httpx.Request, response: httpx.Response) -> None:
        seen.notes.append((note, response))
        if person.errors:
            raise FlowError(f"the scripted person failed: {person.errors[-1]}")

    flow = AgentFlow(
        agent, parties.client, interact=interact, clarify=clarify, observe=observe, wait=5
    )
    try:
        data = flow.request("GET", parties.resource.url + "/data")
        person.join()
    finally:
        person.close()
    assert person.errors == []
    assert data.status_code == 200, data.text
    assert data.json() == {"scope": "data.read"}

    # The resource's challenge carried a resource token for the AS.
    challenges = [r for n, r in seen.notes if n == "resource GET" and r.status_code == 401]
    auth_challenge = [
        r
        for r in challenges
        if parse_aauth_requirement(r.headers["aauth-requirement"]).requirement == "auth-token"
    ]
    assert auth_challenge, [(n, r.status_code) for n, r in seen.notes]
    rt = parse_aauth_requirement(auth_challenge[0].headers["aauth-requirement"]).resource_token
    assert rt is not None
    assert decode_unverified(rt).payload["aud"] == parties.access.url

    # The person approved at the PS (two consent pages: the person token, the auth token).
    assert len(seen.directed) == 2
    assert all(i.url.startswith(parties.ps.url + "/consent") for i in seen.directed)
    auth_202 = [r for n, r in seen.notes if n == "PS auth_token" and r.status_code == 202]
    assert (
        auth_202
        and parse_aauth_requirement(auth_202[0].headers["aauth-requirement"]).requirement
        == "interaction"
    )

    # The AS asked for a claim (the PS released alice's email) and a clarification (the
    # agent answered it through the PS).
    released = [line for line in parties.ps.output if line.startswith("released ")]
    assert any(CLAIM in line and parties.access.url in line for line in released), released
    assert [q.question for q in seen.questions] == [QUESTION]
    assert any(n == "clarification answer" and r.status_code == 202 for n, r in seen.notes)

    # The token the resource accepted is the AS's, bound to the agent, for alice's directed id.
    token = decode_unverified(flow.auth_tokens[parties.resource.url]).payload
    person_token = decode_unverified(flow.person_tokens[parties.resource.url]).payload
    assert token["iss"] == parties.access.url
    assert token["dwk"] == "aauth-access.json"
    assert token["ps"] == parties.ps.url
    assert token["aud"] == parties.resource.url
    assert token["sub"] == person_token["sub"]
    assert token["exp"] <= person_token["exp"]
    assert token["cnf"]["jwk"]["x"] == agent.key.public.jwk["x"]
    if parties.store == "redis":
        # Each server really kept its pending state in Redis (the PS's federated request,
        # the AS's pending request; the AS under its default per-issuer prefix).
        import redis

        client = redis.Redis.from_url(ensure_redis())
        try:
            host = parties.access.url.partition("://")[2]
            for pattern in ("e2e-4p-*-ps*", f"aauth:as:{host}*"):
                assert list(client.scan_iter(match=pattern, count=1000)), pattern
        finally:
            client.close()


def test_four_party_demo_story_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "example_apps.four_party"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    for step in (
        "resource-token-for-the-as",
        "person-approves-at-the-ps",
        "as-asks-a-claim",
        "as-asks-a-clarification",
        "auth-token-from-the-as",
        "resource-200",
    ):
        assert f"[four-party] PASS {step}:" in out, out
    assert "FAIL" not in out
