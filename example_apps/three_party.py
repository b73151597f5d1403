"""Three-party AAuth on loopback: agent, Person Server and resource (stories of ``make demo``).

Starts a Person Server, an agent provider whose agent tokens name that PS, and a resource
trusting it (once, shared by the stories below).  The person is scripted over HTTP as a
browser acts (session cookie, CSRF token from the page).

- ``three-party``: the agent reads ``/profile`` (person token, after the person logs in and
  approves on the consent page), then ``/data`` (auth token, after the person asks a
  clarification question, reads the agent's answer and approves), then relays an
  interaction to the PS and, as the person has no PS page open, directs the user itself;
- ``deferred``: ``/deferred`` is protected with ``deferred=True``: the resource holds the
  call and answers ``202`` with its own pending URL; the agent gets an auth token from the
  PS and polls the resource, which runs the held call then;
- ``ps-mounts``: the same Person Server mounted in Flask and in Django answers a person
  token request (``202``, the person approves, ``200``).

``python -m example_apps.three_party`` runs the first story alone.
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
from aauth_server.tokens.jwt import decode_unverified

from ._procs import AppSpec, RunningApp, story_main
from .demo import SHOWN_RESPONSE_HEADERS, DemoContext, Report, Story, abbreviate, show_request

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


def label(note: str, response: httpx.Response) -> str:
    """What one exchange is, in words: who answers what, and why."""
    status, req = response.status_code, requirement(response)
    if note.startswith("resource"):
        if status == 202:
            return "the resource holds the call: 202 and its own pending URL (deferred=True)"
        if note == "resource poll":
            return "the resource runs the held call now and answers with its result"
        if req == "person-token":
            return "the resource asks for a person token"
        if req == "auth-token":
            return "the resource asks for an auth token (a resource token for the PS attached)"
        return f"the resource answers {status}"
    if note.startswith("PS "):
        kind = note.split(" ", 1)[1]
        if status == 202 and req == "interaction":
            return f"the PS answers 202 to the {kind} request: the person must approve"
        if status == 202 and req == "clarification":
            return "the PS answers 202 with the person's question for the agent"
        if status == 202:
            return "the PS answers 202: still waiting for the person"
        if kind == "relay" and status == 424:
            return "the PS cannot reach the person (424): the agent directs the user itself"
        if status == 200 and kind == "poll":
            return "the PS answers 200 with the token (the person approved)"
        if status == 200 and kind in ("person_token", "auth_token"):
            return f"the PS answers 200 at once with the {kind.replace('_', ' ')}"
        return f"the PS answers {status}"
    if note == "clarification answer":
        return "the agent answers the question; the PS answers 202 (keep polling)"
    return note


def show(
    note: str,
    request: httpx.Request,
    response: httpx.Response,
    describe: Callable[[str, httpx.Response], str] = label,
) -> None:
    with _print_lock:
        print(f"\n  [agent: {note}] {describe(note, response)}")
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
class Parties:
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


def person_token_part(story: Parties) -> AgentFlow:
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


def auth_token_part(story: Parties, flow: AgentFlow) -> None:
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


def relay_part(story: Parties, flow: AgentFlow) -> None:
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


def parties(ctx: DemoContext) -> Parties:
    """The PS, agent provider, resource and enrolled agent, started on first use."""
    found = ctx.shared.get(NAME)
    if isinstance(found, Parties):
        return found
    resource = str(ctx.shared.get("three-party.resource", "starlette"))
    ps_args = ["--dev", "--password", PASSWORD, "--poll-interval", "1"]
    (ps,) = ctx.start(
        [AppSpec("person-server", "example_apps.person_server", (*ps_args, *_store(ctx, "ps")))]
    )
    resource_args = ["--dev", "--ps", ps.url]
    if resource == "starlette":  # the one example resource that takes a key prefix
        resource_args += _store(ctx, "resource")
    provider, app = ctx.start(
        [
            AppSpec("agent-provider", "example_apps.agent_provider", ("--dev", "--ps", ps.url)),
            AppSpec(resource, RESOURCE_MODULES[resource], tuple(resource_args)),
        ]
    )
    for running in (ps, provider, app):
        print(f"  {running.name:<15} {running.url}")
    agent = Agent.enroll_dev(provider.url, "report-agent", client=ctx.client)
    print(f"\nEnrolled agent {agent.agent_id}; its agent token names PS {ps.url}")
    print(f"  agent token: {abbreviate(agent.token)}")
    person = ScriptedPerson(ps.url)
    ctx.stack.callback(person.close)
    found = Parties(ctx.client, ps, app, agent, person, ctx.report)
    ctx.shared[NAME] = found
    return found


def _store(ctx: DemoContext, name: str) -> tuple[str, ...]:
    return ctx.store.args(name)


def _flow(ctx: DemoContext, story: Parties) -> AgentFlow:
    flow = ctx.shared.get("three-party.flow")
    if not isinstance(flow, AgentFlow):
        flow = story.flow(lambda interaction: None)
        ctx.shared["three-party.flow"] = flow
    return flow


def _settle(story: Parties) -> None:
    story.person.join()
    story.report.failures += [f"[{NAME}] person: {e}" for e in story.person.errors]
    story.person.errors.clear()


def three_party_story(ctx: DemoContext) -> None:
    story = parties(ctx)
    try:
        flow = person_token_part(story)
        ctx.shared["three-party.flow"] = flow
        auth_token_part(story, flow)
        relay_part(story, flow)
    finally:
        _settle(story)


def deferred_story(ctx: DemoContext) -> None:
    story = parties(ctx)
    flow = _flow(ctx, story)
    print(
        "\n-- /deferred is an auth-token endpoint with deferred=True: the resource holds the call"
    )
    story.exchanges.clear()
    # Without the auth token an earlier story left: the call starts from the person token.
    flow.auth_tokens.pop(story.resource.url, None)

    def interact(interaction: Interaction) -> None:
        story.directed.append(interaction)
        say(f"\n  (agent) directing the user to {interaction.link}")

        def approves() -> None:
            story.person.open(interaction.link)
            story.person.approve()

        story.person.act(approves)

    flow.interact = interact
    try:
        response = flow.request("GET", story.resource.url + "/deferred")
    finally:
        _settle(story)
    held = story.first("resource GET", 202)
    location = held.headers.get("location", "") if held is not None else ""
    ctx.check(
        "deferred",
        "deferred-held",
        held is not None
        and requirement(held) == "auth-token"
        and location.startswith(story.resource.url + "/aauth/pending/"),
        "202 from the resource: requirement=auth-token, Location on the resource",
        f"{held and held.status_code} requirement={requirement(held)} location={location}",
    )
    ctx.check(
        "deferred",
        "deferred-auth-token",
        story.first("PS auth_token", 202) is not None
        or story.first("PS auth_token", 200) is not None,
        "the PS issues the auth token (after the person approves)",
        str([(n, r.status_code) for n, r in story.exchanges if n.startswith("PS")]),
    )
    body = response.json() if response.status_code == 200 else {}
    ctx.check(
        "deferred",
        "deferred-delivered",
        response.status_code == 200 and body.get("deferred") is True,
        "200 from the resource's pending URL: the held call ran with the auth token",
        f"{response.status_code} {response.text[:80]}",
    )


def ps_mounts_story(ctx: DemoContext) -> None:
    story = parties(ctx)
    print("\n-- The same Person Server mounted in Flask and in Django: a person token each")
    ps_args = ("--dev", "--password", PASSWORD, "--poll-interval", "1")
    mounts = ctx.start(
        [
            AppSpec(
                f"{framework}-ps",
                "example_apps.person_server",
                (*ps_args, "--framework", framework, *_store(ctx, f"{framework}-ps")),
            )
            for framework in ("flask", "django")
        ]
    )
    for mounted in mounts:
        framework = mounted.name.removesuffix("-ps")
        print(f"\n  {framework}-mounted PS at {mounted.url}")
        person = ScriptedPerson(mounted.url)
        story.exchanges.clear()

        def interact(interaction: Interaction, person: ScriptedPerson = person) -> None:
            say(f"\n  (agent) directing the user to {interaction.link}")

            def approves() -> None:
                person.open(interaction.link)
                person.approve()

            person.act(approves)

        flow = AgentFlow(
            story.agent,
            ctx.client,
            interact=interact,
            ps=mounted.url,
            observe=story.observe,
            wait=5,
        )
        try:
            token = flow.person_token(story.resource.url)
        except FlowError as exc:
            token = ""
            story.report.failures.append(f"[{NAME}] {framework} PS: {exc!r}")
        finally:
            person.close()
            story.report.failures += [f"[{NAME}] person: {e}" for e in person.errors]
        started = story.first("PS person_token", 202)
        ctx.check(
            "ps-mounts",
            f"{framework}-ps-202",
            started is not None and requirement(started) == "interaction",
            f"202 requirement=interaction from the {framework}-mounted PS",
            str([(n, r.status_code) for n, r in story.exchanges]),
        )
        issuer = decode_unverified(token).payload.get("iss") if token else None
        ctx.check(
            "ps-mounts",
            f"{framework}-ps-token",
            issuer == mounted.url,
            f"a person token issued by {mounted.url}",
            f"iss={issuer}",
        )


STORIES = [
    Story(
        NAME,
        "person token, auth token with a clarification round, the interaction relay",
        three_party_story,
    ),
    Story(
        "deferred",
        "the resource holds the call (deferred=True) until an auth token comes",
        deferred_story,
    ),
    Story("ps-mounts", "the Person Server mounted in Flask and in Django", ps_mounts_story),
]


def run(
    *, resource: str = "starlette", store: str = "memory://", store_prefix: str | None = None
) -> int:
    """The three-party story alone; 0 when every outcome is as the protocol requires."""
    from . import demo

    del store_prefix  # the demo makes a fresh prefix per run
    return demo.run([NAME], store=store, options={"three-party.resource": resource})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m example_apps.three_party", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--resource", choices=sorted(RESOURCE_MODULES), default="starlette")
    parser.add_argument("--store", default="memory://", help="the PS store: memory:// or redis://")
    args = parser.parse_args(argv)
    return story_main("Three-party demo", lambda: run(resource=args.resource, store=args.store))


if __name__ == "__main__":
    sys.exit(main())
