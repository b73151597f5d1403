"""The three adapters answer byte-for-byte the same for the same scenario.

Each harness sends a request through its framework's in-process test client; this test
compares status, the AAuth response headers and the body bytes across frameworks.
"""

from __future__ import annotations

import json

import pytest

from aauth_server.http import HttpResponse
from tests.adapters import harness_django, harness_flask, harness_starlette
from tests.support import Scenario, World, scenarios

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


@pytest.mark.parametrize("scenario", scenarios(), ids=lambda s: s.name)
def test_same_bytes_in_every_framework(scenario: Scenario) -> None:
    world = World()
    request = scenario.build(world)
    answers = {}
    for name, send in HARNESSES.items():
        # A fresh config per framework: no verified-token cache is shared between them.
        answers[name] = _aauth_view(send(world.resource_config(), request))
    first = answers["starlette"]
    for name, answer in answers.items():
        assert answer == first, f"{name} differs from starlette for {scenario.name}"

    status, headers, body = first
    assert status == scenario.status
    for header, value in scenario.headers.items():
        assert headers.get(header) == value
    payload = json.loads(body)
    if scenario.error is not None:
        assert headers["content-type"] == "application/problem+json"
        assert payload["error"] == scenario.error
        assert payload["detail"]
    elif scenario.name.startswith("optional-unsigned"):
        assert payload == {"agent": None}
    else:
        assert payload == {"agent": world.agent_id}


def test_metadata_is_identical() -> None:
    world = World()
    from aauth_server.http import HttpRequest

    request = HttpRequest("GET", "https://resource.example/.well-known/aauth-resource.json", [])
    bodies = {name: send(world.resource_config(), request).body for name, send in HARNESSES.items()}
    assert len(set(bodies.values())) == 1
    assert json.loads(bodies["flask"])["issuer"] == "https://resource.example"
