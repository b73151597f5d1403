"""An auth token of the example Access Server is accepted by the example resource (four-party,
issue 11 item 6): the resource (``--as``) answers the agent's person token with a resource
token for the AS, the PS (this test, signing as itself) takes it to the AS, and the agent's
next call with the AS's auth token is served.  Real processes on loopback."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import httpx

from aauth_server.agent.client import AAuthSigner
from example_apps._procs import AppSpec, running_apps
from tests.access.wire_world import loopback_parties

RESOURCE_TOKEN = re.compile(r'requirement=auth-token; resource-token="([^"]+)"')


def test_the_resource_serves_an_auth_token_of_the_access_server() -> None:
    with loopback_parties() as parties:
        as_spec = AppSpec(
            "access-server",
            "example_apps.access_server",
            ("--dev", "--trust-ps", parties.ps.issuer),
        )
        with running_apps([as_spec]) as (access,):
            rs_spec = AppSpec(
                "resource",
                "example_apps.starlette_resource",
                ("--dev", "--ps", parties.ps.issuer, "--as", access.url),
            )
            with running_apps([rs_spec]) as (resource,), httpx.Client(timeout=10) as http:
                wire = replace(parties, as_url=access.url)
                person_token = wire.person_token(aud=resource.url)
                first = http.get(
                    resource.url + "/data", auth=AAuthSigner(wire.agent_key, person_token)
                )
                assert first.status_code == 401
                match = RESOURCE_TOKEN.search(first.headers["aauth-requirement"])
                assert match is not None
                body = {
                    "resource_token": match.group(1),
                    "agent_token": wire.agent_token(),
                    "presented_token": person_token,
                }
                issued = wire.send("POST", "/token", body)
                assert issued.status == 200, issued.body
                auth_token = json.loads(issued.body)["auth_token"]
                served = http.get(
                    resource.url + "/data", auth=AAuthSigner(wire.agent_key, auth_token)
                )
                assert served.status_code == 200, served.text
                assert served.json() == {"scope": "data.read"}
