"""Walk through AAuth on loopback, one story after another (``make demo``).

Stories (``--story NAME``, repeatable; all by default, in this order):

- ``foundation``: an agent provider and the Starlette, Flask and Django resources; for each
  resource an unsigned request challenged, a signed one accepted, a tampered one rejected;
- ``three-party`` (:mod:`example_apps.three_party`): person token, auth token with a
  clarification round, the interaction relay and its fallback, with a Starlette-mounted PS;
- ``deferred``: the resource's own deferred delivery (``deferred=True``): it holds the call
  (``202`` + its pending URL) while the agent gets an auth token, then runs it on the poll;
- ``ps-mounts``: the same Person Server mounted in Flask and in Django, briefly;
- ``missions`` (:mod:`example_apps.mission_story`): a mission proposed and approved (the
  person edits it), tokens inside it granted without asking, one outside it denied, Suspend
  in Mission Control (the agent's auth token refused at the resource), Resume, completion
  after a follow-up, and the audit trail; the PS keeps its records in a SQLite file;
- ``four-party`` (:mod:`example_apps.four_party`): a resource whose Access Server asks, through
  the person's PS, for a claim and a clarification; the person approves at the PS, the AS
  issues the auth token, the resource answers 200.
- ``cascade`` (:mod:`example_apps.cascade_story`): the agent provider revokes the agent token
  at the PS, which revokes the agent's tokens at the resource before it answers ``200``: the
  resource refuses the auth token with ``revoked_jwt``.

Pending state lives in Redis when one answers on 127.0.0.1:6379 (under a fresh key prefix,
deleted afterwards), else in memory; the first line says which (``--store`` chooses).

Add a story: write ``def my_story(ctx: DemoContext) -> None`` that checks outcomes with
``ctx.check(...)`` (servers go on ``ctx.stack``, shared parties via ``ctx.shared``) and
append ``Story("name", "what it shows", my_story)`` to :data:`STORIES`.  Exits non-zero if
any outcome differs from what the protocol requires.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from aauth_server.agent import Agent
from aauth_server.fields import FieldError, parse_aauth_requirement, parse_signature_error
from aauth_server.resource.config import ConfigurationError, check_store_uri
from aauth_server.storage.uri import redis_url

from ._procs import AppSpec, AppStartError, RunningApp, running_apps, story_main

LOCAL_REDIS = "redis://127.0.0.1:6379/0"

PROVIDER = AppSpec("agent-provider", "example_apps.agent_provider", ("--dev",))
RESOURCES = (
    AppSpec("starlette", "example_apps.starlette_resource", ("--dev", "--trust-any-ps")),
    AppSpec("flask", "example_apps.flask_resource", ("--dev", "--trust-any-ps")),
    AppSpec("django", "example_apps.django_resource", ("--dev", "--trust-any-ps")),
)
SHOWN_REQUEST_HEADERS = ("host", "signature-input", "signature", "signature-key")
SHOWN_RESPONSE_HEADERS = ("aauth-requirement", "signature-error")
ABBREVIATE_AT = 60


def abbreviate(value: str, limit: int = ABBREVIATE_AT) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


def show_request(request: httpx.Request, note: str = "") -> None:
    target = request.url.raw_path.decode("ascii")
    print(f"  > {request.method} {target} HTTP/1.1{'   # ' + note if note else ''}")
    for name in SHOWN_REQUEST_HEADERS:
        value = request.headers.get(name)
        if value is not None:
            print(f"  > {_title(name)}: {abbreviate(value)}")


def show_response(response: httpx.Response) -> None:
    print(f"  < HTTP/1.1 {response.status_code} {response.reason_phrase}")
    for name in SHOWN_RESPONSE_HEADERS:
        value = response.headers.get(name)
        if value is not None:
            print(f"  < {_title(name)}: {value}")
    if response.content:
        print(f"  < {response.text}")


def _title(name: str) -> str:
    return "-".join("AAuth" if part == "aauth" else part.capitalize() for part in name.split("-"))


@dataclass
class Report:
    failures: list[str] = field(default_factory=list)

    def check(self, resource: str, step: str, ok: bool, expected: str, got: str) -> None:
        # One greppable line per outcome: the e2e test reads these.
        if ok:
            print(f"  [{resource}] PASS {step}: {expected}")
        else:
            message = f"[{resource}] FAIL {step}: expected {expected}, got {got}"
            print("  " + message)
            self.failures.append(message)


def _requirement(response: httpx.Response) -> str | None:
    value = response.headers.get("aauth-requirement")
    try:
        return parse_aauth_requirement(value).requirement if value else None
    except FieldError:
        return None


def _signature_error(response: httpx.Response) -> str | None:
    value = response.headers.get("signature-error")
    try:
        return parse_signature_error(value).code if value else None
    except FieldError:
        return None


def _agent_in(response: httpx.Response) -> object:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("agent") if isinstance(body, dict) else None


def walk(
    client: httpx.Client, agent: Agent, app: RunningApp, elsewhere: str, report: Report
) -> None:
    """The three exchanges against one resource."""
    url = app.url + "/whoami"
    print(f"\n=== {app.name} resource at {app.url} ===")

    print("\n-- 1. No signature: the resource says what it needs")
    request = client.build_request("GET", url)
    show_request(request)
    response = client.send(request)
    show_response(response)
    requirement = _requirement(response)
    report.check(
        app.name,
        "unsigned",
        response.status_code == 401 and requirement == "agent-token",
        "401 with AAuth-Requirement: requirement=agent-token",
        f"{response.status_code} requirement={requirement}",
    )

    print("\n-- 2. Signed with the agent key, agent token in Signature-Key: accepted")
    request = client.build_request("GET", url)
    agent.auth().sign(request)
    show_request(request)
    response = client.send(request)
    show_response(response)
    who = _agent_in(response)
    report.check(
        app.name,
        "signed",
        response.status_code == 200 and who == agent.agent_id,
        f"200 with agent {agent.agent_id}",
        f"{response.status_code} agent={who}",
    )

    print("\n-- 3. Tampered in flight: signed for another host, delivered here")
    # The signature covers @authority, so redirecting a signed request to a different
    # server must break it: this is what stops cross-resource replay.
    original = client.build_request("GET", elsewhere + "/whoami")
    agent.auth().sign(original)
    headers = [(k, v) for k, v in original.headers.multi_items() if k.lower() != "host"]
    request = client.build_request("GET", url, headers=headers)
    show_request(request, f"signed for {original.url.netloc.decode('ascii')}")
    response = client.send(request)
    show_response(response)
    code = _signature_error(response)
    report.check(
        app.name,
        "tampered",
        response.status_code == 401 and code == "invalid_signature",
        "401 with Signature-Error: error=invalid_signature",
        f"{response.status_code} error={code}",
    )


# -- the context stories share ------------------------------------------------------------


@dataclass
class StoreChoice:
    """Where the example servers keep pending state: ``uri`` plus a key prefix per server."""

    uri: str
    prefix: str | None = None

    @property
    def label(self) -> str:
        if self.prefix is None:
            return "memory: each server keeps its pending state in its own process"
        return (
            f"Redis at {self.uri}: the Person Servers and the three-party resource keep their "
            f"pending state there (keys under {self.prefix}-*, deleted at the end)"
        )

    def args(self, name: str) -> tuple[str, ...]:
        """``--store``/``--store-prefix`` for the example server ``name``."""
        if self.prefix is None:
            return ("--store", self.uri)
        return ("--store", self.uri, "--store-prefix", f"{self.prefix}-{name}")

    def cleanup(self) -> None:
        if self.prefix is None:
            return
        import redis

        client = redis.Redis.from_url(redis_url(self.uri), socket_timeout=2)
        try:
            keys = list(client.scan_iter(match=f"{self.prefix}-*", count=500))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start : start + 500])
        except redis.RedisError as exc:
            print(f"(could not delete the demo's Redis keys: {exc})", file=sys.stderr)
        finally:
            client.close()


def choose_store(requested: str | None) -> StoreChoice:
    """``--store`` as given; otherwise Redis when one answers on 127.0.0.1:6379."""
    uri = requested
    if uri is None:
        uri = LOCAL_REDIS if _redis_answers(LOCAL_REDIS) else "memory://"
    if uri == "memory://":
        return StoreChoice(uri)
    return StoreChoice(uri, f"aauth-demo-{uuid.uuid4().hex[:8]}")


def _redis_answers(uri: str) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.3) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class DemoContext:
    client: httpx.Client
    store: StoreChoice
    stack: contextlib.ExitStack
    report: Report = field(default_factory=Report)
    #: What several stories use (the three-party servers and agent), started once.
    shared: dict[str, Any] = field(default_factory=dict)
    #: The resources the foundation story runs against (``--only``).
    resources: Sequence[AppSpec] = ()
    #: Server output to print when a story fails: (name, app).
    apps: list[RunningApp] = field(default_factory=list)

    def check(self, story: str, step: str, ok: bool, expected: str, got: str) -> None:
        self.report.check(story, step, ok, expected, got)

    def start(self, specs: Sequence[AppSpec]) -> list[RunningApp]:
        """Start ``specs`` for the rest of the demo."""
        apps = self.stack.enter_context(running_apps(specs))
        self.apps += apps
        return apps


@dataclass(frozen=True)
class Story:
    name: str
    title: str
    run: Callable[[DemoContext], None]


# -- the foundation story -----------------------------------------------------------------


def foundation(ctx: DemoContext) -> None:
    """Agent-token access against each resource: unsigned, signed, tampered."""
    specs = ctx.resources or RESOURCES
    apps = ctx.start([PROVIDER, *specs])
    provider, resources = apps[0], apps[1:]
    for app in apps:
        print(f"  {app.name:<15} {app.url}")
    agent = Agent.enroll_dev(provider.url, "demo-agent", client=ctx.client)
    print(f"\nEnrolled agent {agent.agent_id} at {provider.url}/dev/agent-token")
    print(f"  agent token: {abbreviate(agent.token)}")
    for i, app in enumerate(resources):
        # Any origin other than this resource's will do; the provider's is always there.
        elsewhere = resources[(i + 1) % len(resources)].url if len(resources) > 1 else provider.url
        try:
            walk(ctx.client, agent, app, elsewhere, ctx.report)
        except httpx.HTTPError as exc:
            ctx.report.failures.append(f"[{app.name}] request failed: {exc!r}")
            print(f"  [{app.name}] FAIL request failed: {exc!r}")
    failed = sum(
        1 for f in ctx.report.failures if f.split("]")[0][1:] in {a.name for a in resources}
    )
    if not failed:
        print(f"\nAll {3 * len(resources)} outcomes as the protocol requires.")


def _stories() -> list[Story]:
    from . import (  # they reuse this module's printers
        cascade_story,
        four_party,
        mission_story,
        three_party,
    )

    return [
        Story("foundation", "agent-token access on every resource", foundation),
        *three_party.STORIES,
        *mission_story.STORIES,
        *four_party.STORIES,
        *cascade_story.STORIES,
        Story("ath", "ATH: a native service and a gateway, end to end", ath),
    ]


def ath(ctx: DemoContext) -> None:
    """Both ATH stories (their own servers, on memory://): see example_apps.ath_demo."""
    from .ath_demo import run_ath_stories

    code = run_ath_stories()
    ctx.report.check(
        "ath", "both ATH stories", code == 0, "every step as the protocol requires", f"exit {code}"
    )


#: Every story, in the order ``make demo`` tells them; append yours.
STORIES: list[Story] = []


def run(
    story_names: Sequence[str] | None = None,
    *,
    store: str | None = None,
    resources: Sequence[AppSpec] = RESOURCES,
    options: dict[str, Any] | None = None,
) -> int:
    """Run the stories (all by default); 0 when every outcome is as the protocol requires."""
    stories = STORIES or _stories()
    chosen = [s for s in stories if not story_names or s.name in story_names]
    started = time.monotonic()
    if store is not None:
        try:
            check_store_uri(store)
        except ConfigurationError as exc:
            print(f"--store: {exc}", file=sys.stderr)
            return 2
    choice = choose_store(store)
    found = (
        ""
        if store is not None
        else " (found on 127.0.0.1:6379)"
        if choice.prefix
        else (" (no Redis answered on 127.0.0.1:6379)")
    )
    print(f"Store: {choice.label}{found}")
    with contextlib.ExitStack() as stack, httpx.Client(timeout=30, trust_env=False) as client:
        stack.callback(choice.cleanup)
        ctx = DemoContext(client, choice, stack, resources=resources, shared=dict(options or {}))
        for story in chosen:
            print(f"\n=== {story.name}: {story.title} ===")
            before = len(ctx.report.failures)
            try:
                story.run(ctx)
            except (AppStartError, httpx.HTTPError, RuntimeError, KeyError, ValueError) as exc:
                detail = getattr(exc, "response", None)
                text = f" {detail.text}" if isinstance(detail, httpx.Response) else ""
                ctx.report.failures.append(f"[{story.name}] stopped: {exc!r}{text}")
                print(f"  [{story.name}] FAIL stopped: {exc!r}")
            if len(ctx.report.failures) > before:
                # Server-side tracebacks explain a failure better than the status code does.
                for app in ctx.apps:
                    log = app.log().strip().splitlines()[-30:]
                    if log:
                        print(f"\n--- {app.name} output ---\n" + "\n".join(log), file=sys.stderr)
    elapsed = time.monotonic() - started
    report = ctx.report
    if report.failures:
        print(
            f"\nDemo FAILED ({len(report.failures)} outcome(s) differ, {elapsed:.1f}s):",
            file=sys.stderr,
        )
        for failure in report.failures:
            print("  " + failure, file=sys.stderr)
        return 1
    names = ", ".join(s.name for s in chosen)
    print(f"\nEvery outcome as the protocol requires ({names}; {elapsed:.1f}s).")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    names = [s.name for s in (STORIES or _stories())]
    parser = argparse.ArgumentParser(
        prog="python -m example_apps.demo",
        description="Start the example servers on loopback and walk through AAuth, story by "
        "story: " + ", ".join(names) + ".",
    )
    parser.add_argument(
        "--story", choices=names, action="append", help="run this story only (repeatable)"
    )
    parser.add_argument(
        "--only",
        choices=[spec.name for spec in RESOURCES],
        action="append",
        help="the foundation story against this resource only (repeatable)",
    )
    parser.add_argument(
        "--no-three-party",
        action="store_true",
        help="only the foundation story (same as --story foundation)",
    )
    parser.add_argument(
        "--store",
        metavar="URI",
        help="memory:// or redis://...; default: Redis on 127.0.0.1:6379 if it answers",
    )
    args = parser.parse_args(argv)
    specs = [spec for spec in RESOURCES if not args.only or spec.name in args.only]
    stories = ["foundation"] if args.no_three_party else args.story
    return story_main("Demo", lambda: run(stories, store=args.store, resources=specs))


if __name__ == "__main__":
    sys.exit(main())
