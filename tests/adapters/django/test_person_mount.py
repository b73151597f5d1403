"""The Person Server mounted in Django answers as the core does.

One table of flows runs through ``tests.person.ps_harness.PsApp`` (the core behind a tiny
router) and through Django (``person_urls`` with sync views over the test Client, and
``person_async_urls`` with async views over the AsyncClient), each on a fresh store with the
clock reset: the final responses are equal byte for byte once the values that are random by
construction (pending ids, interaction codes, token ``jti``) are replaced by placeholders.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from aauth_server_django.person import (
    build_person_config,
    configure_person,
    get_person_mount,
    get_person_server,
)
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, override_settings
from django.urls import reverse

from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.person import WELL_KNOWN_PATH, DefaultPolicy, PersonServer, PersonServerConfig
from aauth_server.person.pages import ConsentPages, DemoLogin
from aauth_server.storage.memory import AsyncMemoryStore, MemoryState, MemoryStore
from aauth_server.tokens.jwt import decode_unverified
from tests.adapters import harness_person_django as harness
from tests.adapters.harness_django import configure_django
from tests.person.ps_harness import ALICE, T0, PsApp, PsWorld, Sender, body_of, sender
from tests.support import PS_ISSUER, RESOURCE

configure_django()

AGENT = "aauth:assistant@agent.example"
CODE = re.compile(r'code="([^"]+)"')
TRANSPORTS = pytest.mark.parametrize("asgi", [False, True], ids=["sync-views", "async-views"])


@dataclass
class Side:
    """One run of a flow: the shared world, and the PS and sender of one mount."""

    pw: PsWorld
    config: PersonServerConfig
    send: Sender
    ps: PersonServer

    def bind(self) -> None:
        claims = decode_unverified(self.pw.world.agent_token).payload
        assert self.ps.run(
            self.ps.bindings.bind_steps(str(claims["iss"]), str(claims["sub"]), ALICE, 3600)
        )

    def start(self, request: HttpRequest | None = None) -> tuple[str, str]:
        """A token request that needs the person: (Location, code)."""
        response = self.send(request or self.pw.person_request())
        assert response.status == 202, response.body
        match = CODE.search(response.header("aauth-requirement") or "")
        assert match is not None
        return response.header("location") or "", match.group(1)

    def approve(self, code: str) -> None:
        view = self.ps.consent.open(code, ALICE)
        self.ps.consent.approve(view.pending_id, ALICE)
        self.pw.tick()


@dataclass(frozen=True)
class Flow:
    name: str
    build: Callable[[Side], HttpRequest]
    status: int
    config: dict[str, Any] = field(default_factory=dict)


def _metadata(s: Side) -> HttpRequest:
    return HttpRequest("GET", PS_ISSUER + WELL_KNOWN_PATH, [])


def _jwks(s: Side) -> HttpRequest:
    return HttpRequest("GET", PS_ISSUER + s.config.jwks_path, [])


def _unsigned(s: Side) -> HttpRequest:
    body = json.dumps({"resource": "https://resource.example"}).encode()
    return HttpRequest("POST", PS_ISSUER + "/person", [("Content-Type", "application/json")], body)


def _auto_approved(s: Side) -> HttpRequest:
    s.bind()
    s.pw.tick(100)
    return s.pw.person_request()


def _interaction(s: Side) -> HttpRequest:
    return s.pw.person_request()


def _approved_poll(s: Side) -> HttpRequest:
    location, code = s.start()
    s.approve(code)
    return s.pw.poll(location)


def _auth_token(s: Side) -> HttpRequest:
    s.bind()
    presented = s.pw.person_token()
    location, code = s.start(
        s.pw.auth_request(s.pw.resource_token(presented, "data.read data.write"), presented)
    )
    s.approve(code)
    return s.pw.poll(location)


def _asked(s: Side) -> str:
    location, code = s.start(s.pw.person_request(justification="Plan a *trip*"))
    view = s.ps.consent.open(code, ALICE)
    s.ps.consent.ask(view.pending_id, ALICE, "Which calendar?", options=["work", "home"])
    s.pw.tick()
    return location


def _clarification_poll(s: Side) -> HttpRequest:
    return s.pw.poll(_asked(s))


def _clarification_answer(s: Side) -> HttpRequest:
    answer = {"action": "clarification_response", "clarification_response": "work"}
    return s.pw.poll(_asked(s), body=answer)


def _cancel(s: Side) -> HttpRequest:
    location, _ = s.start()
    return s.pw.poll(location, method="DELETE")


def _gone_after_cancel(s: Side) -> HttpRequest:
    location, _ = s.start()
    assert s.send(s.pw.poll(location, method="DELETE")).status == 204
    s.pw.tick()
    return s.pw.poll(location)


def _slow_down(s: Side) -> HttpRequest:
    location, _ = s.start()
    return s.pw.poll(location)


def _relay(capabilities: list[str]) -> Callable[[Side], HttpRequest]:
    def build(s: Side) -> HttpRequest:
        url = "https://resource.example/interact"
        body = {"type": "interaction", "url": url, "code": "A1B2-C3D4"}
        return s.pw.post(s.config.interaction_path, {**body, "capabilities": capabilities})

    return build


AUTO = {"policy": DefaultPolicy(auto_approve_agents=(AGENT,))}
FLOWS = [
    Flow("metadata", _metadata, 200),
    Flow("jwks", _jwks, 200),
    Flow("unsigned person-token request", _unsigned, 401),
    Flow("bound agent auto-approved", _auto_approved, 200, AUTO),
    Flow("unbound agent gets an interaction", _interaction, 202),
    Flow("approved person token delivered", _approved_poll, 200),
    Flow("auth token with a resource token", _auth_token, 200),
    Flow("clarification question on poll", _clarification_poll, 202),
    Flow("clarification answer POST", _clarification_answer, 202),
    Flow("DELETE cancels", _cancel, 204),
    Flow("gone after cancel", _gone_after_cancel, 410),
    Flow("slow_down", _slow_down, 429, {"max_wait": 0}),
    Flow("interaction endpoint 424", _relay(["interaction"]), 424),
    Flow("interaction endpoint user_unreachable", _relay([]), 403),
]

_JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")
_IDS = re.compile(r"(/pending/|/relay/|/consent/request/)[\w-]+")


def _jwt_without_jti(match: re.Match[str]) -> str:
    jwt = decode_unverified(match.group())
    payload = {k: v for k, v in jwt.payload.items() if k != "jti"}
    return "<jwt " + json.dumps([dict(jwt.header), payload], sort_keys=True) + ">"


def _stable(text: str) -> str:
    text = _JWT.sub(_jwt_without_jti, text)
    return CODE.sub('code="<code>"', _IDS.sub(r"\1<id>", text))


def _wire(response: HttpResponse) -> tuple[int, dict[str, str], str]:
    joined: dict[str, list[str]] = {}
    for name, value in response.headers:
        joined.setdefault(name.lower(), []).append(value)
    headers = {name: _stable(", ".join(values)) for name, values in joined.items()}
    return response.status, headers, _stable(response.body.decode())


def _run(pw: PsWorld, flow: Flow, mount: str, asgi: bool) -> HttpResponse:
    pw.clock.t = T0  # both runs see the same times
    state = MemoryState()
    config = replace(
        pw.config,
        store=MemoryStore(state, clock=pw.clock),
        async_store=AsyncMemoryStore(state, clock=pw.clock),
        **flow.config,
    )
    if mount == "core":
        app = PsApp(config)
        side = Side(pw, config, sender(app, "async" if asgi else "sync"), app.ps)
    else:
        ps = harness.person_server_for(config)
        side = Side(pw, config, lambda r: harness.send(config, r, asgi=asgi), ps)
    return side.send(flow.build(side))


@TRANSPORTS
@pytest.mark.parametrize("flow", FLOWS, ids=lambda f: f.name)
def test_django_answers_as_the_core(flow: Flow, asgi: bool) -> None:
    pw = PsWorld()
    core = _run(pw, flow, "core", asgi)
    django = _run(pw, flow, "django", asgi)
    assert core.status == flow.status, core.body
    c_status, c_headers, c_body = _wire(core)
    d_status, d_headers, d_body = _wire(django)
    assert d_status == c_status
    assert d_body == c_body
    # Every header the core wrote, with its value; Django adds none of its own here.
    assert d_headers == c_headers


# -- beyond the table ------------------------------------------------------------------------


def test_the_table_covers_both_delivered_tokens() -> None:
    pw = PsWorld()
    flows = {flow.name: flow for flow in FLOWS}
    person = body_of(_run(pw, flows["approved person token delivered"], "django", False))
    auth = body_of(_run(pw, flows["auth token with a resource token"], "django", False))
    assert decode_unverified(person["person_token"]).header["typ"] == "aa-person+jwt"
    assert decode_unverified(auth["auth_token"]).payload["scope"] == "data.read data.write"


@TRANSPORTS
def test_other_methods_get_405_and_other_paths_404(asgi: bool) -> None:
    pw = PsWorld()
    put = harness.send(pw.config, HttpRequest("PUT", PS_ISSUER + "/person", []), asgi=asgi)
    assert put.status == 405 and put.header("allow") == "POST"
    pending = HttpRequest("PUT", PS_ISSUER + "/pending/abc", [])
    assert harness.send(pw.config, pending, asgi=asgi).header("allow") == "DELETE, GET, POST"
    elsewhere = HttpRequest("GET", PS_ISSUER + "/elsewhere", [])
    assert harness.send(pw.config, elsewhere, asgi=asgi).status == 404
    head = HttpRequest("HEAD", PS_ISSUER + WELL_KNOWN_PATH, [])
    assert harness.send(pw.config, head, asgi=asgi).status == 200


def test_the_resource_urls_still_work_beside_the_ps() -> None:
    pw = PsWorld()
    metadata = HttpRequest("GET", "https://resource.example/.well-known/aauth-resource.json", [])
    response = harness.send(pw.config, metadata)
    assert response.status == 200 and body_of(response)["issuer"] == "https://resource.example"
    with harness.mounted(pw.config):
        assert reverse("aauth_person:metadata") == WELL_KNOWN_PATH
        assert reverse("aauth:metadata") == "/.well-known/aauth-resource.json"


def test_public_origin_wins_over_host() -> None:
    public = "https://login.ps.example"
    pw = PsWorld(public_origin=public)
    body = json.dumps({"resource": RESOURCE, "capabilities": ["interaction"]}).encode()
    signed = pw.world.signed("POST", "/person", body=body, origin=public)
    # Behind a proxy the request arrives with the internal Host; the agent signed the public one.
    forwarded = replace(signed, url=PS_ISSUER + "/person")
    response = harness.send(pw.config, forwarded)
    assert response.status == 202, response.body
    assert (response.header("location") or "").startswith(public + "/pending/")


# -- settings --------------------------------------------------------------------------------


def _settings(pw: PsWorld) -> dict[str, Any]:
    return {
        "ISSUER": PS_ISSUER,
        "SIGNING_KEY": pw.world.ps_key.private_jwk(),
        "SUBJECT_SECRET": "a-settings-file-secret-of-32-chars!",
        "SCOPES_SUPPORTED": ["openid"],
        "MAX_WAIT": 5,
    }


def test_settings_build_the_ps_and_configure_person_wins() -> None:
    pw = PsWorld()
    try:
        configure_person(discovery=pw.world.discovery(), max_wait=7)
        with override_settings(AAUTH_PERSON=_settings(pw)):
            config = build_person_config()
            assert config.scopes_supported == ("openid",) and config.max_wait == 7
            assert config.subject_secret == b"a-settings-file-secret-of-32-chars!"
            assert config.signing_key.kid == "ps-1"
            ps = get_person_server()
            assert ps is get_person_mount().ps and ps.config.max_wait == 7
        with override_settings(AAUTH_PERSON={**_settings(pw), "MAX_WAIT": 9}):
            assert get_person_server() is not ps  # rebuilt when the settings change
    finally:
        configure_person()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "has no ISSUER"),
        ("nope", "must be a dict"),
        ({"ISSUER": PS_ISSUER, "COLOUR": "blue"}, "unknown setting 'COLOUR'"),
        ({"ISSUER": "http://ps.example"}, "not a server identifier"),
        ({"DEV_LOOPBACK": True, "ISSUER": "http://127.0.0.1:8000"}, "DEBUG is False"),
    ],
)
def test_bad_settings_are_improperly_configured(value: Any, message: str) -> None:
    pw = PsWorld()
    if isinstance(value, dict):
        value = {**_settings(pw), **value}
    with override_settings(AAUTH_PERSON=value, DEBUG=False):
        with pytest.raises(ImproperlyConfigured, match=re.escape(message)):
            build_person_config()


# -- the consent pages behind Django's CSRF middleware ----------------------------------------

SECRET = b"django-pages-secret-0123456789abcdef"
USERS = {ALICE: "wonderland"}


def _pages(pw: PsWorld) -> Callable[[PersonServer], list[Any]]:
    def build(ps: PersonServer) -> list[Any]:
        login = DemoLogin(USERS, SECRET, clock=pw.clock)
        return [ConsentPages(ps, authenticate=login.authenticate, secret=SECRET), login]

    return build


def _browser() -> Client:
    # enforce_csrf_checks: Django's CsrfViewMiddleware runs as it does for a real browser.
    return Client(enforce_csrf_checks=True, HTTP_HOST="ps.example")


def _form_post(browser: Client, target: str, form: dict[str, str]) -> Any:
    """What a browser sends for the pages' forms (``application/x-www-form-urlencoded``)."""
    return browser.post(
        target, urlencode(form), content_type="application/x-www-form-urlencoded", secure=True
    )


@pytest.mark.parametrize("decision", ["approve", "deny"])
def test_a_person_logs_in_and_decides_through_django(decision: str) -> None:
    pw = PsWorld()
    ps = harness.person_server_for(pw.config, _pages(pw))
    side = Side(pw, pw.config, lambda r: harness.send(pw.config, r), ps)
    location, code = side.start()
    browser = _browser()
    with harness.mounted(pw.config):
        page = browser.get(f"/consent?code={code}", secure=True)
        assert page.status_code == 303 and page["Location"].startswith("/login?next=")
        form = browser.get(page["Location"], secure=True)  # the sign-in form and its cookie
        token = re.search(r'name="csrf" value="([^"]+)"', form.content.decode())
        assert form.status_code == 200 and token is not None
        credentials = {"username": ALICE, "password": "wonderland", "next": f"/consent?code={code}"}
        login = _form_post(browser, "/login", {**credentials, "csrf": token.group(1)})
        assert login.status_code == 303
        redeemed = browser.get(login["Location"], secure=True)
        assert redeemed.status_code == 303  # the code is redeemed once, then the request id
        page = browser.get(redeemed["Location"], secure=True)
        assert page.status_code == 200
        assert "frame-ancestors 'none'" in page["Content-Security-Policy"]
        html = page.content.decode()
        csrf = re.search(r'name="csrf" value="([^"]+)"', html)
        pending = re.search(r'name="request" value="([^"]+)"', html)
        assert csrf is not None and pending is not None
        form = {
            "request": pending.group(1),
            "callback": "",
            "csrf": csrf.group(1),
            "action": decision,
        }
        forged = _form_post(browser, "/consent/decide", {**form, "csrf": "forged"})
        assert forged.status_code == 403  # the pages' own CSRF check, not Django's:
        assert b"CSRF verification failed" not in forged.content
        decided = _form_post(browser, "/consent/decide", form)
        assert decided.status_code in (200, 303), decided.content
    pw.tick()
    polled = side.send(pw.poll(location))
    if decision == "approve":
        assert polled.status == 200 and "person_token" in body_of(polled)
    else:
        assert polled.status == 403 and body_of(polled)["error"] == "denied"


def test_the_well_known_path_has_a_url_name() -> None:
    pw = PsWorld()
    with harness.mounted(pw.config):
        response = _browser().get(reverse("aauth_person:metadata"), secure=True)
    assert response.status_code == 200
    assert json.loads(response.content)["issuer"] == PS_ISSUER
    assert urlsplit(json.loads(response.content)["jwks_uri"]).path == "/jwks.json"
