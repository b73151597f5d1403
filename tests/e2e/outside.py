"""The loopback world an outside agent meets: its own agent provider (ours, in a thread, with
the id the test chooses), the example Person Server with a scripted person, and the example
resources trusting that PS.  The outside agent brings its key; the test signs with its
library."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from aauth_server.agent import AgentProvider
from aauth_server.fields import parse_aauth_requirement
from aauth_server.keys.jwk import PrivateKey
from aauth_server.tokens.aauth import mint_agent_token
from example_apps._procs import AppSpec, RunningApp, running_apps
from example_apps.demo import RESOURCES
from example_apps.three_party import ScriptedPerson
from tests.threaded_uvicorn import ThreadedUvicorn


@dataclass
class Outside:
    client: httpx.Client
    ps: RunningApp
    resources: dict[str, RunningApp]
    #: The outside agent's agent token: ``sub`` as the test chose it, ``ps`` the example PS.
    agent_token: str
    password: str

    def approve(self, started: httpx.Response) -> str:
        """Alice opens the interaction link of the PS's ``202`` and approves; returns the
        pending URL."""
        assert started.status_code == 202, started.text
        requirement = parse_aauth_requirement(started.headers["aauth-requirement"])
        assert requirement.requirement == "interaction", started.headers
        person = ScriptedPerson(self.ps.url, password=self.password)
        try:
            person.open(f"{requirement.url}?code={requirement.code}")
            person.approve()
        finally:
            person.close()
        return self.ps.url + started.headers["location"].removeprefix(self.ps.url)


@contextmanager
def outside_world(agent: str, jwk: Mapping[str, str], password: str) -> Iterator[Outside]:
    """Servers for an outside agent whose id is ``agent`` (``aauth:local@127.0.0.1``, the
    port left out as other stacks write it) and whose public key is ``jwk``."""
    holder: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await holder[0](scope, receive, send)

    provider = ThreadedUvicorn(app, lifespan="off")
    provider_key = PrivateKey.generate("Ed25519", kid="outside-ap")
    holder.append(AgentProvider(provider.origin, provider_key, dev_loopback=True).asgi())
    provider.start()
    ps_spec = AppSpec(
        "person-server", "example_apps.person_server", ("--dev", "--password", password)
    )
    try:
        with running_apps([ps_spec]) as (ps,):
            specs = [AppSpec(s.name, s.module, ("--dev", "--ps", ps.url)) for s in RESOURCES]
            token = mint_agent_token(
                provider_key,
                iss=provider.origin,
                sub=agent,
                cnf_jwk=dict(jwk),
                now=time.time(),
                ps=ps.url,
                dev_loopback=True,
            )
            with (
                running_apps(specs) as apps,
                httpx.Client(timeout=20, trust_env=False) as client,
            ):
                yield Outside(client, ps, {a.name: a for a in apps}, token, password)
    finally:
        provider.stop()
