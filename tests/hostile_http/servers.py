"""The example apps as real processes on 127.0.0.1, and an agent that signs raw requests.

One fleet per test session: the three example resources (Starlette, Flask, Django), the
example Person Server under each framework (Starlette on the suite's own Redis, Flask and
Django in memory), and an agent provider served in this process (the tests hold its key,
so they can mint any token, hostile or not).  The resources trust the three Person Servers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from aauth_server.agent import AgentProvider
from aauth_server.asgi import asgi_app
from aauth_server.http import HttpRequest
from aauth_server.keys import PrivateKey
from aauth_server.signatures.message import AAUTH_COMPONENTS, sign_request
from aauth_server.signatures.signature_key import SignatureKey, serialize_signature_key
from example_apps._procs import AppSpec, RunningApp, start_apps, stop_apps
from tests.hostile_http.rawhttp import RawRequest, rss_bytes
from tests.redis_server import ensure_redis
from tests.threaded_uvicorn import ThreadedUvicorn

PASSWORD = "hostile-suite-password"
RESOURCE_MODULES = {
    "starlette": "example_apps.starlette_resource",
    "flask": "example_apps.flask_resource",
    "django": "example_apps.django_resource",
}


@dataclass
class Server:
    """One running example app: its role, framework and where it listens."""

    role: str  # "resource" | "ps"
    framework: str
    app: RunningApp

    @property
    def url(self) -> str:
        return self.app.url

    @property
    def port(self) -> int:
        port = urlsplit(self.app.url).port
        assert port is not None
        return port

    @property
    def pid(self) -> int:
        return self.app.process.pid

    @property
    def name(self) -> str:
        return f"{self.role}-{self.framework}"

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def alive(self) -> bool:
        return self.app.process.poll() is None


class Agent:
    """An agent of the in-process provider: signs raw requests at the current time."""

    def __init__(self, provider: AgentProvider, local: str = "hostile") -> None:
        self.provider = provider
        self.key = PrivateKey.generate("Ed25519")
        self.token = provider.issue(self.key.public, local)

    def sign(
        self,
        port: int,
        method: str,
        target: str,
        *,
        body: bytes = b"",
        content_type: str = "application/json",
        headers: Sequence[tuple[str, str]] = (),
        token: str | None = None,
        key: PrivateKey | None = None,
        created: int | None = None,
        components: Sequence[str] | None = None,
    ) -> RawRequest:
        """``method target`` to 127.0.0.1:``port``, signed as AAuth agents sign (body
        requests cover ``content-type`` and ``content-digest``)."""
        authority = f"127.0.0.1:{port}"
        lines: list[tuple[str, str]] = [("Host", authority), *headers]
        if body:
            lines.append(("Content-Type", content_type))
        lines.append(
            (
                "Signature-Key",
                serialize_signature_key([SignatureKey("sig", "jwt", {"jwt": token or self.token})]),
            )
        )
        covered = list(components or AAUTH_COMPONENTS)
        if body and components is None:
            covered += ["content-type", "content-digest"]
        neutral = HttpRequest(method, f"http://{authority}{target}", lines, body)
        added = sign_request(
            neutral,
            key or self.key,
            components=covered,
            created=int(time.time()) if created is None else created,
        )
        return RawRequest(method, target, [*lines, *added], body)


@dataclass
class Fleet:
    resources: list[Server]
    person_servers: list[Server]
    provider: AgentProvider
    agent: Agent
    redis_url: str

    @property
    def all(self) -> list[Server]:
        return [*self.resources, *self.person_servers]


@contextmanager
def agent_provider() -> Iterator[AgentProvider]:
    holder: list[AgentProvider] = []
    server = ThreadedUvicorn(asgi_app(lambda request: holder[0].handle(request)), lifespan="off")
    holder.append(AgentProvider(server.origin, dev_loopback=True))
    server.start()
    try:
        yield holder[0]
    finally:
        server.stop()


@contextmanager
def fleet() -> Iterator[Fleet]:
    redis_url = ensure_redis()
    ps_specs = [
        AppSpec(
            "ps-starlette",
            "example_apps.person_server",
            ("--dev", "--framework", "starlette", "--store", redis_url, "--password", PASSWORD),
        ),
        AppSpec(
            "ps-flask",
            "example_apps.person_server",
            ("--dev", "--framework", "flask", "--password", PASSWORD),
        ),
        AppSpec(
            "ps-django",
            "example_apps.person_server",
            ("--dev", "--framework", "django", "--password", PASSWORD),
        ),
    ]
    with agent_provider() as provider:
        person_apps = start_apps(ps_specs, timeout=60)
        try:
            trusted = [arg for app in person_apps for arg in ("--ps", app.url)]
            resource_specs = [
                AppSpec(f"resource-{name}", module, ("--dev", *trusted))
                for name, module in RESOURCE_MODULES.items()
            ]
            resource_apps = start_apps(resource_specs, timeout=60)
            try:
                person_servers = [
                    Server("ps", app.name.split("-", 1)[1], app) for app in person_apps
                ]
                resources = [
                    Server("resource", app.name.split("-", 1)[1], app) for app in resource_apps
                ]
                yield Fleet(resources, person_servers, provider, Agent(provider), redis_url)
            finally:
                stop_apps(resource_apps)
        finally:
            stop_apps(person_apps)
