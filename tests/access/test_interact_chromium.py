"""``requirement=interaction`` completed by a person in headless Chromium: the example Access
Server (``--require-interaction``, real uvicorn) answers the PS's signed request with a code,
the person opens ``{url}?code={code}`` and approves (or declines) on the AS's page, and the
PS's next poll collects the token (or ``denied``)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace

import pytest
from playwright.sync_api import Browser, sync_playwright

from example_apps._procs import AppSpec, running_apps
from tests.access.wire_world import Wire, loopback_parties
from tests.browser.test_consent_chromium import CHROMIUM, CHROMIUM_ARGS, STEP_MS

CODE = re.compile(r'url="([^"]+)"; code="([0-9A-Z]{4}-[0-9A-Z]{4})"')


@pytest.fixture(scope="module")
def wire() -> Iterator[Wire]:
    with loopback_parties() as parties:
        spec = AppSpec(
            "access-server",
            "example_apps.access_server",
            ("--dev", "--trust-ps", parties.ps.issuer, "--require-interaction"),
        )
        with running_apps([spec]) as apps:
            yield replace(parties, as_url=apps[0].url)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _start(wire: Wire) -> tuple[str, str]:
    first = wire.send("POST", "/token", wire.triple())
    assert first.status == 202
    match = CODE.search(first.headers["aauth-requirement"])
    assert match is not None
    url, code = match.groups()
    assert url == wire.as_url + "/interact"
    return first.headers["location"][len(wire.as_url) :], f"{url}?code={code}"


@pytest.mark.parametrize("decision", ["approve", "deny"])
def test_the_person_completes_the_interaction_in_a_browser(
    wire: Wire, browser: Browser, decision: str
) -> None:
    path, link = _start(wire)
    page = browser.new_page()
    try:
        page.goto(link, timeout=STEP_MS)
        assert wire.ps.issuer in page.inner_text("#interact")
        # The PS's poll now says the person is at the page.
        assert json.loads(wire.send("GET", path).body)["status"] == "interacting"
        page.click(f"#{decision}", timeout=STEP_MS)
        page.wait_for_selector("#done", timeout=STEP_MS)
        approved = page.get_attribute("#done", "data-approved")
    finally:
        page.close()
    outcome = wire.send("GET", path)
    if decision == "approve":
        assert approved == "yes" and outcome.status == 200
        assert "auth_token" in json.loads(outcome.body)
    else:
        assert approved == "no" and outcome.status == 403
        assert json.loads(outcome.body)["error"] == "denied"
