"""The mission consent page and Mission Control in headless Chromium against a real uvicorn
server: hostile agent text in a proposal is shown as text, never run; the person's edit of
the description is what the mission stores; Mission Control shows it the same way."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.keys.jwk import b64url_decode
from aauth_server.missions.control import MissionControl
from tests.browser.test_consent_chromium import STEP_MS, LiveServer, browser
from tests.person.test_pages import SECRET, USERS

__all__ = ["browser"]  # the module-scoped Chromium fixture, shared

HOSTILE = (
    "# Trip\n\n<script>window.__pwned = 1</script>"
    '<img src=x onerror="window.__pwned = 2"> '
    "[click me](javascript:window.__pwned=3) and **bold**"
)
TOOLS = [{"name": "<b>Search</b>", "description": "<script>window.__pwned = 4</script>web"}]


class MissionServer(LiveServer):
    def __init__(self) -> None:
        super().__init__(dev_loopback=True)
        self.control = MissionControl(
            self.env.ps, authenticate=self.env.login.authenticate, secret=SECRET
        )

    def _route(self, request: HttpRequest) -> HttpResponse:
        answered = self.control.handle(request)
        return answered if answered is not None else super()._route(request)


@pytest.fixture
def live() -> Iterator[MissionServer]:
    with MissionServer() as server:
        yield server


def _sign_in(page: Page, url: str) -> None:
    page.set_default_timeout(STEP_MS)
    page.goto(url)
    page.wait_for_url("**/login?**")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", USERS["alice"])
    page.click("#login")


def test_a_hostile_proposal_is_text_and_the_edit_is_what_is_stored(
    browser: Browser, live: MissionServer
) -> None:
    env = live.env
    proposal = {
        "description": HOSTILE,
        "tools": TOOLS,
        "resources": ["https://flights.example"],
        "capabilities": ["interaction"],
    }
    response = env.agent_send(
        env.agent_request(env.agent, "POST", f"{live.origin}/mission", proposal)
    )
    assert response.status == 202, response.body
    code = re.search(r'code="([^"]+)"', str(response.header("AAuth-Requirement")))
    assert code is not None
    location = str(response.header("Location"))
    # An agent polls no sooner than Retry-After allows (else 429 slow_down).
    poll_at = time.monotonic() + int(str(response.header("Retry-After")))
    context = browser.new_context()
    page = context.new_page()
    try:
        _sign_in(page, f"{live.origin}/consent?code={code.group(1)}")
        page.wait_for_selector("#proposal-description")
        assert page.evaluate("window.__pwned") is None  # nothing the agent wrote ran
        shown = page.locator("#proposal")
        assert shown.locator("img, script").count() == 0
        assert shown.locator("strong", has_text="bold").count() == 1  # Markdown still renders
        assert shown.locator("a[href^=javascript]").count() == 0
        assert "<b>Search</b>" in shown.inner_text()  # a tool's name is text
        box = page.locator("textarea#description")
        assert box.input_value() == HOSTILE  # the raw text, to edit
        box.fill("# Trip\n\nOnly **flights**.")
        page.get_by_role("button", name="Approve", exact=True).click()
        page.wait_for_selector("#done")
        time.sleep(max(0.0, poll_at - time.monotonic()))
        poll = env.agent_request(env.agent, "GET", location)
        approved = env.agent_send(poll)
        assert approved.status == 200, approved.body
        body = json.loads(approved.body)
        stored = json.loads(b64url_decode(body["mission"]))
        assert stored["description"] == "# Trip\n\nOnly **flights**."
        assert stored["approved_tools"] == TOOLS
        page.goto(f"{live.origin}/missions/{body['s256']}")
        assert page.locator("#description strong", has_text="flights").count() == 1
        assert page.evaluate("window.__pwned") is None
        page.get_by_role("button", name="Suspend", exact=True).click()
        page.wait_for_selector("button#resume")
        assert (page.text_content("#status") or "").strip() == "suspended"
        csp = page.evaluate("document.querySelector('meta[http-equiv]')") is None
        assert csp  # the CSP comes as a header, not a meta tag an agent could shape
    finally:
        context.close()
