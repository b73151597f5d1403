"""AgentFlow owns the signing: an httpx client that already signs (``auth=AAuthSigner``)
cannot re-sign the flow's requests with the agent token (issue 9 item 1)."""

from __future__ import annotations

import httpx

from aauth_server.agent import AAuthSigner, Agent
from aauth_server.agent.flow import AgentFlow
from aauth_server.tokens.jwt import decode_unverified
from tests.agent.test_flow import ALICE, Env, Resource, _router
from tests.person.ps_harness import PsWorld
from tests.support import PS_ISSUER, RESOURCE


def _env(client_auth: bool) -> Env:
    ps = PsWorld()
    resource = Resource(ps)
    world = ps.world
    agent = Agent(world.agent_key, world.agent_token, world.agent_id)
    auth = AAuthSigner(world.agent_key, world.agent_token, clock=ps.clock) if client_auth else None
    client = httpx.Client(transport=_router(ps, resource), auth=auth)
    return Env(ps, resource, client, agent)


def _signed_with(request: httpx.Request) -> str:
    sk = request.headers["signature-key"]
    token = sk.split('jwt="', 1)[1].rstrip('"')
    return str(decode_unverified(token).header["typ"])


def test_a_client_with_aauth_signer_as_auth_reaches_the_resource() -> None:
    env = _env(client_auth=True)
    seen: list[tuple[str, str, int]] = []
    flow = env.flow(
        observe=lambda note, req, resp: (
            seen.append((note, _signed_with(req), resp.status_code))
            if "signature-key" in req.headers
            else seen.append((note, "-", resp.status_code))
        )
    )
    env.person_steps.append(lambda: env.ps.ps.consent.approve(env.open_directed(), ALICE))
    response = flow.request("GET", RESOURCE + "/profile")
    assert response.status_code == 200, response.text
    assert response.json()["sub"] == env.ps.sub_for(ALICE)
    # The retry carries the person token, not the agent token the client's auth holds; the
    # PS metadata fetch is unsigned although the client would sign it.
    assert seen == [
        ("resource GET", "aa-agent+jwt", 401),
        ("PS metadata", "-", 200),
        ("PS person_token", "aa-agent+jwt", 202),
        ("PS poll", "aa-agent+jwt", 200),
        ("resource GET", "aa-person+jwt", 200),
    ]


def test_the_flow_makes_and_closes_its_own_client_when_given_none() -> None:
    env = _env(client_auth=False)
    with AgentFlow(env.agent, interact=lambda i: None, ps=PS_ISSUER) as flow:
        own = flow.client
        assert isinstance(own, httpx.Client) and not own.is_closed
    assert own.is_closed
    # A client passed in stays the caller's to close.
    with AgentFlow(env.agent, env.client, interact=lambda i: None, ps=PS_ISSUER):
        pass
    assert not env.client.is_closed


def test_the_flow_answers_a_question_the_ps_policy_asks() -> None:
    from aauth_server.agent.flow import Clarification
    from aauth_server.person import Approve, AskAgent
    from tests.person.test_policy_questions import Scripted

    env = _env(client_auth=False)
    policy = Scripted([AskAgent("Which project?", options=("alpha", "beta")), Approve()])
    env.ps.config.policy = policy
    env.ps.bind()
    asked: list[Clarification] = []

    def clarify(question: Clarification) -> str:
        asked.append(question)
        return "alpha"

    flow = env.flow(clarify=clarify)
    response = flow.request("GET", RESOURCE + "/profile")
    assert response.status_code == 200, response.text
    assert asked == [Clarification("Which project?", None, ("alpha", "beta"))]
    assert policy.seen[-1].clarifications == (("Which project?", "alpha"),)
    assert env.directed == []  # nobody had to be sent anywhere
    assert env.notes == [
        "resource GET",
        "PS metadata",
        "PS person_token",
        "clarification answer",
        "PS poll",
        "resource GET",
    ]
