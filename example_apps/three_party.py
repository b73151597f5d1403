"""The three-party AAuth story on loopback: agent, Person Server and resource (``make demo``).

Starts a Person Server, an agent provider whose agent tokens name that PS, and a resource
trusting it.  The agent reads ``/profile`` (person token, after the person logs in and
approves on the consent page), then ``/data`` (auth token, after the person asks a
clarification question, reads the agent's answer and approves), then relays an interaction
to the PS and, as the person has no PS page open, directs the user itself.  The person is
scripted over HTTP as a browser would act (session cookie, CSRF token from the page).
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx

from aauth_server.agent import Agent
from aauth_server.agent.flow import AgentFlow, Clarification, FlowError, Interaction
from aauth_server.fields import FieldError, parse_aauth_requirement, parse_signature_error

from ._procs import AppSpec, AppStartError, RunningApp, running_apps
from .demo import SHOWN_RESPONSE_HEADERS, Report, abbreviate, show_request

PASSWORD = "demo-password"  # noqa: S105 - the scripted demo person's, loopback only
QUESTION = "Why do you need access to my data?"
ANSWER = "To total this month's **records** for the report you asked for."
RELAY_CODE = "DEMO-2345"
NAME = "three-party"
#: Tokens make long lines; the walk-through shows their start.
SHOWN = 160
RESOURCE_MODULES = {
    "starlette": "example_apps.starlette_resource",
    "flask": "example_apps.flask_resource",
    "django": "example_apps.django_resource",
}
_FIELD = re.compile(r'name="(csrf|request)" value="([^"]*)"')
_print_lock = threading.Lock()


def say(line: str) -> None:
    # The person acts in a thread beside the agent's long polls: keep lines whole.
    with _print_lock:
        print(line, flush=True)


def show(note: str, request: httpx.Request, response: httpx.Response) -> None:
    with _print_lock:
        print(f"\n  [agent: {note}]")
        show_request(request)
        # Status without the protocol version: the foundation part's line counts stay its own.
        print(f"  < {response.status_code} {response.reason_phrase}")
        for name in SHOWN_RESPONSE_HEADERS:
            value = response.headers.get(name)
            if value is not None:
                print(f"  < {name.title().replace('Aauth', 'AAuth')}: {abbreviate(value, SHOWN)}")
        if response.content:
            print(f"  < {abbreviate(response.text, SHOWN)}")
        sys.stdout.flush()


class ScriptedPerson:
    """Alice at her browser: logs in, opens the link the agent gave her, asks, approves."""

    def __init__(self, ps_url: str, *, user: str = "alice", password: str = PASSWORD) -> None:
        self.ps_url = ps_url
        self.user = user
        self.password = password
        self.http = httpx.Client(timeout=10, trust_env=False, follow_redirects=True)
        self.page = ""
        self.errors: list[str] = []
        self.thread: threading.Thread | None = None

    def close(self) -> None:
        self.join()
        self.http.close()

    def act(self, script: Callable[[], None]) -> None:
        """Run ``script`` beside the agent, which keeps polling meanwhile."""

        def run() -> None:
            try:
                script()
            except (httpx.HTTPError, RuntimeError) as exc:
                self.errors.append(repr(exc))
                say(f"  (alice) FAILED: {exc!r}")

        self.join()
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join(30)
            self.thread = None

    def open(self, link: str) -> None:
        say(f"  (alice) opens {link}")
        response = self.http.get(link)
        if "/login" in response.url.path:
            say(f"  (alice) logs in as {self.user}")
            form = {"username": self.user, "password": self.password, "next": _next(response.url)}
            form["csrf"] = dict(_FIELD.findall(response.text)).get("csrf", "")
            response = self.http.post(
                self.ps_url + "/login", data=form, headers={"Origin": self.ps_url}
            )
        if response.status_code != 200 or 'name="csrf"' not in response.text:
            raise RuntimeError(f"no consent page ({response.status_code} at {response.url})")
        self.page = response.text
        say(f"  (alice) sees the consent page at {response.url.path}?{response.url.query.decode()}")

    def decide(self, action: str, **extra: str) -> str:
        fields = dict(_FIELD.findall(self.page))
        form = {"request": fields["request"], "csrf": fields["csrf"], "action": action, **extra}
        response = self.http.post(
            self.ps_url + "/consent/decide", data=form, headers={"Origin": self.ps_url}
        )
        if response.status_code != 200:
            raise RuntimeError(f"{action} answered {response.status_code}")
        self.page = response.text
        return response.text

    def ask(self, question: str) -> None:
        say(f"  (alice) asks the agent: {question}")
        self.decide("ask", question=question)

    def wait_for_answer(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while 'class="answer"><span' not in self.page:
            if time.monotonic() > deadline:
                raise RuntimeError("the agent's answer never showed on the consent page")
            time.sleep(0.2)  # what the page's own script does, a little faster
            self.page = self.http.get(self.http_url()).text
        say("  (alice) reads the agent's answer on the consent page (marked agent-asserted)")

    def http_url(self) -> str:
        request_id = dict(_FIELD.findall(self.page))["request"]
        return f"{self.ps_url}/consent?request={request_id}"

    def approve(self) -> None:
        say("  (alice) clicks Approve")
        self.decide("approve")


def _next(url: httpx.URL) -> str:
    return str(url.params.get("next", "/consent"))


@dataclass
class Story:
    client: httpx.Client
    ps: RunningApp
    resource: RunningApp
    agent: Agent
    person: ScriptedPerson
    report: Report
    exchanges: list[tuple[str, httpx.Response]] = field(default_factory=list)
    directed: list[Interaction] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)

    def check(self, step: str, ok: bool, expected: str, got: str) -> None:
        self.report.check(NAME, step, ok, expected, got)

    def observe(self, note: str, request: httpx.Request, response: httpx.Response) -> None:
        self.exchanges.append((note, response))
        show(note, request, response)
        if self.person.errors:
            # The person's script failed: nobody will decide, so stop polling now.
            raise FlowError(f"the scripted person failed: {self.person.errors[-1]}")

    def first(self, note: str, status: int) -> httpx.Response | None:
        return next((r for n, r in self.exchanges if n == note and r.status_code == status), None)

    def flow(self, interact: Callable[[Interaction], None]) -> AgentFlow:
        return AgentFlow(
            self.agent,
            self.client,
            interact=interact,
            clarify=self.clarify,
            justification="Prepare your monthly report",
            observe=self.observe,
            wait=10,
        )

    def clarify(self, asked: Clarification) -> str:
        self.questions.append(asked.question)
        say(f"\n  (agent) the PS asks: {asked.question!r}; answering {ANSWER!r}")
        return ANSWER


def requirement(response: httpx.Response | None) -> str | None:
    value = response.headers.get("aauth-requirement") if response is not None else None
    try:
        return parse_aauth_requirement(value).requirement if value else None
    except FieldError:
        return None


def error_of(response: httpx.Response | None) -> str | None:
    if response is None:
        return None
    value = response.headers.get("signature-error")
    if value:
        try:
            return parse_signature_error(value).code
        except FieldError:
            return None
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


def person_token_part(story: Story) -> AgentFlow:
    print("\n-- 1. /profile needs a person token: the PS asks alice, she approves")

    def opens_and_approves(link: str) -> None:
        story.person.open(link)
        story.person.approve()

    def interact(interaction: Interaction) -> None:
        story.directed.append(interaction)
        say(f"\n  (agent) directing the user to {interaction.link}")
        story.person.act(lambda: opens_and_approves(interaction.link))

    flow = story.flow(interact)
    response = flow.request("GET", story.resource.url + "/profile")
    story.person.join()
    challenge = story.first("resource GET", 401)
    story.check(
        "profile-challenge",
        requirement(challenge) == "person-token",
        "401 with AAuth-Requirement: requirement=person-token",
        f"{challenge and challenge.status_code} requirement={requirement(challenge)}",
    )
    pending = story.first("PS person_token", 202)
    story.check(
        "person-token-deferred",
        requirement(pending) == "interaction" and len(story.directed) == 1,
        "202 requirement=interaction from the PS, user directed to its consent page",
        f"requirement={requirement(pending)} directed={len(story.directed)}",
    )
    body = response.json() if response.status_code == 200 else {}
    story.check(
        "profile",
        response.status_code == 200 and body.get("ps") == story.ps.url,
        f"200 with ps {story.ps.url}",
        f"{response.status_code} {response.text[:80]}",
    )
    return flow


def auth_token_part(story: Story, flow: AgentFlow) -> None:
    print("\n-- 2. /data needs an auth token: alice asks a question, the agent answers")
    story.exchanges.clear()

    def person_asks_then_approves(link: str) -> None:
        story.person.open(link)
        story.person.ask(QUESTION)
        story.person.wait_for_answer()
        story.person.approve()

    def interact(interaction: Interaction) -> None:
        story.directed.append(interaction)
        say(f"\n  (agent) directing the user to {interaction.link}")
        story.person.act(lambda: person_asks_then_approves(interaction.link))

    flow.interact = interact
    response = flow.request("GET", story.resource.url + "/data")
    story.person.join()
    challenge = story.first("resource GET", 401)
    has_rt = challenge is not None and "resource-token=" in challenge.headers.get(
        "aauth-requirement", ""
    )
    story.check(
        "data-challenge",
        requirement(challenge) == "auth-token" and has_rt,
        "401 with requirement=auth-token and a resource token",
        f"requirement={requirement(challenge)} resource-token={has_rt}",
    )
    story.check(
        "auth-token-deferred",
        story.first("PS auth_token", 202) is not None,
        "202 from the PS auth token endpoint",
        str([(n, r.status_code) for n, r in story.exchanges if n == "PS auth_token"]),
    )
    asked = [r for n, r in story.exchanges if requirement(r) == "clarification"]
    story.check(
        "clarification",
        bool(asked) and story.questions == [QUESTION],
        f"a poll answers requirement=clarification asking {QUESTION!r}",
        f"questions={story.questions}",
    )
    answered = story.first("clarification answer", 202)
    story.check(
        "clarification-answer",
        answered is not None,
        "the clarification_response POST answered 202 (keep polling)",
        str([(n, r.status_code) for n, r in story.exchanges if n == "clarification answer"]),
    )
    body = response.json() if response.status_code == 200 else {}
    story.check(
        "data",
        response.status_code == 200 and body.get("scope") == "data.read",
        "200 with scope data.read",
        f"{response.status_code} {response.text[:80]}",
    )


def relay_part(story: Story, flow: AgentFlow) -> None:
    print("\n-- 3. An interaction for the person: relay via the PS first, else direct the user")
    story.exchanges.clear()
    story.directed.clear()
    made_up = Interaction(story.resource.url + "/aauth/interact", RELAY_CODE)

    def interact(interaction: Interaction) -> None:
        story.directed.append(interaction)
        say(f"\n  (agent) PS cannot reach alice: directing the user itself to {interaction.link}")

    flow.interact = interact
    outcome = flow.relay(made_up, description="Confirm the report export")
    story.check(
        "relay",
        outcome.response.status_code == 424
        and error_of(outcome.response) == "interaction_unavailable",
        "424 interaction_unavailable (alice has no PS page open)",
        f"{outcome.response.status_code} {error_of(outcome.response)}",
    )
    story.check(
        "fallback",
        not outcome.relayed and story.directed == [made_up],
        f"the agent directs the user itself to {made_up.link}",
        f"relayed={outcome.relayed} directed={story.directed}",
    )


def run(
    *, resource: str = "starlette", store: str = "memory://", store_prefix: str | None = None
) -> int:
    """The whole story; 0 when every outcome is as the protocol requires."""
    started = time.monotonic()
    ps_args = ["--dev", "--password", PASSWORD, "--store", store, "--poll-interval", "1"]
    if store_prefix:
        ps_args += ["--store-prefix", store_prefix]
    print(f"\n=== Three-party: agent, Person Server and {resource} resource ===")
    report = Report()
    with (
        running_apps([AppSpec("person-server", "example_apps.person_server", tuple(ps_args))]) as (
            ps,
        ),
        running_apps(
            [
                AppSpec("agent-provider", "example_apps.agent_provider", ("--dev", "--ps", ps.url)),
                AppSpec(resource, RESOURCE_MODULES[resource], ("--dev", "--ps", ps.url)),
            ]
        ) as (provider, app),
        httpx.Client(timeout=30, trust_env=False) as client,
    ):
        for running in (ps, provider, app):
            print(f"  {running.name:<15} {running.url}")
        agent = Agent.enroll_dev(provider.url, "report-agent", client=client)
        print(f"\nEnrolled agent {agent.agent_id}; its agent token names PS {ps.url}")
        print(f"  agent token: {abbreviate(agent.token)}")
        person = ScriptedPerson(ps.url)
        story = Story(client, ps, app, agent, person, report)
        try:
            flow = person_token_part(story)
            auth_token_part(story, flow)
            relay_part(story, flow)
        except (FlowError, httpx.HTTPError, KeyError, ValueError) as exc:
            detail = getattr(exc, "response", None)
            report.failures.append(f"[{NAME}] stopped: {exc!r} {detail and detail.text}")
            print(f"  [{NAME}] FAIL stopped: {exc!r}")
        finally:
            person.close()
        report.failures += [f"[{NAME}] person: {e}" for e in person.errors]
        if report.failures:
            for running in (ps, app):
                log = running.log().strip().splitlines()[-30:]
                print(f"\n--- {running.name} output ---\n" + "\n".join(log), file=sys.stderr)
    elapsed = time.monotonic() - started
    if report.failures:
        print(f"\nThree-party demo FAILED ({elapsed:.1f}s):", file=sys.stderr)
        for failure in report.failures:
            print("  " + failure, file=sys.stderr)
        return 1
    print(f"\nThree-party story complete: every outcome as the protocol requires ({elapsed:.1f}s).")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m example_apps.three_party", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--resource", choices=sorted(RESOURCE_MODULES), default="starlette")
    parser.add_argument("--store", default="memory://", help="the PS store: memory:// or redis://")
    parser.add_argument("--store-prefix", help="key prefix in a shared Redis")
    args = parser.parse_args(argv)
    try:
        return run(resource=args.resource, store=args.store, store_prefix=args.store_prefix)
    except AppStartError as exc:
        print(f"\nThree-party demo FAILED: an app did not start.\n{exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nInterrupted; servers stopped.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
