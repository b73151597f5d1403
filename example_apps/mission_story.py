"""The mission story (issue 10 item 9), told against real servers on loopback.

The agent proposes a mission; the person approves it on the mission consent page (editing its
description); tokens inside the mission are granted without asking; a request outside it is
denied ("outside mission scope"); the person suspends the mission in Mission Control, so the
agent's auth token is refused at the resource (``401 revoked_jwt``) and new requests answer
``mission_suspended``; the person resumes it and a fresh request is granted; the agent says
it is done, the person asks a follow-up (the agent gets it as a clarification and answers),
then accepts: the mission ends ``completed``.  Last, the mission's audit trail.

The agent side is here; the person is anything with the :class:`Person` methods: the demo's
scripted browser (HTTP with cookies and CSRF tokens, :class:`ScriptedMissionPerson`) or the
end-to-end test's headless Chromium.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from aauth_server.agent import Agent
from aauth_server.agent.flow import AgentFlow, Clarification, FlowError, Interaction
from aauth_server.keys.jwk import b64url_decode, b64url_encode

from ._procs import AppSpec
from .demo import DemoContext, Report, Story, abbreviate
from .three_party import PASSWORD, ScriptedPerson, error_of, requirement, say

NAME = "mission"
DESCRIPTION = "# Plan a trip to Kyoto\n\nFind flights and read my **travel data**."
EDIT = "\n\nNo more than two nights."
TOOLS = [{"name": "WebSearch", "description": "Search the web"}]
OUTSIDE = "https://payments.example"
SUMMARY = "Found flights and read your travel data. **Done.**"
FOLLOW_UP = "Did you also check the return flight?"
ANSWER = "Yes: the return on May 7 is in the summary."
WAIT = 30.0


class MissionAgent(AgentFlow):
    """An :class:`AgentFlow` that proposes, uses and completes a mission."""

    mission: str | None = None

    def person_token(self, resource: str) -> str:
        body: dict[str, Any] = {"resource": resource, **self._hints()}
        if self.mission is not None:
            body["mission_s256"] = self.mission
        return self._token("person_token_endpoint", "person_token", body)

    def ask_person_token(self, resource: str) -> httpx.Response:
        """One person-token request naming the mission; the raw answer (no settling)."""
        url = str(self.ps_metadata()["person_token_endpoint"])
        body = {"resource": resource, "mission_s256": self.mission, **self._hints()}
        return self._send("PS person_token", "POST", url, self.agent.token, body)

    def propose(
        self, description: str, tools: Sequence[Mapping[str, str]], resources: Sequence[str]
    ) -> httpx.Response:
        url = str(self.ps_metadata()["mission_endpoint"])
        body = {
            "description": description,
            "tools": list(tools),
            "resources": list(resources),
            **self._hints(),
        }
        response = self._send("PS mission proposal", "POST", url, self.agent.token, body)
        if response.status_code == 202:
            response = self._settle_ps(response)
        if response.status_code == 200:
            approval = response.json()
            self.mission = approval["s256"]
            self.person_tokens.update(approval.get("person_tokens") or {})
        return response

    def complete(self, summary: str) -> httpx.Response:
        url = f"{self.ps_metadata()['mission_endpoint']}/{self.mission}"
        body = {"action": "completion", "summary": summary, **self._hints()}
        response = self._send("PS mission completion", "POST", url, self.agent.token, body)
        if response.status_code == 202:
            response = self._settle_ps(response)
        return response


class Person(Protocol):
    """What the person does in the story (a scripted browser or headless Chromium)."""

    def approve_mission(self, link: str, edit: str) -> None: ...

    def press(self, s256: str, label: str) -> None: ...

    def follow_up(self, link: str, question: str) -> None: ...

    def accept_after_answer(self, answer: str) -> None: ...

    def log(self, s256: str) -> list[dict[str, Any]]: ...


@dataclass
class Outcome:
    s256: str | None = None
    lines: list[str] = field(default_factory=list)


def _background(work: Callable[[], httpx.Response]) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(work())
        except (FlowError, httpx.HTTPError) as exc:
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def _joined(thread: threading.Thread, result: list[Any]) -> httpx.Response:
    thread.join(WAIT * 2)
    if thread.is_alive() or not result:
        raise FlowError("the agent's request did not finish")
    if isinstance(result[0], Exception):
        raise result[0]
    response: httpx.Response = result[0]
    return response


def _hhmmss(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S")


def _host(url: object) -> str:
    return urlsplit(str(url)).netloc or str(url)


def audit_line(entry: Mapping[str, Any]) -> str:
    """One log entry as an audit line: ``10:00 agent -> flights.example scope: search granted``."""
    at = _hhmmss(float(entry["at"]))
    event = entry["event"]
    agent = str(entry.get("agent") or entry.get("actor") or "")
    agent = agent.split("@")[0].removeprefix("aauth:") if agent.startswith("aauth:") else agent
    scope = " ".join(entry.get("scope") or [])
    if event == "decision" and entry.get("kind") not in ("person", "auth"):
        return f"{at} {agent}: {str(entry.get('kind')).replace('_', ' ')} {entry['decision']}" + (
            f" (by {entry.get('actor')})"
        )
    if event == "decision":
        what = f"{entry.get('kind')} token" + (f" scope: {scope}" if scope else "")
        why = f" - {entry['reason']}" if entry.get("reason") else ""
        by = f" (by {entry.get('actor')})"
        return f"{at} {agent} -> {_host(entry.get('resource'))} {what} {entry['decision']}{by}{why}"
    if event == "token_issued":
        return f"{at} {agent} <- {_host(entry.get('resource'))} {entry.get('kind')} token issued"
    if event == "permission":
        return f"{at} {agent} -> tool {entry.get('action')} {entry.get('decision')}"
    if event == "revocation":
        return (
            f"{at} PS -> {_host(entry.get('resource'))} revoke {entry.get('kind')} token: "
            f"{entry.get('decision')}"
        )
    if event in ("approved", "suspended", "resumed", "terminated"):
        reason = f" ({entry['reason']})" if entry.get("reason") else ""
        return f"{at} {entry.get('actor')}: mission {event}{reason}"
    if event == "revocations_queued":
        hosts = ", ".join(_host(r) for r in entry.get("resources") or [])
        return f"{at} PS: revoke {entry.get('tokens')} token(s) at {hosts}"
    return f"{at} {agent}: {event.replace('_', ' ')}"


def tell(
    *,
    client: httpx.Client,
    agent: Agent,
    resource: str,
    person: Person,
    report: Report,
    observe: Callable[[str, httpx.Request, httpx.Response], None] | None = None,
) -> Outcome:
    """The whole story; each outcome goes to ``report`` as a PASS/FAIL line."""
    outcome = Outcome()
    links: queue.Queue[Interaction] = queue.Queue()
    answered: list[str] = []

    def clarify(asked: Clarification) -> str:
        say(f"\n  (agent) the person asks: {asked.question!r}; answering {ANSWER!r}")
        answered.append(asked.question)
        return ANSWER

    flow = MissionAgent(
        agent,
        client,
        interact=links.put,
        clarify=clarify,
        justification="Plan your trip",
        observe=observe,
        wait=10,
    )

    def check(step: str, ok: bool, expected: str, got: str) -> None:
        report.check(NAME, step, ok, expected, got)

    print("\n-- 1. The agent proposes a mission; the person approves it (editing its description)")
    thread, result = _background(lambda: flow.propose(DESCRIPTION, TOOLS, [resource]))
    link = links.get(timeout=WAIT).link
    say(f"  (agent) asks the person to review the mission at {link}")
    person.approve_mission(link, EDIT)
    approved = _joined(thread, result)
    body = approved.json() if approved.status_code == 200 else {}
    blob = b64url_decode(body["mission"]) if "mission" in body else b""
    s256_ok = bool(blob) and b64url_encode(hashlib.sha256(blob).digest()) == body.get("s256")
    check(
        "approval",
        approved.status_code == 200 and s256_ok and resource in body.get("person_tokens", {}),
        "200 {s256, mission, capabilities, person_tokens}; s256 hashes the mission bytes",
        f"{approved.status_code} {abbreviate(approved.text, 120)}",
    )
    check(
        "edited",
        (DESCRIPTION + EDIT).encode() in blob.replace(b"\\n", b"\n"),
        "the blob carries the description as the person edited it",
        abbreviate(blob.decode("utf-8", "replace"), 120),
    )
    outcome.s256 = s256 = str(body.get("s256"))
    say(f"  mission {s256}")

    print("\n-- 2. Inside the mission: tokens granted without asking")
    profile = flow.request("GET", resource + "/profile")
    check(
        "inside-person",
        profile.status_code == 200,
        "200 at /profile with the person token from the approval",
        f"{profile.status_code}",
    )
    data = flow.request("GET", resource + "/data")
    check(
        "inside-auth",
        data.status_code == 200 and links.empty(),
        "200 at /data: the auth token was granted without asking the person",
        f"{data.status_code} asked={not links.empty()}",
    )
    auth_token = flow.auth_tokens.get(resource, "")

    print("\n-- 3. Outside the mission: denied")
    outside = flow.ask_person_token(OUTSIDE)
    detail = outside.json().get("detail") if outside.status_code == 403 else None
    check(
        "outside",
        outside.status_code == 403 and error_of(outside) == "denied",
        '403 denied "outside mission scope"',
        f"{outside.status_code} {error_of(outside)} {detail}",
    )

    print("\n-- 4. The person suspends the mission in Mission Control")
    person.press(s256, "Suspend")
    refused = None
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        refused = flow._send(
            "resource GET (old auth token)", "GET", resource + "/data", auth_token, None
        )
        if refused.status_code == 401:
            break
        time.sleep(0.25)
    code = error_of(refused)
    check(
        "suspended-at-resource",
        refused is not None and refused.status_code == 401 and code == "revoked_jwt",
        "the agent's auth token is refused at the resource: 401 revoked_jwt",
        f"{refused and refused.status_code} {code}",
    )
    blocked = flow.ask_person_token(resource)
    check(
        "suspended-at-ps",
        blocked.status_code == 403 and error_of(blocked) == "mission_suspended",
        "new requests naming the mission: 403 mission_suspended",
        f"{blocked.status_code} {error_of(blocked)}",
    )

    print("\n-- 5. The person resumes it; a fresh request is granted")
    person.press(s256, "Resume")
    flow.person_tokens.clear()
    flow.auth_tokens.clear()
    again = flow.request("GET", resource + "/data")
    check(
        "resumed",
        again.status_code == 200,
        "200 at /data with fresh person and auth tokens",
        f"{again.status_code} {requirement(again)}",
    )

    print("\n-- 6. The agent says it is done; the person asks a follow-up, then accepts")
    thread, result = _background(lambda: flow.complete(SUMMARY))
    link = links.get(timeout=WAIT).link
    say(f"  (agent) asks the person to review the summary at {link}")
    person.follow_up(link, FOLLOW_UP)
    person.accept_after_answer(ANSWER)
    done = _joined(thread, result)
    finished = done.json() if done.status_code == 200 else {}
    check(
        "follow-up",
        answered == [FOLLOW_UP],
        "the follow-up reached the agent as a clarification",
        f"{answered}",
    )
    check(
        "completed",
        done.status_code == 200 and finished.get("termination_reason") == "completed",
        "200: the mission ended completed",
        f"{done.status_code} {abbreviate(done.text, 120)}",
    )

    print("\n-- 7. The mission's audit trail (Mission Control)")
    entries = person.log(s256)
    outcome.lines = [audit_line(e) for e in reversed(entries)]
    for line in outcome.lines:
        print("  " + line)
    text = "\n".join(outcome.lines)
    check(
        "timeline",
        all(
            word in text
            for word in ("granted", "denied", "outside mission scope", "suspended", "resumed")
        )
        and "mission terminated (completed)" in text,
        "the timeline shows grants, the denial and why, suspend, resume and completion",
        abbreviate(text, 200),
    )
    return outcome


class ScriptedMissionPerson(ScriptedPerson):
    """Alice at her browser over HTTP (cookies, CSRF tokens from the pages)."""

    password = PASSWORD

    def approve_mission(self, link: str, edit: str) -> None:
        self.open(link)
        fields = self._fields()
        description = self._textarea("description") + edit
        say("  (alice) edits the description and clicks Approve")
        self._post("/consent/decide", {**fields, "action": "approve", "description": description})

    def get(self, url: str) -> httpx.Response:
        """GET ``url``, signing in first when the PS asks for it."""
        response = self.http.get(url)
        if "/login" in response.url.path:
            say("  (alice) signs in")
            csrf = self._field(response.text, "csrf")
            form = {"username": "alice", "password": self.password, "csrf": csrf}
            form["next"] = str(response.url.params.get("next", "/"))
            response = self.http.post(
                self.ps_url + "/login", data=form, headers={"Origin": self.ps_url}
            )
        return response

    def press(self, s256: str, label: str) -> None:
        page = self.get(f"{self.ps_url}/missions/{s256}")
        if f">{label}</button>" not in page.text:
            raise RuntimeError(f"no {label} button on the mission page")
        say(f"  (alice) clicks {label} in Mission Control")
        csrf = self._field(page.text, "csrf")
        self._post(f"/missions/{s256}/status", {"csrf": csrf, "action": label.lower()})

    def follow_up(self, link: str, question: str) -> None:
        self.open(link)
        say(f"  (alice) reads the summary and asks a follow-up: {question}")
        self._post(
            "/consent/decide", {**self._fields(), "action": "followup", "question": question}
        )

    def accept_after_answer(self, answer: str) -> None:
        deadline = time.monotonic() + WAIT
        url = self.http_url()
        while answer.split(": ", 1)[-1].split(" is ")[0] not in self.page:
            if time.monotonic() > deadline:
                raise RuntimeError("the agent's answer never showed")
            time.sleep(0.2)
            self.page = self.http.get(url).text
        say("  (alice) reads the agent's answer and clicks Accept")
        self._post("/consent/decide", {**self._fields(), "action": "accept"})

    def log(self, s256: str) -> list[dict[str, Any]]:
        self.get(f"{self.ps_url}/missions")  # signed in
        response = self.http.get(f"{self.ps_url}/missions/api/missions/{s256}/log?limit=200")
        entries: list[dict[str, Any]] = response.json()["entries"]
        return entries

    # -- helpers ---------------------------------------------------------------------------

    def _fields(self) -> dict[str, str]:
        return {
            "request": self._field(self.page, "request"),
            "csrf": self._field(self.page, "csrf"),
        }

    @staticmethod
    def _field(html: str, name: str) -> str:
        import re

        match = re.search(rf'name="{name}" value="([^"]*)"', html)
        if match is None:
            raise RuntimeError(f"no {name} field on the page")
        return match.group(1)

    def _textarea(self, name: str) -> str:
        import html as html_module
        import re

        match = re.search(
            rf'<textarea id="{name}" name="{name}"[^>]*>(.*?)</textarea>', self.page, re.S
        )
        if match is None:
            raise RuntimeError(f"no {name} box on the page")
        return html_module.unescape(match.group(1))

    def _post(self, path: str, form: Mapping[str, str]) -> None:
        response = self.http.post(
            self.ps_url + path, data=dict(form), headers={"Origin": self.ps_url}
        )
        if response.status_code != 200:
            raise RuntimeError(f"{path} answered {response.status_code}")
        self.page = response.text


def demo_story(ctx: DemoContext) -> None:
    """``make demo``'s mission story: its own PS (records in a SQLite file it prints), agent
    provider and Starlette resource; the person scripted over HTTP."""
    ps_args = ("--dev", "--password", PASSWORD, "--poll-interval", "1")
    ps_args += ("--mission-scope", "data.read", *ctx.store.args("missions-ps"))
    (ps,) = ctx.start([AppSpec("person-server", "example_apps.person_server", ps_args)])
    provider, resource = ctx.start(
        [
            AppSpec("agent-provider", "example_apps.agent_provider", ("--dev", "--ps", ps.url)),
            AppSpec(
                "starlette",
                "example_apps.starlette_resource",
                ("--dev", "--ps", ps.url, *ctx.store.args("missions-resource")),
            ),
        ]
    )
    for app in (ps, provider, resource):
        print(f"  {app.name:<15} {app.url}")
    records = next((line for line in ps.output if line.startswith("records:")), "")
    print(f"  {records.strip()}")
    agent = Agent.enroll_dev(provider.url, "trip-agent", client=ctx.client)
    print(f"\nEnrolled agent {agent.agent_id}; its agent token names PS {ps.url}")
    person = ScriptedMissionPerson(ps.url)
    ctx.stack.callback(person.close)
    try:
        tell(
            client=ctx.client, agent=agent, resource=resource.url, person=person, report=ctx.report
        )
    except FlowError as exc:
        ctx.report.failures.append(f"[{NAME}] stopped: {exc!r}")
        print(f"  [{NAME}] FAIL stopped: {exc!r}")


STORIES = [
    Story(
        "missions",
        "a mission: proposal, grants inside it, Mission Control's Suspend and Resume, completion",
        demo_story,
    )
]

__all__ = [
    "STORIES",
    "MissionAgent",
    "Outcome",
    "Person",
    "ScriptedMissionPerson",
    "audit_line",
    "demo_story",
    "tell",
]
