"""Four-party AAuth on loopback: agent, Person Server, Access Server and resource (a story of
``make demo``).

The resource belongs to an organisation that runs its own Access Server (``--as``): its
resource tokens name the AS as ``aud``.  The agent sends that resource token to its Person
Server as always; the PS (``--trust-as``) asks the person, then federates: it calls the AS
as a server, answers the AS's claims request from its own records of the person (never
``sub``), passes the AS's clarification question on to the agent and relays the answer, and
hands the AS's auth token to the agent after its delivery checks (digest 3.5).

``python -m example_apps.four_party`` runs the story alone.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from aauth_server.agent import Agent
from aauth_server.agent.flow import AgentFlow, Clarification, FlowError, Interaction
from aauth_server.tokens.jwt import TokenError, decode_unverified

from ._procs import AppSpec, RunningApp, story_main
from .demo import DemoContext, Story, abbreviate
from .three_party import PASSWORD, ScriptedPerson, requirement, say, show

NAME = "four-party"
#: What the demo AS asks: a claim of the person, then a question about the request.
CLAIM = "email"
QUESTION = "Which project will this data be used for?"
ANSWER = "The **monthly report** you asked me to prepare."


def label(note: str, response: httpx.Response) -> str:
    status, req = response.status_code, requirement(response)
    if note.startswith("resource"):
        if req == "person-token":
            return "the resource asks for a person token"
        if req == "auth-token":
            return "the resource asks for an auth token (a resource token for its AS attached)"
        return f"the resource answers {status}"
    if note.startswith("PS "):
        if status == 202 and req == "interaction":
            return "the PS answers 202: the person must approve at the PS"
        if status == 202 and req == "clarification":
            return "the PS answers 202 with the Access Server's question for the agent"
        if status == 202:
            return "the PS answers 202: waiting (for the person, or for the Access Server)"
        if status == 200:
            return "the PS answers 200 with the token"
        return f"the PS answers {status}"
    if note == "clarification answer":
        return "the agent answers; the PS relays it to the Access Server (202: keep polling)"
    return note


@dataclass
class FourParties:
    access: RunningApp
    ps: RunningApp
    provider: RunningApp
    resource: RunningApp
    agent: Agent
    person: ScriptedPerson
    exchanges: list[tuple[str, httpx.Response]] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)
    directed: list[Interaction] = field(default_factory=list)

    def first(self, note: str, status: int) -> httpx.Response | None:
        return next((r for n, r in self.exchanges if n == note and r.status_code == status), None)


def as_store(ctx: DemoContext) -> tuple[str, ...]:
    """The AS's ``--store`` (its keys go under its own per-issuer prefix)."""
    return ctx.store.args("access-server")[:2]


def start(ctx: DemoContext) -> FourParties:
    store = ctx.store.args
    (access,) = ctx.start(
        [
            AppSpec(
                "access-server",
                "example_apps.access_server",
                # No --trust-ps: any PS may ask (the PS's port is not known yet).
                ("--dev", "--require-claims", CLAIM, "--clarify", QUESTION, *as_store(ctx)),
            )
        ]
    )
    ps_args = ("--dev", "--password", PASSWORD, "--poll-interval", "1", "--trust-as", access.url)
    (ps,) = ctx.start(
        [AppSpec("person-server-4p", "example_apps.person_server", (*ps_args, *store("ps-4p")))]
    )
    provider, resource = ctx.start(
        [
            AppSpec("agent-provider-4p", "example_apps.agent_provider", ("--dev", "--ps", ps.url)),
            AppSpec(
                "resource-4p",
                "example_apps.starlette_resource",
                ("--dev", "--ps", ps.url, "--as", access.url, *store("resource-4p")),
            ),
        ]
    )
    for running in (access, ps, provider, resource):
        print(f"  {running.name:<18} {running.url}")
    agent = Agent.enroll_dev(provider.url, "four-party-agent", client=ctx.client)
    print(f"\nEnrolled agent {agent.agent_id}; its agent token names PS {ps.url}")
    person = ScriptedPerson(ps.url)
    ctx.stack.callback(person.close)
    return FourParties(access, ps, provider, resource, agent, person)


def four_party_story(ctx: DemoContext) -> None:
    story = start(ctx)
    print("\n-- /data needs an auth token from the resource's Access Server; alice's PS federates")

    def observe(note: str, request: httpx.Request, response: httpx.Response) -> None:
        story.exchanges.append((note, response))
        show(note, request, response, label)
        if story.person.errors:
            raise FlowError(f"the scripted person failed: {story.person.errors[-1]}")

    def interact(interaction: Interaction) -> None:
        story.directed.append(interaction)
        say(f"\n  (agent) directing the user to {interaction.link}")

        def approves() -> None:
            story.person.open(interaction.link)
            story.person.approve()

        story.person.act(approves)

    def clarify(asked: Clarification) -> str:
        story.questions.append(asked.question)
        say(f"\n  (agent) the Access Server asks (via the PS): {asked.question!r}")
        say(f"  (agent) answering {ANSWER!r}")
        return ANSWER

    flow = AgentFlow(
        story.agent,
        ctx.client,
        interact=interact,
        clarify=clarify,
        justification="Prepare your monthly report",
        observe=observe,
        wait=5,
    )
    try:
        response = flow.request("GET", story.resource.url + "/data")
    except FlowError as exc:
        response = exc.response or httpx.Response(599)
        ctx.report.failures.append(f"[{NAME}] flow: {exc}")
    finally:
        story.person.join()
        ctx.report.failures += [f"[{NAME}] person: {e}" for e in story.person.errors]
    print("\n  Behind the PS (its log): what it released when the AS asked for claims")
    for line in story.ps.output:
        if line.startswith(("released ", "trusts access server")):
            print(f"  (PS) {line.rstrip()}")
    check(ctx, story, response, flow)


def _claims(token: str | None) -> dict[str, object]:
    if not token:
        return {}
    try:
        return dict(decode_unverified(token).payload)
    except TokenError:
        return {}


def check(ctx: DemoContext, story: FourParties, response: httpx.Response, flow: AgentFlow) -> None:
    challenge = next(
        (r for n, r in story.exchanges if n == "resource GET" and requirement(r) == "auth-token"),
        None,
    )
    value = challenge.headers.get("aauth-requirement", "") if challenge is not None else ""
    rt = (
        value.split('resource-token="', 1)[1].split('"', 1)[0] if "resource-token=" in value else ""
    )
    aud = _claims(rt).get("aud")
    ctx.check(
        NAME,
        "resource-token-for-the-as",
        challenge is not None and challenge.status_code == 401 and aud == story.access.url,
        f"401 requirement=auth-token with a resource token whose aud is the AS {story.access.url}",
        f"{challenge and challenge.status_code} aud={aud}",
    )
    asked_person = story.first("PS auth_token", 202)
    ctx.check(
        NAME,
        "person-approves-at-the-ps",
        asked_person is not None and requirement(asked_person) == "interaction",
        "202 requirement=interaction from the PS; alice approves on its consent page",
        f"{asked_person and asked_person.status_code} requirement={requirement(asked_person)}",
    )
    released = [line for line in story.ps.output if line.startswith("released ")]
    ctx.check(
        NAME,
        "as-asks-a-claim",
        any(CLAIM in line and story.access.url in line for line in released),
        f"the PS released alice's {CLAIM} to the AS (requirement=claims)",
        str(released),
    )
    ctx.check(
        NAME,
        "as-asks-a-clarification",
        story.questions == [QUESTION] and story.first("clarification answer", 202) is not None,
        f"the AS's question {QUESTION!r} reached the agent through the PS, answered with 202",
        f"questions={story.questions}",
    )
    token = flow.auth_tokens.get(story.resource.url)
    claims = _claims(token)
    ctx.check(
        NAME,
        "auth-token-from-the-as",
        claims.get("iss") == story.access.url
        and claims.get("dwk") == "aauth-access.json"
        and claims.get("ps") == story.ps.url,
        f"an auth token issued by the AS {story.access.url} (dwk aauth-access.json, ps = the PS)",
        f"iss={claims.get('iss')} dwk={claims.get('dwk')} ps={claims.get('ps')}",
    )
    body = response.json() if response.status_code == 200 else {}
    ctx.check(
        NAME,
        "resource-200",
        response.status_code == 200 and body.get("scope") == "data.read",
        "200 from the resource with the AS's auth token (scope data.read)",
        f"{response.status_code} {abbreviate(response.text, 80)}",
    )


STORIES = [
    Story(
        NAME,
        "the resource's Access Server asks for a claim and a clarification; the PS federates",
        four_party_story,
    )
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m example_apps.four_party", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--store", default="memory://", help="memory:// or redis://")
    args = parser.parse_args(argv)
    from . import demo

    return story_main("Four-party demo", lambda: demo.run([NAME], store=args.store))


if __name__ == "__main__":
    sys.exit(main())
