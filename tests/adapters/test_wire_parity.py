"""The three adapters answer byte-for-byte the same for the same scenario.

Each harness sends a request through its framework's in-process test client; this test
compares status, the AAuth response headers and the body bytes across frameworks.
"""

from __future__ import annotations

import json

import pytest

from aauth_server.http import HttpResponse
from tests.adapters import harness_django, harness_flask, harness_starlette
from tests.support import Scenario, World, assert_scenario, mode_scenarios, scenarios

HARNESSES = {
    "starlette": harness_starlette.send,
    "flask": harness_flask.send,
    "django": harness_django.send,
}
AAUTH_HEADERS = (
    "content-type",
    "aauth-requirement",
    "signature-error",
    "accept-signature-scheme",
    "accept-signature-alg",
)


def _aauth_view(response: HttpResponse) -> tuple[int, dict[str, str], bytes]:
    headers = {k.lower(): v for k, v in response.headers if k.lower() in AAUTH_HEADERS}
    return response.status, headers, response.body


@pytest.mark.parametrize("scenario", scenarios() + mode_scenarios(), ids=lambda s: s.name)
def test_same_bytes_in_every_framework(scenario: Scenario) -> None:
    world = World()
    request = scenario.build(world)
    before = list(scenario.before(world)) if scenario.before else []
    answers = {}
    for name, send in HARNESSES.items():
        # A fresh config (and store) per framework: no state is shared between them.
        config = world.resource_config(**scenario.config)
        for earlier in before:
            assert send(config, earlier).status < 400
        response = send(config, request)
        assert_scenario(scenario, response, world)
        answers[name] = _aauth_view(response)
    # Fresh resource tokens and pending URLs differ between runs: compare everything else.
    dynamic = set(scenario.header_prefixes)
    f_status, f_headers, f_body = answers["starlette"]
    for name, (status, headers, body) in answers.items():
        assert status == f_status, name
        for header in set(headers) | set(f_headers):
            if header not in dynamic:
                assert headers.get(header) == f_headers.get(header), (name, header)
        if not scenario.dynamic_body:
            assert body == f_body, f"{name} body differs from starlette for {scenario.name}"


def test_metadata_is_identical() -> None:
    world = World()
    from aauth_server.http import HttpRequest

    request = HttpRequest("GET", "https://resource.example/.well-known/aauth-resource.json", [])
    bodies = {name: send(world.resource_config(), request).body for name, send in HARNESSES.items()}
    assert len(set(bodies.values())) == 1
    assert json.loads(bodies["flask"])["issuer"] == "https://resource.example"
