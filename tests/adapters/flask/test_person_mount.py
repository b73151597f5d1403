"""The Person Server mounted as a Flask blueprint answers exactly like the framework-free core.

Each flow runs in lockstep against ``PsApp`` (the core behind a bare router) and against the
Flask app of ``harness_person_flask``, one world (keys, clock) and two separate stores; every
response pair must be equal in status, headers and body bytes once the values the PS draws
at random (pending ids, interaction codes, token ``jti``) are replaced by their order of
appearance.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import pytest
from aauth_server_flask.person import person_blueprint, person_server_for
from flask import Flask

from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.person import DefaultPolicy, PersonServer, PersonServerConfig
from aauth_server.person.pages import ConsentPages, DemoLogin
from aauth_server.resource import ConfigurationError
from aauth_server.storage.memory import AsyncMemoryStore, MemoryState, MemoryStore
from aauth_server.tokens.jwt import decode_unverified, verify_jwt_signature
from tests.adapters import harness_person_flask as harness
from tests.person.ps_harness import ALICE, PsWorld, body_of
from tests.person.test_pages import PagesEnv, make_env
from tests.support import PS_ISSUER, RESOURCE

AGENT = "aauth:assistant@agent.example"
CODE = re.compile(r'code="([^"]+)"')
JWT = re.compile(rb"eyJ[\w-]+\.[\w-]+\.[\w-]+")
INTERACTION = {
    "type": "interaction",
    "url": "https://resource.example/interact",
    "code": "A1B2-C3D4",
    "capabilities": ["interaction"],
}

# A flow yields (name, request) to have it sent, or a number of seconds to advance the
# shared clock; it gets the response back and may call the consent API of its own PS.
Flow = Generator[tuple[str, HttpRequest] | float, HttpResponse | None, None]


@dataclass(frozen=True)
class Scenario:
    name: str
    build: Callable[[PsWorld, PersonServer], Flow]
    config: dict[str, Any] = field(default_factory=dict)


def _bind(pw: PsWorld, ps: PersonServer) -> None:
    claims = decode_unverified(pw.world.agent_token).payload
    assert ps.run(ps.bindings.bind_steps(str(claims["iss"]), str(claims["sub"]), ALICE, 3600))


def _interaction(response: HttpResponse | None) -> tuple[str, str]:
    assert response is not None and response.status == 202, response and response.body
    match = CODE.search(response.header("AAuth-Requirement") or "")
    assert match
    return response.header("Location") or "", match.group(1)


def _metadata(pw: PsWorld, ps: PersonServer) -> Flow:
    for path in ("/.well-known/aauth-person.json", "/jwks.json"):
        answer = yield path, HttpRequest("GET", PS_ISSUER + path, [])
        assert answer is not None and answer.status == 200
    assert answer is not None and body_of(answer) == {"keys": [pw.world.ps_key.public_jwk()]}


def _auto_approved(pw: PsWorld, ps: PersonServer) -> Flow:
    _bind(pw, ps)
    answer = yield "person token", pw.person_request()
    assert answer is not None and answer.status == 200, answer and answer.body
    assert "person_token" in body_of(answer)


def _interaction_then_poll(pw: PsWorld, ps: PersonServer) -> Flow:
    location, code = _interaction((yield "unbound agent", pw.person_request()))
    ps.consent.approve(ps.consent.open(code, ALICE).pending_id, ALICE)
    yield pw.config.poll_interval
    answer = yield "poll after approval", pw.poll(location)
    assert answer is not None and answer.status == 200 and "person_token" in body_of(answer)
    yield pw.config.poll_interval
    gone = yield "poll after delivery", pw.poll(location)
    assert gone is not None and gone.status == 410


def _auth_token(pw: PsWorld, ps: PersonServer) -> Flow:
    _bind(pw, ps)
    presented = pw.person_token()
    request = pw.auth_request(pw.resource_token(presented, "data.read"), presented)
    location, code = _interaction((yield "auth token request", request))
    ps.consent.approve(ps.consent.open(code, ALICE).pending_id, ALICE)
    yield pw.config.poll_interval
    answer = yield "poll for the auth token", pw.poll(location)
    assert answer is not None and answer.status == 200, answer and answer.body
    assert "auth_token" in body_of(answer)


def _clarification(pw: PsWorld, ps: PersonServer) -> Flow:
    location, code = _interaction((yield "start", pw.person_request(justification="Plan")))
    view = ps.consent.open(code, ALICE)
    ps.consent.ask(view.pending_id, ALICE, "Which calendar?", options=["work", "home"])
    yield pw.config.poll_interval
    asked = yield "poll sees the question", pw.poll(location)
    assert asked is not None and body_of(asked)["clarification"] == "Which calendar?"
    reply = {"action": "clarification_response", "clarification_response": "work"}
    answered = yield "clarification answer", pw.poll(location, body=reply)
    assert answered is not None and answered.status == 202
    assert ps.consent.view(view.pending_id, ALICE).clarifications == (("Which calendar?", "work"),)


def _cancel(pw: PsWorld, ps: PersonServer) -> Flow:
    location, _ = _interaction((yield "start", pw.person_request()))
    cancelled = yield "DELETE", pw.poll(location, method="DELETE")
    assert cancelled is not None and cancelled.status == 204
    yield pw.config.poll_interval
    gone = yield "poll after cancel", pw.poll(location)
    assert gone is not None and gone.status == 410


def _slow_down(pw: PsWorld, ps: PersonServer) -> Flow:
    location, _ = _interaction((yield "start", pw.person_request()))
    early = yield "early poll", pw.poll(location)
    assert early is not None and early.status == 429 and body_of(early)["error"] == "slow_down"


def _interaction_unavailable(pw: PsWorld, ps: PersonServer) -> Flow:
    answer = yield "interaction", pw.post(pw.config.interaction_path, INTERACTION)
    assert answer is not None and answer.status == 424
    assert body_of(answer)["error"] == "interaction_unavailable"


SCENARIOS = [
    Scenario("metadata and jwks", _metadata),
    Scenario(
        "bound agent auto-approved",
        _auto_approved,
        {"policy": DefaultPolicy(auto_approve_agents=(AGENT,))},
    ),
    Scenario("unbound agent: interaction, approval, poll", _interaction_then_poll),
    Scenario("auth token with a resource token", _auth_token),
    Scenario("clarification question and answer", _clarification),
    Scenario("DELETE cancels, then 410", _cancel),
    Scenario("slow_down", _slow_down, {"max_wait": 0}),
    Scenario("interaction endpoint 424", _interaction_unavailable),
]


class Normalised:
    """One side's responses with its random values replaced by their order of appearance."""

    def __init__(self, pw: PsWorld) -> None:
        self.pw = pw
        self.names: dict[str, str] = {}

    def _name(self, value: str, kind: str) -> str:
        return self.names.setdefault(value, f"<{kind}-{len(self.names)}>")

    def view(self, response: HttpResponse) -> tuple[int, list[tuple[str, str]], bytes, list[Any]]:
        location = response.header("Location")
        if location:
            self._name(urlsplit(location).path.rsplit("/", 1)[1], "id")
        code = CODE.search(response.header("AAuth-Requirement") or "")
        if code:
            self._name(code.group(1), "code")
        tokens = []
        body = response.body
        for raw in JWT.findall(body):
            jwt = decode_unverified(raw.decode())
            verify_jwt_signature(jwt, self.pw.world.ps_key.public)
            tokens.append((jwt.header, {k: v for k, v in jwt.payload.items() if k != "jti"}))
            body = body.replace(raw, self._name(raw.decode(), "jwt").encode())
        text = body.decode()
        headers = []
        for name, value in response.headers:
            if name.lower() == "content-length":
                continue  # the WSGI layer adds it; the core leaves it to the server
            headers.append((name.lower(), value))
        for value, placeholder in self.names.items():
            text = text.replace(value, placeholder)
            headers = [(n, v.replace(value, placeholder)) for n, v in headers]
        return response.status, headers, text.encode(), tokens


def run_both(scenario: Scenario) -> list[str]:
    """Run ``scenario`` against the core and the Flask mount in lockstep; the step names."""
    pw = PsWorld(**scenario.config)
    state = MemoryState()
    config = replace(
        pw.config,
        store=MemoryStore(state, clock=pw.clock),
        async_store=AsyncMemoryStore(state, clock=pw.clock),
    )
    senders: list[Callable[[HttpRequest], HttpResponse]] = [
        pw.app.send,
        lambda request: harness.send(config, request),
    ]
    flows = [scenario.build(pw, pw.ps), scenario.build(pw, harness.person_server_for(config))]
    views = [Normalised(pw), Normalised(pw)]
    steps: list[Any] = [next(flow) for flow in flows]
    names = []
    while True:
        replies: list[HttpResponse | None]
        if isinstance(steps[0], int | float):
            assert steps[1] == steps[0]
            pw.tick(steps[0])
            replies = [None, None]
        else:
            assert steps[1][0] == steps[0][0]
            replies = [send(step[1]) for send, step in zip(senders, steps, strict=True)]
            core, mounted = (
                v.view(r) for v, r in zip(views, replies, strict=True) if r is not None
            )
            assert mounted == core, steps[0][0]
            names.append(steps[0][0])
        done = []
        for index, (flow, reply) in enumerate(zip(flows, replies, strict=True)):
            try:
                steps[index] = flow.send(reply)
            except StopIteration:
                done.append(index)
        assert done in ([], [0, 1])
        if done:
            return names


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_mounted_ps_answers_like_the_core(scenario: Scenario) -> None:
    assert run_both(scenario)


def test_a_random_value_difference_is_detected() -> None:
    """The comparison is not blind: a changed header or claim breaks it."""
    pw = PsWorld()
    request = pw.person_request()
    answer = pw.app.send(request)
    tampered = HttpResponse(answer.status, [*answer.headers, ("Retry-After", "6")], answer.body)
    assert Normalised(pw).view(answer) != Normalised(pw).view(tampered)
    token = pw.person_token()
    other = pw.person_token(sub="someone-else")
    one = HttpResponse(200, [], json.dumps({"person_token": token}).encode())
    two = HttpResponse(200, [], json.dumps({"person_token": other}).encode())
    assert Normalised(pw).view(one) != Normalised(pw).view(two)


# -- mounting --------------------------------------------------------------------------------


def _prefixed_config(pw: PsWorld) -> PersonServerConfig:
    return replace(
        pw.config,
        person_token_path="/ps/person",
        auth_token_path="/ps/token",
        pending_prefix="/ps/pending/",
        interaction_path="/ps/interaction",
        consent_path="/ps/consent",
        revocation_path="/ps/revoke",
        jwks_path="/ps/jwks.json",
        mission_path="/ps/mission",
        permission_path="/ps/permission",
        audit_path="/ps/audit",
    )


def test_url_prefix_keeps_the_well_known_at_the_root() -> None:
    pw = PsWorld()
    config = _prefixed_config(pw)
    app = Flask("prefixed")
    app.register_blueprint(person_blueprint(config), url_prefix="/ps")
    well_known = PS_ISSUER + "/.well-known/aauth-person.json"
    metadata = body_of(harness.send_to(app, HttpRequest("GET", well_known, [])))
    assert metadata["person_token_endpoint"] == PS_ISSUER + "/ps/person"
    assert metadata["jwks_uri"] == PS_ISSUER + "/ps/jwks.json"
    jwks = harness.send_to(app, HttpRequest("GET", metadata["jwks_uri"], []))
    assert body_of(jwks) == {"keys": [pw.world.ps_key.public_jwk()]}
    started = harness.send_to(
        app, pw.post("/ps/person", {"resource": RESOURCE, "capabilities": ["interaction"]})
    )
    assert started.status == 202, started.body
    location = started.header("Location") or ""
    assert location.startswith(PS_ISSUER + "/ps/pending/")
    pw.tick()
    polled = harness.send_to(app, pw.poll(location))
    assert polled.status == 202 and body_of(polled) == {"status": "pending"}
    assert harness.send_to(app, HttpRequest("GET", PS_ISSUER + "/jwks.json", [])).status == 404


def test_paths_outside_the_url_prefix_are_refused_at_registration() -> None:
    pw = PsWorld()
    app = Flask("misprefixed")
    with pytest.raises(ConfigurationError, match="outside the blueprint's url_prefix"):
        app.register_blueprint(person_blueprint(pw.config), url_prefix="/ps")


def test_an_unknown_path_below_a_prefix_is_the_cores_404() -> None:
    pw = PsWorld()
    app = harness.app_for(pw.config)
    answer = harness.send_to(app, pw.poll(PS_ISSUER + "/pending/no-such-request-000"))
    assert answer.status == 404 and body_of(answer)["error"] == "not_found"
    assert answer.header("Content-Type") == "application/problem+json"


def test_person_server_for_names_the_mounted_core() -> None:
    pw = PsWorld()
    app = Flask("two")
    bp = person_blueprint(pw.ps)
    app.register_blueprint(bp)
    assert person_server_for(app) is pw.ps is bp.person_server
    with app.app_context():
        assert person_server_for() is pw.ps
    with pytest.raises(RuntimeError, match="no Person Server blueprint"):
        person_server_for(Flask("bare"))


def test_pages_must_share_the_mounted_core() -> None:
    pw = PsWorld()
    login = DemoLogin({ALICE: "pw"}, b"s" * 32)
    pages = ConsentPages(pw.ps, authenticate=login.authenticate, secret=b"s" * 32)
    assert person_blueprint(pw.config, pages=[pages, login]).person_server is pw.ps
    with pytest.raises(ConfigurationError, match="built on the Person Server"):
        person_blueprint(PersonServer(pw.config), pages=pages)


# -- the consent pages through Flask -----------------------------------------------------------


class FlaskPagesEnv(PagesEnv):
    """The pages test world with every request going through a Flask app."""

    def __init__(self, base: PagesEnv) -> None:
        self.__dict__.update(base.__dict__)
        self.app = Flask("pages")
        self.app.register_blueprint(person_blueprint(self.ps, pages=[self.pages, self.login]))
        self.agent_send = self.send

    def send(self, request: HttpRequest) -> HttpResponse:
        return harness.send_to(self.app, request)


def test_a_person_logs_in_and_approves_through_flask() -> None:
    env = FlaskPagesEnv(make_env())
    started = env.start_interaction(justification="Plan the **trip**")
    browser = env.logged_in()
    pending_id = browser.open_code(started.code)
    page = browser.get(f"/consent?request={pending_id}")
    assert "frame-ancestors 'none'" in (page.header("Content-Security-Policy") or "")
    assert "<strong>trip</strong>" in page.body.decode()
    decided = browser.decide(pending_id, "approve")
    assert decided.status == 200 and 'data-outcome="approved"' in decided.body.decode()
    delivered = env.poll(started)
    assert delivered.status == 200, delivered.body
    assert "person_token" in body_of(delivered)


def test_a_forged_decision_is_refused_through_flask() -> None:
    env = FlaskPagesEnv(make_env())
    started = env.start_interaction()
    browser = env.logged_in()
    pending_id = browser.open_code(started.code)
    fields = {"request": pending_id, "action": "approve", "callback": "", "csrf": "forged"}
    assert browser.post("/consent/decide", fields).status == 403
    assert env.poll(started).status == 202
