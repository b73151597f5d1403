"""Walk through AAuth agent-token access against the three example resources (``make demo``).

Starts an agent provider and the Starlette, Flask and Django resources on free loopback
ports, enrolls an agent, then for each resource shows an unsigned request being
challenged, a signed one accepted, and a tampered one rejected.  Then runs the three-party
story of :mod:`example_apps.three_party` (person token, auth token with a clarification
round, the interaction relay and its fallback).  Exits non-zero if any outcome differs
from what the protocol requires.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from aauth_server.agent import Agent
from aauth_server.fields import FieldError, parse_aauth_requirement, parse_signature_error

from ._procs import AppSpec, AppStartError, RunningApp, running_apps

PROVIDER = AppSpec("agent-provider", "example_apps.agent_provider", ("--dev",))
RESOURCES = (
    AppSpec("starlette", "example_apps.starlette_resource", ("--dev",)),
    AppSpec("flask", "example_apps.flask_resource", ("--dev",)),
    AppSpec("django", "example_apps.django_resource", ("--dev",)),
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


def run(specs: Sequence[AppSpec]) -> int:
    started = time.monotonic()
    print("Starting the agent provider and resources (all --dev, loopback only)...")
    with (
        running_apps([PROVIDER, *specs]) as apps,
        httpx.Client(timeout=5, trust_env=False) as client,
    ):
        provider, resources = apps[0], apps[1:]
        for app in apps:
            print(f"  {app.name:<15} {app.url}")
        agent = Agent.enroll_dev(provider.url, "demo-agent", client=client)
        print(f"\nEnrolled agent {agent.agent_id} at {provider.url}/dev/agent-token")
        print(f"  agent token: {abbreviate(agent.token)}")
        report = Report()
        for i, app in enumerate(resources):
            # Any origin other than this resource's will do; the provider's is always there.
            elsewhere = (
                resources[(i + 1) % len(resources)].url if len(resources) > 1 else provider.url
            )
            try:
                walk(client, agent, app, elsewhere, report)
            except httpx.HTTPError as exc:
                report.failures.append(f"[{app.name}] request failed: {exc!r}")
                print(f"  [{app.name}] FAIL request failed: {exc!r}")
        # Server-side tracebacks explain a failure better than the status code does.
        failed = {f.split("]")[0].lstrip("[") for f in report.failures}
        for app in resources:
            if app.name in failed:
                log = app.log().strip().splitlines()[-40:]
                print(
                    f"\n--- {app.name} server output (last {len(log)} lines) ---", file=sys.stderr
                )
                print("\n".join(log), file=sys.stderr)
    elapsed = time.monotonic() - started
    if report.failures:
        print(
            f"\nDemo FAILED ({len(report.failures)} outcome(s) differ, {elapsed:.1f}s):",
            file=sys.stderr,
        )
        for failure in report.failures:
            print("  " + failure, file=sys.stderr)
        return 1
    print(f"\nAll {3 * len(resources)} outcomes as the protocol requires ({elapsed:.1f}s).")
    return 0


def run_all(specs: Sequence[AppSpec], *, three_party: bool = True) -> int:
    """The foundation exchanges, then the three-party story (agent, PS, resource), then the
    two ATH stories (native service and gateway)."""
    code = run(specs)
    if code != 0 or not three_party:
        return code
    from .three_party import run as run_three_party  # it reuses this module's printers

    code = run_three_party()
    if code != 0:
        return code
    from .ath_demo import run_ath_stories

    return run_ath_stories()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m example_apps.demo",
        description="Start an agent provider and the example resources, and walk through "
        "unsigned, signed and tampered requests against each.",
    )
    parser.add_argument(
        "--only",
        choices=[spec.name for spec in RESOURCES],
        action="append",
        help="run against this resource only (repeatable)",
    )
    parser.add_argument(
        "--no-three-party",
        action="store_true",
        help="skip the three-party story (agent, Person Server, resource) that follows",
    )
    args = parser.parse_args(argv)
    specs = [spec for spec in RESOURCES if not args.only or spec.name in args.only]
    try:
        return run_all(specs, three_party=not args.no_three_party)
    except AppStartError as exc:
        print(f"\nDemo FAILED: an example app did not start.\n{exc}", file=sys.stderr)
        return 2
    except httpx.HTTPError as exc:
        print(f"\nDemo FAILED: cannot reach the agent provider: {exc!r}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nInterrupted; servers stopped.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
