"""The revocation cascade story (issue 11 item 6; digest 5.7), told against real servers.

The agent gets a person token and an auth token for the Starlette resource from the
example PS (the person approves on the consent page); the resource serves it.  Then the
agent's provider revokes the agent token at the PS, signed as itself (``jwks_uri``
scheme): the PS records it, cuts the agent off and revokes every person and auth token it
issued to that agent at the resource, and answers ``200`` only once the resource has
confirmed.  The resource now refuses the auth token (``401 Signature-Error:
error=revoked_jwt``, with ``requirement=person-token``) and the person token, and the PS
refuses the agent token itself.

The agent provider runs inside this process (uvicorn on a thread), because revoking is
something only the provider that issued the agent token can do: it signs with its own key.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from aauth_server.agent import Agent, AgentProvider
from aauth_server.agent.flow import AgentFlow, FlowError, Interaction
from aauth_server.keys.egress import EgressPolicy
from aauth_server.outbound import OutboundClient, ServerSigner
from aauth_server.revocation_client import REVOKED, RevocationClient
from aauth_server.tokens.aauth import DWK_AGENT
from aauth_server.tokens.jwt import decode_unverified

from ._procs import AppSpec
from .demo import DemoContext, Story, abbreviate
from .three_party import PASSWORD, ScriptedPerson, error_of, requirement, say, show

NAME = "cascade"


@contextmanager
def provider_on_loopback() -> Iterator[AgentProvider]:
    """An agent provider (open dev enrollment) under uvicorn on 127.0.0.1, in this process."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    origin = f"http://127.0.0.1:{sock.getsockname()[1]}"
    provider = AgentProvider(origin, dev_loopback=True, dev_enrollment=True)
    config = uvicorn.Config(provider.asgi(), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def tell(ctx: DemoContext, provider: AgentProvider, ps_url: str, resource_url: str) -> None:
    def check(step: str, ok: bool, expected: str, got: str) -> None:
        ctx.report.check(NAME, step, ok, expected, got)

    provider.ps = ps_url
    agent = Agent.enroll_dev(provider.issuer, "cascade-agent", client=ctx.client)
    print(f"\nEnrolled agent {agent.agent_id} at the in-process provider {provider.issuer}")
    person = ScriptedPerson(ps_url)
    ctx.stack.callback(person.close)

    def interact(interaction: Interaction) -> None:
        def opens_and_approves() -> None:
            person.open(interaction.link)
            person.approve()

        say(f"\n  (agent) directing the user to {interaction.link}")
        person.act(opens_and_approves)

    flow = AgentFlow(agent, ctx.client, interact=interact, observe=show, wait=10)
    print("\n-- 1. the agent gets a person token and an auth token; the resource serves it")
    data = flow.request("GET", resource_url + "/data")
    person.join()
    check("data", data.status_code == 200, "200 from /data", f"{data.status_code}")
    auth_token = flow.auth_tokens.get(resource_url, "")
    person_token = flow.person_tokens.get(resource_url, "")

    print("\n-- 2. the agent provider revokes the agent token at the PS (signed as itself)")
    claims = decode_unverified(agent.token).payload
    endpoint = str(flow.ps_metadata()["revocation_endpoint"])
    signer = ServerSigner(provider.key, provider.issuer, DWK_AGENT)
    outbound = OutboundClient(signer, EgressPolicy(dev_loopback=True))
    try:
        started = time.monotonic()
        result = RevocationClient(outbound).revoke(
            endpoint,
            str(claims["jti"]),
            float(claims["exp"]),  # type: ignore[arg-type]
        )
        took = time.monotonic() - started
    finally:
        outbound.close()
    print(f"  > POST {endpoint} {{jti: {abbreviate(str(claims['jti']))}, exp}}")
    print(f"  < {result.status} after {result.attempts} exchange(s), {took:.2f} s")
    check(
        "revoked",
        result.status == REVOKED,
        "200 once the resource has confirmed every downstream revocation",
        result.status,
    )

    print("\n-- 3. the resource refuses the auth token; the PS refuses the agent token")
    refused = flow._send("resource GET", "GET", resource_url + "/data", auth_token, None)
    check(
        "auth-token-refused",
        refused.status_code == 401
        and error_of(refused) == "revoked_jwt"
        and requirement(refused) == "person-token",
        "401 Signature-Error: error=revoked_jwt, requirement=person-token",
        f"{refused.status_code} {error_of(refused)} requirement={requirement(refused)}",
    )
    profile = flow._send("resource GET", "GET", resource_url + "/profile", person_token, None)
    check(
        "person-token-refused",
        profile.status_code == 401 and error_of(profile) == "revoked_jwt",
        "401 revoked_jwt for the person token too",
        f"{profile.status_code} {error_of(profile)}",
    )
    again = flow._send(
        "PS person_token",
        "POST",
        str(flow.ps_metadata()["person_token_endpoint"]),
        agent.token,
        {"resource": resource_url},
    )
    check(
        "agent-token-refused",
        again.status_code == 401 and error_of(again) == "revoked_jwt",
        "401 revoked_jwt for the agent token at the PS",
        f"{again.status_code} {error_of(again)}",
    )


def demo_story(ctx: DemoContext) -> None:
    """``make demo``'s cascade story: its own PS and Starlette resource (subprocesses) and
    an in-process agent provider."""
    ps_args = ("--dev", "--password", PASSWORD, "--poll-interval", "1")
    (ps,) = ctx.start(
        [
            AppSpec(
                "person-server",
                "example_apps.person_server",
                (*ps_args, *ctx.store.args("cascade-ps")),
            )
        ]
    )
    resource_args = ("--dev", "--ps", ps.url, *ctx.store.args("cascade-resource"))
    (resource,) = ctx.start(
        [AppSpec("starlette", "example_apps.starlette_resource", resource_args)]
    )
    provider = ctx.stack.enter_context(provider_on_loopback())
    for name, url in (
        ("person-server", ps.url),
        ("starlette", resource.url),
        ("agent-provider", provider.issuer),
    ):
        print(f"  {name:<15} {url}")
    try:
        tell(ctx, provider, ps.url, resource.url)
    except (FlowError, httpx.HTTPError) as exc:
        ctx.report.failures.append(f"[{NAME}] stopped: {exc!r}")
        print(f"  [{NAME}] FAIL stopped: {exc!r}")


STORIES = [
    Story(
        "cascade",
        "revocation cascade: the agent token revoked at the PS -> the resource refuses the "
        "auth token (revoked_jwt)",
        demo_story,
    )
]

__all__: list[Any] = ["STORIES", "demo_story", "provider_on_loopback", "tell"]
