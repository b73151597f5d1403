"""The consent pages without a browser: headers, sanitising, CSRF, login, codes, callbacks.

Everything runs against the real Person Server core (memory store) through a tiny
framework-free router; the agent side is the test world's signed requests.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pytest

from aauth_server.clock import FixedClock
from aauth_server.fields import parse_aauth_requirement
from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.keys.jwk import PrivateKey, jwk_thumbprint
from aauth_server.pagekit.csrf import SessionCodec, check_csrf, csrf_token
from aauth_server.person.config import PersonServerConfig
from aauth_server.person.markdown import render_markdown
from aauth_server.person.pages import CSP, ConsentPages, DemoLogin, callback_allowed, csp
from aauth_server.person.server import PersonServer
from aauth_server.person.subjects import Presence
from aauth_server.tokens.aauth import mint_resource_token
from tests.support import AP_ISSUER, PS_ISSUER, RESOURCE, World

ORIGIN = PS_ISSUER
SECRET = b"page-secret-for-tests-0123456789"
USERS = {"alice": "wonderland", "bob": "builder"}
DEFAULT_SCOPES = {"data.read": "Read your **data**", "data.write": "Change your data"}


@dataclass
class Agent:
    key: PrivateKey
    token: str


@dataclass
class Started:
    """An agent's pending request: where to poll and the interaction it was told about."""

    agent: Agent
    location: str
    url: str
    code: str


class PagesEnv:
    """A PS (memory store), its consent pages and the demo login behind one tiny router.

    ``clock`` is None for a real server (the browser test), else a FixedClock the helpers
    advance past ``poll_interval`` before each poll.
    """

    def __init__(
        self,
        *,
        clock: FixedClock | None = None,
        origin: str = PS_ISSUER,
        agent_metadata: Mapping[str, object] | None = None,
        resource_metadata: Mapping[str, object] | None = None,
        poll_interval: int = 5,
        dev_loopback: bool = False,
        max_mission_updates: int = 50,
    ) -> None:
        self.clock = clock
        self.world = World(clock=clock) if clock is not None else World()
        self.world.extra_documents[AP_ISSUER + "/.well-known/aauth-agent.json"] = {
            **self.world.provider.metadata(),
            **(agent_metadata or {}),
        }
        self.world.extra_documents[RESOURCE + "/.well-known/aauth-resource.json"] = {
            "issuer": RESOURCE,
            "jwks_uri": RESOURCE + "/jwks.json",
            "name": "Example Files",
            "scope_descriptions": DEFAULT_SCOPES,
            **(resource_metadata or {}),
        }
        self.world.extra_documents[RESOURCE + "/jwks.json"] = {
            "keys": [self.world.resource_key.public_jwk()]
        }
        self.origin = origin
        self.config = PersonServerConfig(
            issuer=PS_ISSUER,
            signing_key=self.world.ps_key,
            subject_secret=b"subject-secret-for-tests-0123456789",
            public_origin=origin,
            discovery=self.world.discovery(),
            clock=self.world.clock,
            store="memory://",
            poll_interval=poll_interval,
            # Development only: admits loopback http:// interaction URLs in relays.
            dev_loopback=dev_loopback,
            max_mission_updates=max_mission_updates,
        )
        self.ps = PersonServer(self.config)
        self.login = DemoLogin(USERS, SECRET, clock=self.world.clock)
        self.pages = ConsentPages(self.ps, authenticate=self.login.authenticate, secret=SECRET)
        self.agent = Agent(self.world.agent_key, self.world.agent_token)
        #: How agent requests reach the PS: in process here, over HTTP in the browser test.
        self.agent_send: Callable[[HttpRequest], HttpResponse] = self.send

    # -- the server side ----------------------------------------------------------------

    def send(self, request: HttpRequest) -> HttpResponse:
        for handler in (self.ps.handle, self.pages.handle, self.login.handle):
            response = handler(request)
            if response is not None:
                return response
        return HttpResponse(404)

    async def asend(self, request: HttpRequest) -> HttpResponse:
        for handler in (self.ps.ahandle, self.pages.ahandle, self.login.ahandle):
            response = await handler(request)
            if response is not None:
                return response
        return HttpResponse(404)

    def present(self, person: str) -> bool:
        return bool(self.ps.run(Presence.present_steps(person)))

    # -- the agent side -----------------------------------------------------------------

    def new_agent(self, local: str) -> Agent:
        key = PrivateKey.generate("Ed25519")
        return Agent(key, self.world.provider.issue(key.public, local))

    def agent_request(
        self, agent: Agent, method: str, url: str, body: object = None
    ) -> HttpRequest:
        parts = urlsplit(url)
        return self.world.signed(
            method,
            parts.path,
            body=b"" if body is None else json.dumps(body).encode(),
            token=agent.token,
            key=agent.key,
            origin=f"{parts.scheme}://{parts.netloc}",
        )

    def _advance(self) -> None:
        if self.clock is not None:
            self.clock.advance(self.config.poll_interval + 1)

    def start_interaction(
        self,
        *,
        justification: str | None = "Plan the trip",
        platform: str | None = None,
        device: str | None = None,
        scope: str | None = None,
        agent: Agent | None = None,
        mission_s256: str | None = None,
    ) -> Started:
        """An agent asks for a person token (or, with ``scope``, an auth token after a
        first approved person token) and is told to send its person to the consent page."""
        agent = agent or self.agent
        body: dict[str, object] = {
            "resource": RESOURCE,
            "capabilities": ["interaction", "clarification"],
        }
        if justification is not None:
            body["justification"] = justification
        if platform is not None:
            body["platform"] = platform
        if device is not None:
            body["device"] = device
        if mission_s256 is not None:
            body["mission_s256"] = mission_s256
        if scope is None:
            request = self.agent_request(agent, "POST", self.origin + "/person", body)
            return self._started(agent, self.agent_send(request))
        person_token = self._bound_person_token(agent)
        presented = json.loads(base64.urlsafe_b64decode(person_token.split(".")[1] + "=="))
        resource_token = mint_resource_token(
            self.world.resource_key,
            iss=RESOURCE,
            aud=PS_ISSUER,
            ps=PS_ISSUER,
            sub=presented["sub"],
            presented_jti=presented["jti"],
            agent_jkt=jwk_thumbprint(agent.key.public.jwk),
            now=self.world.now(),
            scope=scope,
        )
        body.update(resource_token=resource_token, presented_token=person_token)
        body.pop("resource")
        request = self.agent_request(agent, "POST", self.origin + "/token", body)
        return self._started(agent, self.agent_send(request))

    def _bound_person_token(self, agent: Agent) -> str:
        first = self.start_interaction(agent=agent, justification=None)
        view = self.ps.consent.open(first.code, "alice")
        self.ps.consent.approve(view.pending_id, "alice")
        answer = self.poll(first)
        assert answer.status == 200, answer.body
        return str(json.loads(answer.body)["person_token"])

    def _started(self, agent: Agent, response: HttpResponse) -> Started:
        assert response.status == 202, response.body
        requirement = parse_aauth_requirement(response.header("AAuth-Requirement") or "")
        params = requirement.params
        location = urljoin(self.origin, response.header("Location") or "")
        return Started(agent, location, str(params["url"]), str(params["code"]))

    def poll(self, started: Started, *, wait: int | None = None) -> HttpResponse:
        self._advance()
        request = self.agent_request(started.agent, "GET", started.location)
        if wait is not None:
            # A long poll is exempt from slow_down, whatever the last Retry-After said.
            request.headers.append(("Prefer", f"wait={wait}"))
        return self.agent_send(request)

    async def apoll(self, started: Started) -> HttpResponse:
        self._advance()
        return await self.asend(self.agent_request(started.agent, "GET", started.location))

    def agent_answers(self, started: Started, answer: str) -> HttpResponse:
        body = {"action": "clarification_response", "clarification_response": answer}
        response = self.agent_send(
            self.agent_request(started.agent, "POST", started.location, body)
        )
        assert response.status < 300, response.body
        return response

    def bind_agent(self, agent: Agent | None = None) -> None:
        """Bind the agent to alice the way it happens live: she approves a person token."""
        self._bound_person_token(agent or self.agent)

    def relay(self, body: Mapping[str, object], agent: Agent | None = None) -> str:
        """The agent POSTs to the interaction endpoint; returns the relay URL it polls."""
        url = self.origin + self.config.interaction_path
        response = self.agent_send(self.agent_request(agent or self.agent, "POST", url, body))
        assert response.status == 202, response.body
        return urljoin(self.origin, response.header("Location") or "")

    def poll_relay(self, location: str, *, wait: int | None = None) -> HttpResponse:
        request = self.agent_request(self.agent, "GET", location)
        if wait is not None:
            request.headers.append(("Prefer", f"wait={wait}"))
        return self.agent_send(request)

    def logged_in(self, person: str = "alice") -> Browser:
        browser = Browser(self)
        response = browser.log_in(person, USERS[person])
        assert response.status == 303, response.body
        return browser


class Browser:
    """Just enough of a browser: a cookie jar, form posts, redirects left to the test."""

    def __init__(self, env: PagesEnv, cookies: dict[str, str] | None = None) -> None:
        self.env = env
        self.cookies: dict[str, str] = dict(cookies or {})

    def _send(self, request: HttpRequest, use_async: bool) -> HttpResponse:
        if use_async:
            response = asyncio.run(self.env.asend(request))
        else:
            response = self.env.send(request)
        for name, value in response.headers:
            if name.lower() == "set-cookie":
                key, _, rest = value.partition("=")
                self.cookies[key] = rest.split(";")[0]
        return response

    def _headers(self) -> list[tuple[str, str]]:
        if not self.cookies:
            return []
        return [("Cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items()))]

    def get(self, target: str, *, use_async: bool = False) -> HttpResponse:
        return self._send(HttpRequest("GET", self.env.origin + target, self._headers()), use_async)

    def post(
        self,
        target: str,
        fields: Mapping[str, str],
        *,
        origin: str | None = None,
        use_async: bool = False,
    ) -> HttpResponse:
        headers = [*self._headers(), ("Content-Type", "application/x-www-form-urlencoded")]
        headers.append(("Origin", origin or self.env.origin))
        body = urlencode(fields).encode()
        return self._send(HttpRequest("POST", self.env.origin + target, headers, body), use_async)

    def log_in(
        self, username: str, password: str, *, next: str = "/consent", use_async: bool = False
    ) -> HttpResponse:
        """What a person does: open the sign-in form (its cookie and token), then post it."""
        form = self.get(f"/login?{urlencode({'next': next})}", use_async=use_async)
        assert form.status == 200, form.body
        fields = {"username": username, "password": password, "next": next}
        fields["csrf"] = login_csrf(form.body.decode())
        return self.post("/login", fields, use_async=use_async)

    def open_code(self, code: str, *, callback: str = "", use_async: bool = False) -> str:
        query = {"code": code, **({"callback": callback} if callback else {})}
        response = self.get(f"/consent?{urlencode(query)}", use_async=use_async)
        assert response.status == 303, response.body
        location = response.header("Location") or ""
        page = self.get(location, use_async=use_async)
        assert page.status == 200, page.body
        return parse_qs(urlsplit(location).query)["request"][0]

    def csrf(self, pending_id: str, *, callback: str = "") -> str:
        query = {"request": pending_id, **({"callback": callback} if callback else {})}
        html = self.get(f"/consent?{urlencode(query)}").body.decode()
        match = re.search(r'name="csrf" value="([^"]+)"', html)
        assert match, html
        return match.group(1)

    def decide(
        self,
        pending_id: str,
        action: str,
        *,
        question: str = "",
        callback: str = "",
        use_async: bool = False,
    ) -> HttpResponse:
        fields = {
            "request": pending_id,
            "action": action,
            "callback": callback,
            "csrf": self.csrf(pending_id, callback=callback),
        }
        if question:
            fields["question"] = question
        return self.post("/consent/decide", fields, use_async=use_async)

    def events(self, pending_id: str) -> dict[str, Any]:
        response = self.get(f"/consent/events?{urlencode({'request': pending_id})}")
        assert response.status == 200, response.body
        assert_page_headers(response)
        payload: dict[str, Any] = json.loads(response.body)
        return payload


def login_csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def make_env(**options: Any) -> PagesEnv:
    return PagesEnv(clock=FixedClock(1_800_000_000), **options)


XSS_JUSTIFICATION = (
    "I need this <script>alert('j')</script> [click](javascript:alert('j')) "
    "<img src=x onerror=alert('j')> **really**"
)
XSS_ANSWER = (
    "Because <script>alert('a')</script> [x](javascript:alert('a')) <b onmouseover=x>hi</b>"
)
XSS_SCOPES = {
    "data.read": "Read <script>alert('s')</script> [docs](javascript:alert('s'))",
    "data.write": "Write <img src=x onerror=alert('s')>",
}
XSS_RESOURCE_DESCRIPTION = "Files <script>alert('r')</script> [home](https://resource.example/)"


class _Tags(HTMLParser):
    """Every start tag with its attributes, to assert on the DOM rather than on text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(html)
    return parser.tags


def assert_no_active_content(html: str) -> None:
    for tag, attrs in tags(html):
        assert tag not in ("img", "iframe", "object", "embed"), tag
        if tag == "script":
            # The page's own script, served from our origin, is the only one allowed.
            assert (attrs.get("src") or "").endswith("/consent/static/consent.js"), attrs
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            if name in ("href", "src", "action"):
                assert not (value or "").strip().lower().startswith("javascript:"), (tag, value)


def assert_page_headers(response: HttpResponse) -> None:
    assert response.header("Content-Security-Policy") == CSP
    assert "frame-ancestors 'none'" in CSP
    assert response.header("X-Content-Type-Options") == "nosniff"
    assert response.header("Referrer-Policy") == "no-referrer"
    assert response.header("Cache-Control") == "no-store"


# --- Markdown sanitising -------------------------------------------------------------------


def test_markdown_keeps_formatting_and_safe_links() -> None:
    html = str(render_markdown("**bold** and [site](https://example.com/a)"))
    assert "<strong>bold</strong>" in html
    assert [(t, a) for t, a in tags(html) if t == "a"] == [
        ("a", {"href": "https://example.com/a", "rel": "noopener noreferrer nofollow"})
    ]


@pytest.mark.parametrize(
    "text",
    [
        "<script>alert(1)</script>",
        "[x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "<img src=x onerror=alert(1)>",
        "![img](https://evil.example/pixel.png)",
        '<a href="javascript:alert(1)">x</a>',
        "[x](data:text/html;base64,PHNjcmlwdD4=)",
        "<svg onload=alert(1)>",
    ],
)
def test_markdown_neutralises_active_content(text: str) -> None:
    html = str(render_markdown(text))
    found = tags(html)
    assert all(t not in ("script", "img", "svg", "iframe") for t, _ in found), html
    for _, attrs in found:
        assert all(not n.startswith("on") for n in attrs), html
        assert all(
            not (v or "").lower().startswith(("javascript:", "data:")) for v in attrs.values()
        )


# --- callbacks (digest 6.3) ----------------------------------------------------------------

REGISTERED = {"issuer": AP_ISSUER, "callback_endpoint": "https://agent.example/callback"}


@pytest.mark.parametrize(
    ("callback", "metadata", "allowed"),
    [
        ("https://agent.example/callback", REGISTERED, True),
        ("https://agent.example/callback?state=1", REGISTERED, True),
        ("https://AGENT.example/callback", REGISTERED, True),
        ("https://evil.example/callback", REGISTERED, False),
        ("https://agent.example.evil.example/callback", REGISTERED, False),
        ("https://agent.example/other", REGISTERED, False),
        ("http://agent.example/callback", REGISTERED, False),
        ("https://agent.example:8443/callback", REGISTERED, False),
        ("https://user@agent.example/callback", REGISTERED, False),
        ("https://agent.example/callback#frag", REGISTERED, False),
        ("http://127.0.0.1:8123/cb", REGISTERED, False),
        ("http://127.0.0.1:8123/cb", {**REGISTERED, "localhost_callback_allowed": True}, True),
        ("http://[::1]:8123/cb", {"localhost_callback_allowed": True}, True),
        ("http://localhost:9/cb", {"localhost_callback_allowed": True}, True),
        ("http://10.0.0.1:8123/cb", {"localhost_callback_allowed": True}, False),
        ("http://127.0.0.1:8123/cb", {"localhost_callback_allowed": "true"}, False),
        ("javascript:alert(1)", {"localhost_callback_allowed": True}, False),
    ],
)
def test_callback_rule(callback: str, metadata: dict[str, object], allowed: bool) -> None:
    assert callback_allowed(callback, metadata) is allowed


# --- signed values -------------------------------------------------------------------------


def test_csrf_token_binds_session_request_and_callback() -> None:
    secret = b"k" * 32
    token = csrf_token(secret, "n1\0alice", "p1", "")
    assert check_csrf(secret, token, "n1\0alice", "p1", "")
    assert not check_csrf(secret, token, "n2\0alice", "p1", "")
    assert not check_csrf(secret, token, "n1\0bob", "p1", "")
    assert not check_csrf(secret, token, "n1\0alice", "p2", "")
    assert not check_csrf(secret, token, "n1\0alice", "p1", "https://evil.example/")
    assert not check_csrf(b"j" * 32, token, "n1\0alice", "p1", "")
    assert not check_csrf(secret, None, "n1\0alice", "p1", "")
    assert not check_csrf(secret, token, None, "p1", "")


def test_session_cookie_expires_and_resists_tampering() -> None:
    clock = FixedClock(1_800_000_000)
    codec = SessionCodec(b"s" * 32, max_age=60, clock=clock)
    value = codec.issue("alice")
    assert codec.read(value) == "alice"
    head, _, mac = value.rpartition(".")
    forged = SessionCodec(b"s" * 32, max_age=60, clock=clock).issue("mallory")
    assert codec.read(forged.split(".")[0] + value[value.index(".") :]) is None
    assert codec.read(head + "." + mac[::-1]) is None
    assert codec.read("garbage") is None
    clock.advance(61)
    assert codec.read(value) is None
    with pytest.raises(ValueError):
        SessionCodec(b"short", max_age=60)


# --- login -----------------------------------------------------------------------------------


def _login_post(
    login: DemoLogin, origin: str, fields: Mapping[str, str], nonce: str | None
) -> HttpResponse:
    headers = [("Content-Type", "application/x-www-form-urlencoded")]
    if nonce is not None:
        headers.append(("Cookie", f"aauth_login={nonce}"))
    body = urlencode(fields).encode()
    response = login.handle(HttpRequest("POST", origin + "/login", headers, body))
    assert response is not None
    return response


def _login_form(
    login: DemoLogin, origin: str, nonce: str | None = None, nxt: str = "/consent?request=1"
) -> HttpResponse:
    headers = [("Cookie", f"aauth_login={nonce}")] if nonce is not None else []
    target = f"{origin}/login?{urlencode({'next': nxt})}"
    form = login.handle(HttpRequest("GET", target, headers))
    assert form is not None and form.status == 200
    return form


def _set_cookie(response: HttpResponse, name: str) -> str | None:
    """The ``Set-Cookie`` line for ``name``, if the response sets it."""
    for key, value in response.headers:
        if key.lower() == "set-cookie" and value.startswith(name + "="):
            return value
    return None


def _cookie_value(line: str | None) -> str:
    assert line is not None
    return line.split(";")[0].split("=", 1)[1]


def test_demo_login_sets_a_hardened_cookie_and_refuses_wrong_passwords() -> None:
    login = DemoLogin({"alice": "wonderland"}, b"s" * 32)
    form = _login_form(login, "https://ps.example")
    assert_page_headers(form)
    assert 'value="/consent?request=1"' in form.body.decode()
    nonce_cookie = _set_cookie(form, "aauth_login") or ""
    assert "HttpOnly" in nonce_cookie and "SameSite=Lax" in nonce_cookie
    assert "Secure" in nonce_cookie and "Path=/login" in nonce_cookie
    nonce = _cookie_value(nonce_cookie)
    token = login_csrf(form.body.decode())
    # The same browser keeps its nonce: the next form sets no cookie and has the same token.
    again = _login_form(login, "https://ps.example", nonce)
    assert _set_cookie(again, "aauth_login") is None and login_csrf(again.body.decode()) == token

    def post(origin: str, username: str, password: str, nxt: str) -> HttpResponse:
        fields = {"username": username, "password": password, "next": nxt, "csrf": token}
        return _login_post(login, origin, fields, nonce)

    wrong = post("https://ps.example", "alice", "nope", "/consent")
    assert wrong.status == 200 and wrong.header("Set-Cookie") is None
    assert "wrong password" in wrong.body.decode()
    assert login_csrf(wrong.body.decode()) == token  # the form shown again still works
    assert post("https://ps.example", "bob", "wonderland", "/consent").header("Set-Cookie") is None

    ok = post("https://ps.example", "alice", "wonderland", "/consent?request=1")
    assert ok.status == 303 and ok.header("Location") == "/consent?request=1"
    cookie = ok.header("Set-Cookie") or ""
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    assert (
        login.authenticate(
            HttpRequest("GET", "https://ps.example/", [("Cookie", f"aauth_session={value}")])
        )
        == "alice"
    )

    loopback_form = _login_form(login, "http://127.0.0.1:8000")
    loopback_nonce = _set_cookie(loopback_form, "aauth_login")
    assert loopback_nonce is not None and "Secure" not in loopback_nonce
    fields = {"username": "alice", "password": "wonderland", "next": "//evil.example/"}
    fields["csrf"] = login_csrf(loopback_form.body.decode())
    loopback = _login_post(login, "http://127.0.0.1:8000", fields, _cookie_value(loopback_nonce))
    assert loopback.status == 303
    assert loopback.header("Location") == "/consent"  # never an open redirect
    assert "Secure" not in (loopback.header("Set-Cookie") or "")


@pytest.mark.parametrize(
    "nxt",
    [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "\\/evil.example",
        "javascript:alert(1)",
        "/consent\r\nSet-Cookie: x=1",
        "",
    ],
)
def test_demo_login_next_stays_on_this_site(nxt: str) -> None:
    login = DemoLogin({"alice": "wonderland"}, b"s" * 32)
    form = _login_form(login, "https://ps.example", nxt=nxt)
    page = form.body.decode()
    assert 'name="next" value="/consent"' in page
    fields = {"username": "alice", "password": "wonderland", "next": nxt}
    nonce = _cookie_value(_set_cookie(form, "aauth_login"))
    ok = _login_post(login, "https://ps.example", {**fields, "csrf": login_csrf(page)}, nonce)
    assert ok.status == 303 and ok.header("Location") == "/consent"


def test_demo_login_without_or_with_a_wrong_token_is_403(env: PagesEnv) -> None:
    browser = Browser(env)
    form = browser.get("/login?next=/consent")
    token = login_csrf(form.body.decode())
    fields = {"username": "alice", "password": USERS["alice"], "next": "/consent"}

    def refused(response: HttpResponse, by: Browser = browser) -> None:
        assert response.status == 403, response.body
        assert_page_headers(response)
        html = response.body.decode()
        assert 'id="problem"' in html and 'href="/login?next=%2Fconsent"' in html
        assert "aauth_session" not in by.cookies  # not signed in

    refused(browser.post("/login", fields))  # no token at all
    refused(browser.post("/login", {**fields, "csrf": ""}))
    refused(browser.post("/login", {**fields, "csrf": token[:-2] + "AA"}))  # a wrong token
    refused(browser.post("/login", {**fields, "csrf": "x" * 43}))
    # A valid token from another browser (another nonce) is worth nothing with this cookie.
    other = login_csrf(Browser(env).get("/login").body.decode())
    refused(browser.post("/login", {**fields, "csrf": other}))
    # The right token without its cookie (a cross-site form has no way to send it), or
    # posted from another origin, is refused as well.
    cookieless = Browser(env)
    refused(cookieless.post("/login", {**fields, "csrf": token}), cookieless)
    refused(browser.post("/login", {**fields, "csrf": token}, origin="https://evil.example"))
    # The right token with its cookie signs in, on the sync and the async driver.
    ok = browser.post("/login", {**fields, "csrf": token})
    assert ok.status == 303 and ok.header("Location") == "/consent"
    assert browser.get("/consent").status == 200  # signed in: the page, not the login redirect
    bob = Browser(env)
    assert bob.log_in("bob", USERS["bob"], use_async=True).status == 303
    assert bob.get("/consent", use_async=True).status == 200


def test_demo_login_refuses_a_malformed_nonce_cookie(env: PagesEnv) -> None:
    # Only 22 base64url symbols are a nonce: anything else gets a fresh one, never a token,
    # even one made with the right secret for that value.
    for value in ("short", "a" * 23, "aaaaaaaaaaaaaaaaaaaa%0", "a" * 200):
        browser = Browser(env, {"aauth_login": value})
        assert browser.get("/login").status == 200
        assert browser.cookies["aauth_login"] != value
        forged = csrf_token(SECRET, value, "login", "")
        fields = {"username": "alice", "password": USERS["alice"], "csrf": forged}
        assert Browser(env, {"aauth_login": value}).post("/login", fields).status == 403


# --- the consent flow through the real PS ----------------------------------------------------


@pytest.fixture
def env() -> PagesEnv:
    return make_env()


def test_login_required_then_consent_page_with_headers(env: PagesEnv) -> None:
    started = env.start_interaction(justification="Plan the **trip**")
    anonymous = Browser(env)
    response = anonymous.get(f"/consent?code={started.code}")
    assert response.status == 303
    location = response.header("Location") or ""
    assert location.startswith("/login?")
    assert parse_qs(urlsplit(location).query)["next"] == [f"/consent?code={started.code}"]
    assert_page_headers(response)

    browser = env.logged_in()
    opened = browser.get(f"/consent?code={started.code}")
    assert opened.status == 303
    page = browser.get(opened.header("Location") or "")
    assert page.status == 200
    assert_page_headers(page)
    html = page.body.decode()
    assert 'id="resource-asserted"' in html and 'id="agent-asserted"' in html
    assert "(unverified)" in html
    assert "<strong>trip</strong>" in html
    for path in ("/consent/static/consent.js", "/consent/static/consent.css", "/consent"):
        assert_page_headers(browser.get(path))
    assert_page_headers(browser.get("/login"))


def test_used_or_unknown_code_is_410(env: PagesEnv) -> None:
    started = env.start_interaction()
    browser = env.logged_in()
    assert browser.get(f"/consent?code={started.code}").status == 303
    again = browser.get(f"/consent?code={started.code}")
    assert again.status == 410
    assert_page_headers(again)
    assert browser.get("/consent?code=ZZZZ-ZZZZ").status == 410


def test_agent_and_resource_text_is_neutralised() -> None:
    env = make_env(
        resource_metadata={
            "description": XSS_RESOURCE_DESCRIPTION,
            "scope_descriptions": XSS_SCOPES,
        }
    )
    started = env.start_interaction(
        justification=XSS_JUSTIFICATION,
        platform="web",
        device="<script>d()</script> Pixel",
        scope="data.read data.write",
    )
    browser = env.logged_in()
    pending_id = browser.open_code(started.code)
    browser.decide(pending_id, "ask", question="Why <script>q()</script>?")
    env.agent_answers(started, XSS_ANSWER)
    page = browser.get(f"/consent?request={pending_id}").body.decode()
    assert_no_active_content(page)
    assert "&lt;script&gt;alert('j')" in page  # shown as text, not run
    assert "&lt;script&gt;alert('a')" in page
    assert "&lt;script&gt;alert('s')" in page
    assert "&lt;script&gt;alert('r')" in page
    assert "&lt;script&gt;d()" in page
    assert 'href="https://resource.example/"' in page
    events = browser.events(pending_id)
    assert_no_active_content(events["view"]["agent_html"])
    assert "&lt;script&gt;alert('a')" in events["view"]["agent_html"]


def test_a_request_within_a_mission_shows_the_mission_sanitised() -> None:
    env = make_env()
    env._bound_person_token(env.agent)  # alice approved this agent before
    claims = json.loads(base64.urlsafe_b64decode(env.agent.token.split(".")[1] + "=="))
    mission = env.ps.missions.approve(
        agent_issuer=claims["iss"],
        agent=claims["sub"],
        person="alice",
        description="# Plan *Kyoto*\n\n<script>alert('m')</script> [map](javascript:x())",
    )
    started = env.start_interaction(mission_s256=mission.s256)
    browser = env.logged_in()
    pending_id = browser.open_code(started.code)
    page = browser.get(f"/consent?request={pending_id}").body.decode()
    assert_no_active_content(page)
    assert 'id="mission"' in page and mission.s256 in page
    assert "<em>Kyoto</em>" in page and "&lt;script&gt;alert('m')" in page
    assert 'href="javascript' not in page  # left as text, never a link
    plain = env.start_interaction()
    other = browser.get(f"/consent?request={browser.open_code(plain.code)}").body.decode()
    assert 'id="mission"' not in other


def test_an_update_page_says_how_much_room_the_mission_has_left() -> None:
    # The person sees the cumulative picture (digest 8.5) and whether approving can still
    # be recorded: a mission holds at most max_mission_updates accepted updates.
    env = make_env(max_mission_updates=2)
    env._bound_person_token(env.agent)  # alice approved this agent before
    claims = json.loads(base64.urlsafe_b64decode(env.agent.token.split(".")[1] + "=="))
    mission = env.ps.missions.approve(
        agent_issuer=claims["iss"], agent=claims["sub"], person="alice", description="Trip"
    )
    missions = env.ps.missions
    missions._run(missions.accept_update_steps(mission.s256, "Also *Osaka*.", "alice"))
    body = {"action": "update", "description": "Also Nara.", "capabilities": ["interaction"]}
    request = env.agent_request(env.agent, "POST", f"{env.origin}/mission/{mission.s256}", body)
    started = env._started(env.agent, env.send(request))
    browser = env.logged_in()
    pending_id = browser.open_code(started.code)

    def room() -> str:
        page = browser.get(f"/consent?request={pending_id}").body.decode()
        assert "An agent asks to update its mission" in page
        found = re.search(r'<p class="update-room" id="update-room">([^<]*)</p>', page)
        assert found is not None, page
        return found.group(1)

    assert room() == "Approving makes this update 2 of at most 2 for this mission."
    # Filled meanwhile (another update approved): approving this one cannot be recorded.
    missions._run(missions.accept_update_steps(mission.s256, "Also Kobe.", "alice"))
    assert room() == (
        "This mission already holds 2 accepted updates, the most it may: approving cannot "
        "record this one (the agent is told to propose a new mission instead)."
    )
    # A request that is not an update (a token request within the mission) says nothing.
    token = env.start_interaction(mission_s256=mission.s256)
    page = browser.get(f"/consent?request={browser.open_code(token.code)}").body.decode()
    assert 'id="mission"' in page and "update-room" not in page


def test_csrf_missing_or_wrong_is_403(env: PagesEnv) -> None:
    started = env.start_interaction()
    browser = env.logged_in()
    pending_id = browser.open_code(started.code)
    token = browser.csrf(pending_id)
    for csrf in (None, "", token[:-2] + "AA"):
        fields = {"request": pending_id, "action": "approve", "callback": ""}
        if csrf is not None:
            fields["csrf"] = csrf
        response = browser.post("/consent/decide", fields)
        assert response.status == 403
        assert_page_headers(response)
    other = env.logged_in("bob")  # a different session cannot reuse alice's token
    assert (
        other.post(
            "/consent/decide", {"request": pending_id, "action": "approve", "csrf": token}
        ).status
        == 403
    )
    cross = browser.post(
        "/consent/decide",
        {"request": pending_id, "action": "approve", "csrf": token, "callback": ""},
        origin="https://evil.example",
    )
    assert cross.status == 403
    assert env.poll(started).status == 202  # nothing was decided
    done = browser.decide(pending_id, "approve")
    assert done.status == 200 and 'data-outcome="approved"' in done.body.decode()
    assert env.poll(started).status == 200


def test_decide_requires_login(env: PagesEnv) -> None:
    started = env.start_interaction()
    browser = env.logged_in()
    pending_id = browser.open_code(started.code)
    token = browser.csrf(pending_id)
    anonymous = Browser(env, cookies={"aauth_consent": browser.cookies["aauth_consent"]})
    response = anonymous.post(
        "/consent/decide", {"request": pending_id, "action": "approve", "csrf": token}
    )
    assert response.status == 403
    assert anonymous.get("/consent/events").status == 401


def test_callback_foreign_host_refused() -> None:
    env = make_env(agent_metadata={"callback_endpoint": "https://agent.example/callback"})
    started = env.start_interaction()
    browser = env.logged_in()
    query = urlencode({"code": started.code, "callback": "https://evil.example/callback"})
    redirect = browser.get(f"/consent?{query}")
    page = browser.get(redirect.header("Location") or "")
    assert page.status == 400 and page.header("Location") is None
    assert_page_headers(page)


def test_callback_registered_receives_the_outcome() -> None:
    env = make_env(agent_metadata={"callback_endpoint": "https://agent.example/callback"})
    started = env.start_interaction()
    browser = env.logged_in()
    callback = "https://agent.example/callback?state=s1"
    pending_id = browser.open_code(started.code, callback=callback)
    page = browser.get(f"/consent?{urlencode({'request': pending_id, 'callback': callback})}")
    assert page.header("Content-Security-Policy") == csp(form_action=("https://agent.example",))
    # The form's token is bound to the callback: swapping it in a forged form fails.
    token = browser.csrf(pending_id, callback=callback)
    swapped = browser.post(
        "/consent/decide",
        {
            "request": pending_id,
            "action": "approve",
            "csrf": token,
            "callback": "https://evil.example/",
        },
    )
    assert swapped.status == 403
    denied = browser.decide(pending_id, "deny", callback=callback)
    assert denied.status == 303
    assert denied.header("Location") == callback + "&error=access_denied"
    assert_page_headers(denied)
    assert env.poll(started).status == 403


def test_loopback_callback_only_when_provider_allows_it(env: PagesEnv) -> None:
    callback = "http://127.0.0.1:8123/cb"
    started = env.start_interaction()
    browser = env.logged_in()
    redirect = browser.get(f"/consent?{urlencode({'code': started.code, 'callback': callback})}")
    refused = browser.get(redirect.header("Location") or "")
    assert refused.status == 400 and refused.header("Location") is None

    allowing = make_env(agent_metadata={"localhost_callback_allowed": True})
    second = allowing.start_interaction()
    browser = allowing.logged_in()
    pending_id = browser.open_code(second.code, callback=callback)
    approved = browser.decide(pending_id, "approve", callback=callback)
    assert approved.status == 303 and approved.header("Location") == callback


def test_events_list_open_requests_and_touch_presence(env: PagesEnv) -> None:
    started = env.start_interaction()
    browser = env.logged_in()
    pending_id = browser.open_code(started.code)
    events = browser.events(pending_id)
    assert [r["id"] for r in events["requests"]] == [pending_id]
    assert events["view"]["open"] is True and "(unverified)" not in events["view"]["agent_html"]
    assert env.present("alice")


def test_async_twin_answers_like_sync(env: PagesEnv) -> None:
    started = env.start_interaction()
    browser = env.logged_in()
    pending_id = browser.open_code(started.code, use_async=True)
    page = browser.get(f"/consent?request={pending_id}", use_async=True)
    assert page.status == 200 and 'id="agent-asserted"' in page.body.decode()
    assert browser.decide(pending_id, "approve", use_async=True).status == 200
    assert asyncio.run(env.apoll(started)).status == 200
    assert ORIGIN.startswith("https://")


def test_templates_dir_overrides_package_templates(tmp_path: Path) -> None:
    (tmp_path / "done.html").write_text(
        '{% extends "base.html" %}{% block main %}<p id="custom">{{ outcome }} '
        "{{ person }}</p>{% endblock %}"
    )
    env = make_env()
    env.pages = ConsentPages(
        env.ps, authenticate=env.login.authenticate, secret=SECRET, templates_dir=tmp_path
    )
    started = env.start_interaction()
    browser = env.logged_in()
    pending_id = browser.open_code(started.code)
    done = browser.decide(pending_id, "deny")
    assert '<p id="custom">denied alice</p>' in done.body.decode()
    assert_page_headers(done)


def test_another_person_cannot_see_or_decide(env: PagesEnv) -> None:
    started = env.start_interaction()
    alice = env.logged_in()
    pending_id = alice.open_code(started.code)
    bob = env.logged_in("bob")
    assert bob.get(f"/consent?request={pending_id}").status == 410
    assert bob.events(pending_id)["view"] == {"id": pending_id, "state": "gone", "open": False}
    assert bob.events(pending_id)["requests"] == []


# --- interaction relays on the page (digest 6.4, 11.3) ----------------------------------------

RELAY_URL = "https://resource.example/interact"
INTERACTION = {
    "type": "interaction",
    "url": RELAY_URL,
    "code": "A1B2-C3D4",
    "description": "Sign in <script>alert('d')</script> [x](javascript:alert('d')) *now*",
}
QUESTION = {"type": "question", "question": "Which **calendar**? <img src=x onerror=alert(1)>"}


def _relay_events(browser: Browser) -> list[dict[str, Any]]:
    response = browser.get("/consent/events")
    assert response.status == 200, response.body
    assert_page_headers(response)
    relays: list[dict[str, Any]] = json.loads(response.body)["relays"]
    return relays


def _relay_csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def _relay_form(browser: Browser, relay_id: str, action: str, **extra: str) -> dict[str, str]:
    [item] = [r for r in _relay_events(browser) if r["id"] == relay_id]
    return {"relay": relay_id, "action": action, "csrf": _relay_csrf(item["html"]), **extra}


@pytest.fixture
def relayed(env: PagesEnv) -> tuple[Browser, str, str]:
    """Alice's page is open; the agent relays a question. (browser, relay id, relay URL)"""
    env.bind_agent()
    browser = env.logged_in()
    assert browser.get("/consent").status == 200  # the open page: presence is fresh
    location = env.relay(QUESTION)
    [item] = _relay_events(browser)
    return browser, item["id"], location


def test_relay_unreachable_without_an_open_page(env: PagesEnv) -> None:
    env.bind_agent()
    url = env.origin + env.config.interaction_path
    body = {**QUESTION, "capabilities": ["interaction"]}
    response = env.send(env.agent_request(env.agent, "POST", url, body))
    assert response.status == 424, response.body


def test_events_and_pages_show_sanitised_relays(env: PagesEnv) -> None:
    env.bind_agent()
    browser = env.logged_in()
    assert _relay_events(browser) == []
    env.relay(INTERACTION)
    env.relay(QUESTION)
    relays = _relay_events(browser)
    assert [(r["type"], r["state"]) for r in relays] == [
        ("interaction", "pending"),
        ("question", "pending"),
    ]
    interaction, question = (r["html"] for r in relays)
    for html in (interaction, question):
        assert_no_active_content(html)
        assert "(unverified)" in html
        actions = [a.get("value") for t, a in tags(html) if t == "input" and a["name"] == "action"]
        assert "decline" in actions
    assert "&lt;script&gt;alert('d')" in interaction and "<em>now</em>" in interaction
    assert f"{RELAY_URL}?code=A1B2-C3D4" in interaction
    assert 'value="engage"' in interaction and 'name="answer"' not in interaction
    assert "<strong>calendar</strong>" in question and "&lt;img" in question
    assert 'name="answer"' in question and 'value="answer"' in question
    # The person's other pages render the same fragments server-side.
    index = browser.get("/consent").body.decode()
    assert_no_active_content(index)
    assert index.count('class="relay"') == 2 and 'id="relays" aria' in index
    started = env.start_interaction()
    pending_id = browser.open_code(started.code)
    page = browser.get(f"/consent?request={pending_id}").body.decode()
    assert page.count('class="relay"') == 2
    assert f'name="next" value="/consent?request={pending_id}"' in page
    assert env.logged_in("bob").get("/consent/events").status == 200
    assert _relay_events(env.logged_in("bob")) == []


def test_relay_post_refuses_bad_csrf(env: PagesEnv, relayed: tuple[Browser, str, str]) -> None:
    browser, relay_id, location = relayed
    form = _relay_form(browser, relay_id, "answer", answer="The work one")
    other_relay = env.relay(QUESTION)
    other_id = other_relay.rsplit("/", 1)[1]
    other_token = _relay_form(browser, other_id, "decline")["csrf"]
    for csrf in (None, "", form["csrf"][:-2] + "AA", other_token):
        fields = {k: v for k, v in form.items() if k != "csrf"}
        if csrf is not None:
            fields["csrf"] = csrf
        refused = browser.post("/consent/relay", fields)
        assert refused.status == 403
        assert_page_headers(refused)
    assert browser.post("/consent/relay", form, origin="https://evil.example").status == 403
    assert env.logged_in("bob").post("/consent/relay", form).status == 403
    assert Browser(env).post("/consent/relay", form).status == 403
    pending = env.poll_relay(location)
    assert pending.status == 202 and json.loads(pending.body) == {"status": "pending"}
    assert [r["id"] for r in _relay_events(browser)] == [relay_id, other_id]


def test_relay_answer_by_form_reaches_the_agent(
    env: PagesEnv, relayed: tuple[Browser, str, str]
) -> None:
    browser, relay_id, location = relayed
    empty = browser.post("/consent/relay", _relay_form(browser, relay_id, "answer", answer=" "))
    assert empty.status == 400
    form = _relay_form(browser, relay_id, "answer", answer="The **work** one", next="//evil")
    sent = browser.post("/consent/relay", form)
    assert sent.status == 303 and sent.header("Location") == "/consent"
    assert_page_headers(sent)
    answered = env.poll_relay(location)
    assert (answered.status, json.loads(answered.body)) == (200, {"answer": "The **work** one"})
    assert _relay_events(browser) == []
    again = browser.post("/consent/relay", form)
    assert again.status == 409


def test_relay_answer_by_script_gets_json(env: PagesEnv, relayed: tuple[Browser, str, str]) -> None:
    browser, relay_id, location = relayed
    form = _relay_form(browser, relay_id, "answer", answer="Work")
    request = HttpRequest(
        "POST",
        env.origin + "/consent/relay",
        [
            *browser._headers(),
            ("Accept", "application/json"),
            ("Origin", "null"),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        urlencode(form).encode(),
    )
    response = env.send(request)
    assert response.status == 200, response.body
    assert json.loads(response.body) == {"id": relay_id, "state": "answered", "target": None}
    assert json.loads(env.poll_relay(location).body) == {"answer": "Work"}
    cross = HttpRequest(
        "POST",
        env.origin + "/consent/relay",
        [*browser._headers(), ("Accept", "application/json"), ("Sec-Fetch-Site", "cross-site")],
        urlencode(form).encode(),
    )
    refused = env.send(cross)
    assert (refused.status, json.loads(refused.body)) == (403, {"error": "csrf"})


def test_relay_engage_then_open_the_link(env: PagesEnv) -> None:
    env.bind_agent()
    browser = env.logged_in()
    browser.get("/consent")
    location = env.relay(INTERACTION)
    [item] = _relay_events(browser)
    opened = browser.post("/consent/relay", _relay_form(browser, item["id"], "engage"))
    assert opened.status == 200
    assert_page_headers(opened)
    links = [a for t, a in tags(opened.body.decode()) if t == "a" and a.get("id")]
    assert links == [
        {
            "href": f"{RELAY_URL}?code=A1B2-C3D4",
            "id": "relay-continue",
            "rel": "noopener noreferrer nofollow",
        }
    ]
    [item] = _relay_events(browser)
    assert item["state"] == "interacting" and "(opened)" in item["html"]
    first = env.poll_relay(location)
    assert (first.status, json.loads(first.body)) == (202, {"status": "interacting"})
    final = env.poll_relay(location)
    assert (final.status, json.loads(final.body)) == (200, {"status": "engaged"})


def test_relay_decline_tells_the_agent(env: PagesEnv, relayed: tuple[Browser, str, str]) -> None:
    browser, relay_id, location = relayed
    unknown = browser.post("/consent/relay", _relay_form(browser, relay_id, "shout"))
    assert unknown.status == 400
    back = f"/consent?{urlencode({'request': 'p1'})}"
    form = _relay_form(browser, relay_id, "decline", next=back)
    declined = browser.post("/consent/relay", form, use_async=True)
    assert declined.status == 303 and declined.header("Location") == back
    refused = env.poll_relay(location)
    assert (refused.status, json.loads(refused.body)["error"]) == (403, "denied")


def test_relay_actions_on_the_async_driver(env: PagesEnv) -> None:
    env.bind_agent()
    browser = env.logged_in()
    browser.get("/consent", use_async=True)
    location = env.relay(INTERACTION)
    events = json.loads(browser.get("/consent/events", use_async=True).body)
    [item] = events["relays"]
    form = {"relay": item["id"], "action": "engage", "csrf": _relay_csrf(item["html"])}
    opened = browser.post("/consent/relay", form, use_async=True)
    assert opened.status == 200 and 'id="relay-continue"' in opened.body.decode()
    assert json.loads(env.poll_relay(location).body) == {"status": "interacting"}
