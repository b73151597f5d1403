"""The consent page in headless Chromium against a real uvicorn server on 127.0.0.1.

The agent talks to the PS over HTTP (signed requests through httpx); the person is a
Chromium page driven by Playwright (Debian's /usr/bin/chromium, never a downloaded build).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from aauth_server.asgi import asgi_app
from aauth_server.http import HttpRequest, HttpResponse
from tests.person.test_pages import USERS, PagesEnv, Started
from tests.support import RESOURCE
from tests.threaded_uvicorn import ThreadedUvicorn

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STEP_MS = 8000
CALLBACK_PATH = "/agent-callback"
INTERACTION_PATH = "/interact"


class LiveServer:
    """uvicorn in a thread, serving the PS, the consent pages and the demo login."""

    def __init__(self, *, dev_loopback: bool = False) -> None:
        self.uvicorn = ThreadedUvicorn(asgi_app(self._route))
        self.port = self.uvicorn.port
        self.origin = self.uvicorn.origin
        self.env = PagesEnv(
            origin=self.origin,
            poll_interval=1,
            agent_metadata={"localhost_callback_allowed": True},
            dev_loopback=dev_loopback,
        )
        self.http = httpx.Client(timeout=10)
        self.env.agent_send = self._over_http

    def __enter__(self) -> LiveServer:
        self.uvicorn.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()
        self.uvicorn.stop()

    def _route(self, request: HttpRequest) -> HttpResponse:
        if request.path == CALLBACK_PATH:  # the agent's callback endpoint
            return HttpResponse(200, [("Content-Type", "text/plain")], b"agent callback reached")
        return self.env.send(request)

    def _over_http(self, request: HttpRequest) -> HttpResponse:
        answer = self.http.request(
            request.method, request.url, headers=request.headers, content=request.body
        )
        return HttpResponse(answer.status_code, answer.headers.multi_items(), answer.content)


class InteractionSite:
    """The page an agent relays the person to: its own 127.0.0.1 port (another origin than
    the PS), answering every GET with a small page and recording what each request sent."""

    def __init__(self) -> None:
        site = self
        self.requests: list[tuple[str, str | None]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.requests.append((self.path, self.headers.get("Referer")))
                body = b"<!doctype html><title>Airline</title><p id=reached>Signed in</p>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep the test output quiet

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{INTERACTION_PATH}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> InteractionSite:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def live() -> Iterator[LiveServer]:
    with LiveServer() as server:
        yield server


def _log_in_and_open(page: Page, started: Started, callback: str = "") -> None:
    page.set_default_timeout(STEP_MS)
    query = {"code": started.code, **({"callback": callback} if callback else {})}
    page.goto(f"{started.url}?{urlencode(query)}")
    page.wait_for_url("**/login?**")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", USERS["alice"])
    page.click("#login")
    page.wait_for_url("**/consent?request=*")


def _poll_as_agent(live: LiveServer, started: Started) -> HttpResponse:
    """A plain poll, paced as an agent paces it: the PS's first 202 asks for Retry-After
    before the first poll (and the sync driver cannot park a long poll), so a 429
    slow_down means polling again once its Retry-After has passed."""
    deadline = time.monotonic() + STEP_MS / 1000
    while True:
        polled = live.env.poll(started)
        if polled.status != 429 or time.monotonic() > deadline:
            return polled
        time.sleep(float(polled.header("Retry-After") or "1"))  # the server's pacing


def _bind_and_go_home(page: Page, live: LiveServer) -> None:
    """Alice approves a first request, which binds the agent to her (relays find her by
    it), then keeps her PS page open."""
    _log_in_and_open(page, live.env.start_interaction())
    page.click("#approve")
    page.wait_for_selector("#done[data-outcome=approved]")
    page.goto(live.origin + "/consent")
    page.wait_for_selector("main[data-polled]")


def _claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    claims: dict[str, object] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def test_person_asks_agent_answers_live_then_approves(
    browser: Browser, live: LiveServer, tmp_path: Path
) -> None:
    started = live.env.start_interaction(justification="I plan your **trip** to Lisbon")
    assert started.url.startswith(live.origin + "/consent/request/")
    page = browser.new_page()
    try:
        _log_in_and_open(page, started)
        agent_section = page.locator("#agent-asserted")
        assert "(unverified)" in agent_section.locator("h2").inner_text()
        assert agent_section.locator(".justification strong").inner_text() == "trip"
        assert page.locator("#resource-asserted .resource-id").inner_text() == RESOURCE

        page.fill("#question", "Which dates will you book?")
        page.click("#ask")
        page.wait_for_selector("#agent-asserted .answer.waiting")
        # Marks this document: a reload would lose it.
        page.evaluate("document.body.dataset.marker = 'kept'")

        polled = _poll_as_agent(live, started)
        assert polled.status == 202
        assert json.loads(polled.body)["clarification"] == "Which dates will you book?"
        live.env.agent_answers(started, "From **May 3** to May 7 <script>window.pwned=1</script>")

        answer = page.locator("#agent-asserted .clarifications .answer:not(.waiting)")
        answer.wait_for()
        assert answer.locator("strong").inner_text() == "May 3"
        assert "<script>" in answer.inner_text()  # shown as text, never run
        assert page.evaluate("window.pwned === undefined")
        assert page.evaluate("document.body.dataset.marker") == "kept"  # no reload
        assert answer.evaluate("node => node.closest('section').id") == "agent-asserted"
        assert "(unverified)" in page.locator("#agent-heading").inner_text()

        shot = tmp_path / "consent.png"
        page.screenshot(path=str(shot), full_page=True)
        data = shot.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000

        page.click("#approve")
        page.wait_for_selector("#done[data-outcome=approved]")
    finally:
        page.close()

    final = live.env.poll(started, wait=5)
    assert final.status == 200, final.body
    token = json.loads(final.body)["person_token"]
    claims = _claims(token)
    assert claims["aud"] == RESOURCE and claims["iss"] == "https://ps.example"


def test_person_denies_and_the_poll_says_denied(browser: Browser, live: LiveServer) -> None:
    started = live.env.start_interaction()
    # Another origin than the page's (localhost, not 127.0.0.1): the redirect after the
    # form post must pass the page's form-action.
    callback = f"http://localhost:{live.port}{CALLBACK_PATH}?state=s1"
    page = browser.new_page()
    try:
        _log_in_and_open(page, started, callback)
        page.click("#deny")
        page.wait_for_url(callback + "&error=access_denied")
        assert "agent callback reached" in page.content()
    finally:
        page.close()
    final = live.env.poll(started, wait=5)
    assert final.status == 403
    assert json.loads(final.body)["error"] == "denied"


def test_agent_question_appears_live_and_the_answer_reaches_the_agent(
    browser: Browser, live: LiveServer
) -> None:
    page = browser.new_page()
    try:
        _bind_and_go_home(page, live)
        assert page.locator("#relays").is_hidden()
        page.evaluate("document.body.dataset.marker = 'kept'")

        location = live.env.relay(
            {
                "type": "question",
                "question": "Which **calendar** should I use? <script>window.pwned=1</script>",
            }
        )
        question = page.locator("#relays .relay-question")
        question.wait_for()
        assert question.locator("strong").inner_text() == "calendar"
        assert "<script>" in question.inner_text()  # shown as text, never run
        assert page.evaluate("window.pwned === undefined")
        assert page.evaluate("document.body.dataset.marker") == "kept"  # no reload
        assert "(unverified)" in page.locator("#relays-heading").inner_text()

        page.fill("#relays textarea[name=answer]", "The work one")
        page.click("#relays .relay-send")
        page.locator("#relays").wait_for(state="hidden")
        assert page.locator("#relays .relay").count() == 0
        assert page.evaluate("document.body.dataset.marker") == "kept"
    finally:
        page.close()

    answered = live.env.poll_relay(location, wait=5)
    assert answered.status == 200, answered.body
    assert json.loads(answered.body) == {"answer": "The work one"}


def test_relay_open_takes_the_person_to_the_relayed_url(browser: Browser) -> None:
    with LiveServer(dev_loopback=True) as live, InteractionSite() as site:
        context = browser.new_context()
        context.set_default_timeout(STEP_MS)
        page = context.new_page()
        try:
            _bind_and_go_home(page, live)

            location = live.env.relay({"type": "interaction", "url": site.url, "code": "A1B2-C3D4"})
            target = f"{site.url}?code=A1B2-C3D4"
            relay = page.locator("#relays .relay[data-type=interaction]")
            relay.wait_for()
            assert relay.locator(".relay-target").inner_text() == target
            assert relay.get_attribute("data-state") == "pending"
            waiting = live.env.poll_relay(location)
            assert (waiting.status, json.loads(waiting.body)) == (202, {"status": "pending"})
            assert site.requests == []

            # "Open" posts the engage in the background, then opens the link in a new tab.
            with context.expect_page() as opened:
                relay.locator(".relay-open").click()
            tab = opened.value
            tab.wait_for_load_state()
            assert tab.url == target
            assert parse_qs(urlsplit(tab.url).query) == {"code": ["A1B2-C3D4"]}
            assert tab.locator("#reached").inner_text() == "Signed in"
            assert tab.evaluate("window.opener === null")  # noopener
            # One visit, without the PS page's address (noreferrer); the browser may also
            # fetch the site's favicon.
            visits = [r for r in site.requests if r[0].startswith(INTERACTION_PATH)]
            assert visits == [(f"{INTERACTION_PATH}?code=A1B2-C3D4", None)]

            # The PS page stays open (it is the person's channel) and shows the relay opened.
            page.locator("#relays .relay[data-state=interacting] .relay-opened").wait_for()
            assert page.url == live.origin + "/consent"
        finally:
            context.close()

        interacting = live.env.poll_relay(location)
        assert (interacting.status, json.loads(interacting.body)) == (
            202,
            {"status": "interacting"},
        )
        engaged = live.env.poll_relay(location)
        assert (engaged.status, json.loads(engaged.body)) == (200, {"status": "engaged"})
