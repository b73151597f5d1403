"""The consent page's script never replaces what the person is using (headless Chromium,
real uvicorn).  The mission story once lost a click: the page's poll replaced the question
form while the person was pressing its button, so the click landed on a detached node.

Each test is deterministic: it waits for the page's own polls (``main[data-polled]``), and
where a changed view is needed, Playwright rewrites the events answer the page receives.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, Page, Route

from tests.browser.test_consent_chromium import (
    STEP_MS,
    LiveServer,
    _bind_and_go_home,
    _log_in_and_open,
    _poll_as_agent,
    browser,
    live,
)
from tests.person.test_pages import Started

__all__ = ["browser", "live"]  # the shared fixtures

QUESTION = "Which dates will you book?"
EVENTS = "**/consent/events*"


def _polls(page: Page) -> int:
    return int(page.evaluate("Number(document.querySelector('main').dataset.polled || 0)"))


def _wait_for_polls(page: Page, count: int) -> None:
    """``count`` more of the page's polls have been answered and rendered."""
    target = _polls(page) + count
    deadline = time.monotonic() + STEP_MS / 1000 + 2 * count
    while _polls(page) < target:  # (wait_for_function would need 'unsafe-eval')
        assert time.monotonic() < deadline, "the page stopped polling"
        page.wait_for_timeout(50)


def _held_polls(page: Page) -> Callable[[], None]:
    """Hold the page's polls until the returned function lets them (and every later one)
    through, so the test sees the page as the server rendered it, before any poll."""
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    page.route(EVENTS, hold)

    def release() -> None:
        deadline = time.monotonic() + STEP_MS / 1000
        while not held:
            assert time.monotonic() < deadline, "the page never polled"
            page.wait_for_timeout(50)
        for route in held:
            route.continue_()
        page.unroute(EVENTS)

    return release


def _close(page: Page) -> None:
    """Close the page once no rewritten answer is still in flight."""
    page.unroute_all(behavior="ignoreErrors")
    page.close()


@contextmanager
def _consent_page(browser: Browser, started: Started) -> Iterator[Page]:
    """Alice signed in on the consent page of ``started``."""
    page = browser.new_page()
    try:
        _log_in_and_open(page, started)
        yield page
    finally:
        _close(page)


def _question_reached_the_agent(page: Page, live: LiveServer, started: Started) -> None:
    page.wait_for_selector("#agent-asserted .answer.waiting")  # the page shows it sent
    polled = _poll_as_agent(live, started)
    assert polled.status == 202
    assert json.loads(polled.body)["clarification"] == QUESTION


def _changing_view(page: Page) -> Callable[[], int]:
    """Every events answer from now on carries a view that differs from the page's: a new
    line above the forms (so they move) and another label in the question form."""
    served = [0]

    def rewrite(route: Route) -> None:
        response = route.fetch()
        payload = json.loads(response.body())
        view = payload.get("view") or {}
        if isinstance(view.get("agent_html"), str):
            served[0] += 1
            view["agent_html"] += f'<p class="poll-line">Poll {served[0]}</p>' * 3
            view["ask_html"] = view["ask_html"].replace("Ask the agent (", "Ask it now (")
        route.fulfill(response=response, json=payload)

    page.route(EVENTS, rewrite)
    return lambda: served[0]


def test_unchanged_polls_keep_every_node_of_the_page(browser: Browser, live: LiveServer) -> None:
    started = live.env.start_interaction()
    page = browser.new_page()
    try:
        release = _held_polls(page)
        _log_in_and_open(page, started)
        page.evaluate(
            """() => {
                window.__form = document.getElementById('ask-form');
                window.__agent = document.querySelector('#agent-asserted-body dl');
            }"""
        )
        release()
        _wait_for_polls(page, 1)  # the first poll fills the list of other requests ...
        page.evaluate("window.__list = document.querySelector('#open-requests').firstChild")
        assert page.inner_text("#open-requests") == "Nothing else waiting."
        _wait_for_polls(page, 2)  # ... which later, unchanged, polls keep
        kept = page.evaluate(
            """() => [
                document.getElementById('ask-form') === window.__form,
                document.querySelector('#agent-asserted-body dl') === window.__agent,
                document.querySelector('#open-requests').firstChild === window.__list,
            ]"""
        )
        assert kept == [True, True, True]
    finally:
        _close(page)


def test_a_press_on_ask_lands_while_the_view_changes(browser: Browser, live: LiveServer) -> None:
    started = live.env.start_interaction()
    with _consent_page(browser, started) as page:
        served = _changing_view(page)
        page.fill("#question", QUESTION)
        page.hover("#ask")
        page.mouse.down()  # the person presses "Ask the agent" ...
        before = served()
        _wait_for_polls(page, 1)  # ... a changed view arrives while the button is held ...
        assert served() > before
        page.mouse.up()  # ... and the click still sends the question.
        _question_reached_the_agent(page, live, started)


def test_a_typed_question_survives_a_changed_view_after_focus_left(
    browser: Browser, live: LiveServer
) -> None:
    started = live.env.start_interaction()
    with _consent_page(browser, started) as page:
        page.evaluate("window.__form = document.getElementById('ask-form')")
        served = _changing_view(page)
        page.fill("#question", QUESTION)
        page.click("h1")  # the person reads on: the question keeps its text, not the focus
        _wait_for_polls(page, 2)
        assert served() >= 2
        assert page.input_value("#question") == QUESTION
        assert page.evaluate("document.getElementById('ask-form') === window.__form")
        page.click("#ask")
        _question_reached_the_agent(page, live, started)


def test_a_changed_view_is_shown_once_the_person_is_done(
    browser: Browser, live: LiveServer
) -> None:
    """The guard is only for what is in use: an untouched page follows the view."""
    with _consent_page(browser, live.env.start_interaction()) as page:
        _changing_view(page)
        page.locator("#agent-asserted .poll-line").first.wait_for()
        assert "Ask it now (" in page.inner_text("#ask-area")


def test_a_relay_rendered_with_the_page_keeps_its_node(browser: Browser, live: LiveServer) -> None:
    page = browser.new_page()
    try:
        _bind_and_go_home(page, live)
        live.env.relay({"type": "question", "question": "Which calendar?"})
        release = _held_polls(page)
        page.reload()  # the relay now comes with the page, not from a poll
        page.evaluate("window.__relay = document.querySelector('#relays .relay-question')")
        assert page.evaluate("window.__relay !== null")
        release()
        _wait_for_polls(page, 2)
        assert page.evaluate("document.querySelector('#relays .relay-question') === window.__relay")
    finally:
        _close(page)
