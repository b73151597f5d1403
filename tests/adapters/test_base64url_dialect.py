"""The unpadded base64url ``Signature`` dialect (issue 9 item 3, GUIDE section 5) through every
adapter and the Person Server.

Requests are signed correctly and then spelled as that stack spells them,
``sig=:<unpadded base64url>:``; each one really uses ``-`` or ``_`` (tests/dialects.py).  With
``accept_base64url`` on (the default) every endpoint answers as it answers the canonical
spelling (200, or 202 where the endpoint defers); with it off the field stays refused.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.person import DefaultPolicy, PersonServer, PersonServerConfig
from aauth_server.resource import ResourceConfig
from aauth_server.tokens.jwt import decode_unverified
from tests.adapters import (
    harness_django,
    harness_flask,
    harness_person_django,
    harness_person_flask,
    harness_person_starlette,
    harness_starlette,
)
from tests.dialects import dialect_request, signature_member
from tests.person.ps_harness import ALICE, PsWorld
from tests.support import PS_ISSUER, RESOURCE, World

ResourceSend = Callable[[ResourceConfig, HttpRequest], HttpResponse]

RESOURCE_SENDERS: dict[str, ResourceSend] = {
    "starlette": harness_starlette.send,
    "flask": harness_flask.send,
    "flask-async-views": lambda c, r: harness_flask.send(c, r, async_views=True),
    "django-wsgi": harness_django.send,
    "django-asgi": lambda c, r: harness_django.send(c, r, asgi=True),
}


def _body(response: HttpResponse) -> Any:
    return json.loads(response.body)


def _bearer(w: World, path: str, token: str, method: str = "GET", body: bytes = b"") -> HttpRequest:
    return dialect_request(
        lambda attempt: w.signed(method, path, token=token, body=body, created=w.now() - attempt)
    )


@pytest.mark.parametrize("framework", RESOURCE_SENDERS)
def test_agent_token_request_in_the_dialect_gets_200(framework: str) -> None:
    world = World()
    request = dialect_request(lambda attempt: world.signed(created=world.now() - attempt))
    response = RESOURCE_SENDERS[framework](world.resource_config(), request)
    assert response.status == 200, response.body
    assert _body(response) == {"agent": world.agent_id}


@pytest.mark.parametrize("framework", RESOURCE_SENDERS)
def test_person_and_auth_token_requests_in_the_dialect(framework: str) -> None:
    world = World()
    send = RESOURCE_SENDERS[framework]
    config = world.resource_config()
    person = world.person_token()
    profile = send(config, _bearer(world, "/profile", person))
    assert profile.status == 200, profile.body
    assert _body(profile)["sub"] == "user-7f3c"
    # A body covered by content-type and content-digest, as that stack sends a POST.
    write = send(
        config, _bearer(world, "/data", world.auth_token("data.write"), "POST", b'{"a":1}')
    )
    assert write.status == 200, write.body
    assert _body(write) == {"scope": "data.write", "written": True}
    # A deferred endpoint holds the call: 202 with a pending URL, as for any spelling.
    held = send(config, _bearer(world, "/deferred", person))
    assert held.status == 202, held.body
    assert (held.header("location") or "").startswith(RESOURCE + "/")


@pytest.mark.parametrize("framework", RESOURCE_SENDERS)
def test_the_dialect_is_refused_when_the_setting_is_off(framework: str) -> None:
    world = World()
    request = dialect_request(lambda attempt: world.signed(created=world.now() - attempt))
    response = RESOURCE_SENDERS[framework](world.resource_config(accept_base64url=False), request)
    assert response.status == 401
    assert response.header("signature-error") == "error=invalid_signature"
    assert _body(response)["error"] == "invalid_signature"


# -- the Person Server -------------------------------------------------------------------------

PsSend = Callable[[PersonServerConfig, HttpRequest], HttpResponse]
PsFor = Callable[[PsWorld], PersonServer]


def _core(pw: PsWorld, request: HttpRequest) -> HttpResponse:
    return pw.app.send(request)


def _core_async(pw: PsWorld, request: HttpRequest) -> HttpResponse:
    return asyncio.run(pw.app.asend(request))


PS_SENDERS: dict[str, tuple[Callable[[PsWorld, HttpRequest], HttpResponse], PsFor]] = {
    "core-sync": (_core, lambda pw: pw.ps),
    "core-async": (_core_async, lambda pw: pw.ps),
    "starlette": (
        lambda pw, r: harness_person_starlette.send(pw.config, r),
        lambda pw: harness_person_starlette.person_server_for(pw.config),
    ),
    "flask": (
        lambda pw, r: harness_person_flask.send(pw.config, r),
        lambda pw: harness_person_flask.person_server_for(pw.config),
    ),
    "django-wsgi": (
        lambda pw, r: harness_person_django.send(pw.config, r),
        lambda pw: harness_person_django.person_server_for(pw.config),
    ),
    "django-asgi": (
        lambda pw, r: harness_person_django.send(pw.config, r, asgi=True),
        lambda pw: harness_person_django.person_server_for(pw.config),
    ),
}


def _ps_post(pw: PsWorld, path: str, body: dict[str, Any]) -> HttpRequest:
    now = int(pw.clock.now())
    return dialect_request(lambda attempt: pw.post(path, body, created=now - attempt))


def _bind(ps: PersonServer, pw: PsWorld) -> None:
    claims = decode_unverified(pw.world.agent_token).payload
    assert ps.bindings.bind(str(claims["iss"]), str(claims["sub"]), ALICE, 3600)


@pytest.mark.parametrize("mount", PS_SENDERS)
def test_person_server_answers_the_dialect_with_202_then_200(mount: str) -> None:
    send, ps_for = PS_SENDERS[mount]
    agent = World().agent_id
    pw = PsWorld(
        policy=DefaultPolicy(auto_approve_agents=(agent,), auto_approve_scopes=("data.read",))
    )
    body = {"resource": RESOURCE, "capabilities": ["interaction"]}
    # An agent not yet bound to a person: the PS needs the person (202 interaction).
    pending = send(pw, _ps_post(pw, pw.config.person_token_path, body))
    assert pending.status == 202, pending.body
    assert (pending.header("aauth-requirement") or "").startswith("requirement=interaction")

    _bind(ps_for(pw), pw)
    issued = send(pw, _ps_post(pw, pw.config.person_token_path, body))
    assert issued.status == 200, issued.body
    person_token = _body(issued)["person_token"]
    assert decode_unverified(person_token).payload["iss"] == PS_ISSUER

    # The auth token endpoint: a POST whose body the signature covers.
    presented = pw.person_token()
    auth_body = {
        "resource_token": pw.resource_token(presented),
        "presented_token": presented,
        "capabilities": ["interaction"],
    }
    auth = send(pw, _ps_post(pw, pw.config.auth_token_path, auth_body))
    assert auth.status == 200, auth.body
    assert decode_unverified(_body(auth)["auth_token"]).payload["scope"] == "data.read"


def test_the_dialect_helper_spells_what_that_stack_sends() -> None:
    world = World()
    request = dialect_request(lambda attempt: world.signed(created=world.now() - attempt))
    member = signature_member(request)
    assert member.startswith(":") and member.endswith(":")
    assert set(member[1:-1]) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )
    assert len(member[1:-1]) == 86  # a 64-byte Ed25519 signature, unpadded
