"""One flow table run through the Access Server mounted in Starlette, Flask and Django (sync
and async views): each case's request -> the expected status and error code, then the
claims + clarification flow end to end, with the same bytes as the core."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from aauth_server.access import AccessRequest, Issue, RequireClaims, RequireClarification, Verdict
from aauth_server.http import HttpRequest
from aauth_server.keys.jwk import PrivateKey
from aauth_server.outbound import ServerSigner
from aauth_server.tokens.aauth import DWK_PERSON
from tests.access.as_harness import AsWorld, body_of, header, pending_path
from tests.access.mounts import FRAMEWORKS, sender
from tests.support import AS_ISSUER, PS_ISSUER


def four_party(request: AccessRequest) -> Verdict:
    """Claims first, then a clarification, then the token (the story of issue 11)."""
    if "email" not in request.claims:
        return RequireClaims(["email"])
    if not request.clarifications or request.clarifications[-1][1] is None:
        return RequireClarification("Which project is this for?")
    return Issue(claims={"email": request.claims["email"]})


def _impostor(aw: AsWorld) -> HttpRequest:
    signer = ServerSigner(PrivateKey.generate(kid="ps-1"), PS_ISSUER, DWK_PERSON, clock=aw.clock)
    return aw.token_request(aw.triple(), signer=signer)


FLOW: list[tuple[str, Callable[[AsWorld], HttpRequest], int, str | None]] = [
    (
        "metadata",
        lambda aw: HttpRequest("GET", AS_ISSUER + "/.well-known/aauth-access.json", [], b""),
        200,
        None,
    ),
    ("jwks", lambda aw: HttpRequest("GET", AS_ISSUER + "/jwks.json", [], b""), 200, None),
    ("claims asked", lambda aw: aw.token_request(aw.triple()), 202, None),
    ("not json", lambda aw: aw.token_request(b"[1"), 400, "invalid_request"),
    (
        "missing agent token",
        lambda aw: aw.token_request({**aw.triple(), "agent_token": ""}),
        400,
        "invalid_request",
    ),
    (
        "bad resource token",
        lambda aw: aw.token_request({**aw.triple(), "resource_token": "x"}),
        400,
        "invalid_resource_token",
    ),
    (
        "bad presented token",
        lambda aw: aw.token_request({**aw.triple(), "presented_token": "x"}),
        400,
        "invalid_presented_token",
    ),
    (
        "bad agent token",
        lambda aw: aw.token_request({**aw.triple(), "agent_token": "x"}),
        400,
        "invalid_agent_token",
    ),
    (
        "sub-agent token not a token",
        lambda aw: aw.token_request({**aw.triple(), "subagent_token": "x"}),
        400,
        "invalid_subagent_token",
    ),
    ("impostor PS", _impostor, 401, None),
    ("unknown pending", lambda aw: aw.signed("GET", "/pending/" + "a" * 32), 404, "not_found"),
    (
        "revoke without exp",
        lambda aw: aw.signed("POST", "/revoke", {"jti": "x"}),
        400,
        "invalid_request",
    ),
    (
        "revoke",
        lambda aw: aw.signed("POST", "/revoke", {"jti": "x", "exp": int(aw.clock.now()) + 60}),
        200,
        None,
    ),
]


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("case", [c[0] for c in FLOW])
def test_flow_table(framework: str, case: str) -> None:
    aw = AsWorld(policy=four_party)
    send = sender(aw, framework)
    _, make, status, error = next(c for c in FLOW if c[0] == case)
    request = make(aw)
    response = send(request)
    assert response.status == status, response.body
    if error is not None:
        assert body_of(response)["error"] == error
    # Byte for byte what the core answers to the same request (bar the 202's fresh id).
    if status not in (202, 200) or case in ("metadata", "jwks"):
        core = aw.send(make(aw)) if status == 401 else aw.send(request)
        assert core.status == response.status
        if status != 401:
            assert core.body == response.body


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_claims_then_clarification_then_token(framework: str) -> None:
    aw = AsWorld(policy=four_party)
    send = sender(aw, framework)
    first = send(aw.token_request(aw.triple()))
    assert header(first, "aauth-requirement") == "requirement=claims"
    path = pending_path(first)
    asked = send(aw.signed("POST", path, {"action": "claims", "claims": {"email": "a@x"}}))
    assert header(asked, "aauth-requirement") == "requirement=clarification"
    assert body_of(asked)["clarification"] == "Which project is this for?"
    refused = send(aw.signed("POST", path, {"action": "claims", "claims": {"sub": "x"}}))
    assert body_of(refused)["error"] == "invalid_request"
    answer = {"action": "clarification_response", "clarification_response": "Apollo"}
    assert send(aw.signed("POST", path, answer)).status == 202
    done = send(aw.signed("GET", path))
    assert done.status == 200 and "auth_token" in body_of(done)
    assert send(aw.signed("GET", path)).status == 410


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_wrong_method_and_unknown_paths(framework: str) -> None:
    aw = AsWorld()
    send = sender(aw, framework)
    assert send(HttpRequest("GET", AS_ISSUER + "/token", [], b"")).status in (404, 405)
    assert send(HttpRequest("GET", AS_ISSUER + "/nothing-here", [], b"")).status == 404


def test_under_a_prefix_in_starlette_and_flask() -> None:
    from aauth_server_flask.access import access_blueprint, access_server_for
    from aauth_server_starlette.access import AccessServerApp, access_paths
    from flask import Flask
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from aauth_server.resource.config import ConfigurationError

    aw = AsWorld(**access_paths("/as"))
    meta = aw.server.metadata()
    assert meta["auth_token_endpoint"] == AS_ISSUER + "/as/token"
    assert meta["jwks_uri"] == AS_ISSUER + "/as/jwks.json"
    app = Starlette(routes=AccessServerApp(aw.server, mount_path="/as").mounted())
    client = TestClient(app)
    assert client.get(AS_ISSUER + "/.well-known/aauth-access.json").json() == meta
    request = aw.signed("POST", "/as/token", aw.triple())
    answer = client.request("POST", request.url, headers=request.headers, content=request.body)
    assert answer.status_code == 200 and "auth_token" in answer.json()
    with pytest.raises(ConfigurationError):
        AccessServerApp(AsWorld().server, mount_path="/as")  # paths outside the mount
    flask_app = Flask("prefixed")
    flask_app.register_blueprint(access_blueprint(aw.server), url_prefix="/as")
    assert access_server_for(flask_app) is aw.server
    flask_client = flask_app.test_client()
    assert flask_client.get("/.well-known/aauth-access.json", base_url=AS_ISSUER).json == meta
    assert flask_client.get("/as/jwks.json", base_url=AS_ISSUER).status_code == 200
    with pytest.raises(ConfigurationError):
        Flask("outside").register_blueprint(access_blueprint(AsWorld().server), url_prefix="/as")
