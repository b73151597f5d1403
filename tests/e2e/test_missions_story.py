"""The mission story end to end (issue 10 "Done when"): real uvicorn processes for the
Starlette Person Server, an agent provider and the example Starlette resource on 127.0.0.1;
the person is headless Chromium (Debian's /usr/bin/chromium) on the mission consent page and
Mission Control's buttons.  Twice: the PS on Redis with its records in a SQLite file, and on
the memory store with its records in PostgreSQL.  Then a restart of the PS process keeps the
missions, their logs, bindings and revocations (SQLite file and PostgreSQL)."""

from __future__ import annotations

import json
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from aauth_server.agent import Agent
from aauth_server.agent.flow import Interaction
from aauth_server.records import RecordOps, RecordStore
from example_apps._procs import (
    AppSpec,
    RunningApp,
    free_port,
    running_apps,
    start_apps,
    stop_apps,
)
from example_apps.demo import Report
from example_apps.mission_story import (
    DESCRIPTION,
    EDIT,
    TOOLS,
    MissionAgent,
    ScriptedMissionPerson,
    tell,
)
from example_apps.three_party import PASSWORD, error_of
from tests.postgres_server import fresh_database
from tests.redis_server import ensure_redis
from tests.storage.conftest import delete_prefix

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
STEP_MS = 15_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class ChromiumPerson:
    """Alice in headless Chromium: she signs in, reads, types and clicks."""

    def __init__(self, browser: Browser, ps_url: str) -> None:
        self.context = browser.new_context()
        self.page: Page = self.context.new_page()
        self.page.set_default_timeout(STEP_MS)
        self.ps_url = ps_url
        self.seen: list[str] = []

    def close(self) -> None:
        self.context.close()

    def _open(self, url: str) -> None:
        self.page.goto(url)
        if "/login" in self.page.url:
            self.page.fill("input[name=username]", "alice")
            self.page.fill("input[name=password]", PASSWORD)
            self.page.click("#login")
            self.page.wait_for_load_state()

    def approve_mission(self, link: str, edit: str) -> None:
        self._open(link)
        page = self.page
        page.wait_for_selector("#proposal-description")
        self.seen.append(page.inner_text("#proposal"))
        assert "(agent-asserted, unverified)" in page.inner_text("#proposal")
        box = page.locator("textarea#description")
        box.fill(box.input_value() + edit)
        page.get_by_role("button", name="Approve", exact=True).click()
        page.wait_for_selector("#done")

    def press(self, s256: str, label: str) -> None:
        page = self.page
        self._open(f"{self.ps_url}/missions/{s256}")
        page.get_by_role("button", name=label, exact=True).click()
        page.wait_for_load_state()
        expected = {"Suspend": "suspended", "Resume": "active", "Revoke": "terminated"}[label]
        assert (page.text_content("#status") or "").strip() == expected
        self.seen.append(page.inner_text("main"))

    def follow_up(self, link: str, question: str) -> None:
        self._open(link)
        page = self.page
        page.wait_for_selector("#summary")
        page.fill("#question", question)
        page.get_by_role("button", name="Ask a follow-up", exact=True).click()
        page.wait_for_load_state()

    def accept_after_answer(self, answer: str) -> None:
        page = self.page
        # The page's own script shows the agent's answer when it arrives (no reload).
        page.wait_for_selector(f"text={answer.split(': ', 1)[1]}")
        page.get_by_role("button", name="Accept", exact=True).click()
        page.wait_for_selector("#done")

    def log(self, s256: str) -> list[dict[str, Any]]:
        self._open(f"{self.ps_url}/missions/{s256}")
        self.seen.append(self.page.inner_text("#timeline"))
        response = self.page.request.get(
            f"{self.ps_url}/missions/api/missions/{s256}/log?limit=200"
        )
        assert response.status == 200
        entries: list[dict[str, Any]] = json.loads(response.body())["entries"]
        return entries


def _ps_spec(store_args: list[str], records: str) -> AppSpec:
    return AppSpec(
        "person-server",
        "example_apps.person_server",
        (
            "--dev",
            "--password",
            PASSWORD,
            "--poll-interval",
            "1",
            "--mission-scope",
            "data.read",
            "--records",
            records,
            *store_args,
        ),
    )


@contextmanager
def backend(name: str) -> Iterator[tuple[list[str], str]]:
    if name == "redis+sqlite":
        prefix = f"e2e-missions-{uuid.uuid4().hex}"
        url = ensure_redis()
        with tempfile.TemporaryDirectory(prefix="aauth-e2e-") as folder:
            try:
                yield ["--store", url, "--store-prefix", prefix], f"sqlite:///{folder}/records.db"
            finally:
                delete_prefix(url, prefix)
    else:
        with fresh_database() as database:
            yield [], database


@contextmanager
def servers(ps_spec: AppSpec) -> Iterator[tuple[RunningApp, RunningApp, RunningApp]]:
    with running_apps([ps_spec]) as (ps,):
        specs = [
            AppSpec("agent-provider", "example_apps.agent_provider", ("--dev", "--ps", ps.url)),
            AppSpec("starlette", "example_apps.starlette_resource", ("--dev", "--ps", ps.url)),
        ]
        with running_apps(specs) as (provider, resource):
            yield ps, provider, resource


@pytest.mark.parametrize("name", ["redis+sqlite", "memory+postgresql"])
def test_the_mission_story_with_the_person_in_chromium(browser: Browser, name: str) -> None:
    with (
        backend(name) as (store_args, records),
        servers(_ps_spec(store_args, records)) as (ps, provider, resource),
        httpx.Client(timeout=30, trust_env=False) as client,
    ):
        agent = Agent.enroll_dev(provider.url, "trip-agent", client=client)
        person = ChromiumPerson(browser, ps.url)
        report = Report()
        try:
            outcome = tell(
                client=client, agent=agent, resource=resource.url, person=person, report=report
            )
        finally:
            person.close()
        assert not report.failures, [*report.failures, ps.log()[-3000:]]
        # What Chromium showed: the proposal as agent-asserted content, the buttons' results,
        # and the audit trail with the denial and why.
        assert "Plan a trip to Kyoto" in person.seen[0]
        timeline = person.seen[-1]
        assert "outside mission scope" in timeline and "payments.example" in timeline
        assert "suspended" in timeline and "resumed" in timeline and "completed" in timeline
        assert outcome.s256 is not None and len(outcome.lines) >= 10
        assert records.split(":")[0] in ps.log()  # the records URL it printed


@contextmanager
def restart_records(name: str) -> Iterator[str]:
    if name == "sqlite":
        with tempfile.TemporaryDirectory(prefix="aauth-restart-") as folder:
            yield f"sqlite:///{Path(folder) / 'records.db'}"
    else:
        with fresh_database() as database:
            yield database


def _mission_person_token(flow: MissionAgent, resource: str) -> tuple[int, str | None]:
    response = flow.ask_person_token(resource)
    return response.status_code, error_of(response)


@pytest.mark.parametrize("name", ["sqlite", "postgresql"])
def test_a_restarted_ps_keeps_missions_logs_bindings_and_revocations(name: str) -> None:
    with restart_records(name) as records:
        # The PS restarts on the same port, so its issuer (the rows' namespace) is the same.
        port = free_port()
        spec = _ps_spec(["--port", str(port)], records)
        first = start_apps([spec])
        ps_url = first[0].url
        others = start_apps(
            [
                AppSpec("agent-provider", "example_apps.agent_provider", ("--dev", "--ps", ps_url)),
                AppSpec("starlette", "example_apps.starlette_resource", ("--dev", "--ps", ps_url)),
            ]
        )
        provider, resource = others
        client = httpx.Client(timeout=30, trust_env=False)
        try:
            agent = Agent.enroll_dev(provider.url, "trip-agent", client=client)
            links: list[Interaction] = []
            flow = MissionAgent(agent, client, interact=links.append, wait=2)
            person = ScriptedMissionPerson(ps_url)
            result: list[httpx.Response] = []
            thread = threading.Thread(
                target=lambda: result.append(flow.propose(DESCRIPTION, TOOLS, [resource.url]))
            )
            thread.start()
            deadline = time.monotonic() + 30
            while not links and time.monotonic() < deadline:
                thread.join(0.1)
            person.approve_mission(links[0].link, EDIT)
            thread.join(30)
            assert result and result[0].status_code == 200, result
            s256 = result[0].json()["s256"]
            assert flow.request("GET", resource.url + "/data").status_code == 200
            person.press(s256, "Suspend")
            detail: dict[str, Any] = {}
            while time.monotonic() < deadline + 30:
                detail = person.http.get(f"{ps_url}/missions/api/missions/{s256}").json()
                if detail["revocations"] and detail["revocations"][0]["state"] == "confirmed":
                    break
                time.sleep(0.2)
            assert [r["state"] for r in detail["revocations"]] == ["confirmed"]
            log_before = person.log(s256)
            person.close()

            stop_apps(first)  # the PS process ends ...
            first = start_apps([spec])  # ... and a new one starts on the same records
            assert first[0].url == ps_url

            person = ScriptedMissionPerson(ps_url)
            person.get(f"{ps_url}/missions")  # signs in again: sessions were in memory
            after = person.http.get(f"{ps_url}/missions/api/missions/{s256}").json()
            assert after["status"] == "suspended"
            assert after["description"] == DESCRIPTION + EDIT
            assert after["revocations"] == detail["revocations"]
            log_after = person.log(s256)
            assert log_after == log_before  # every entry, same numbers, same content
            # The binding survived: the mission is recognised as this agent's (a lost
            # binding would answer mission_not_found) and it is still suspended.
            assert _mission_person_token(flow, resource.url) == (403, "mission_suspended")
            # The revocations survived: the PS's own records still refuse the tokens.
            store = RecordStore(records)
            try:
                revoked = store.run(RecordOps(ps_url).issued_where(mission=s256))
                assert revoked and all(t.revoked_at is not None for t in revoked)
                assert all(store.run(RecordOps(ps_url).is_revoked(ps_url, t.jti)) for t in revoked)
            finally:
                store.close()
            person.press(s256, "Resume")
            assert _mission_person_token(flow, resource.url) == (200, None)
            person.close()
        finally:
            client.close()
            stop_apps(others)
            stop_apps(first)
