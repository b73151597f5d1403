"""The PS federating to the real Access Server core: over real HTTP (the AS on uvicorn,
loopback) with the AS asking for a claim and a clarification, and in-process (PS-AS
collapse: one deployment, one issuer, no network hop).  Both drivers."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from aauth_server.access import (
    AccessRequest,
    AccessServer,
    AccessServerConfig,
    Issue,
    RequireClaims,
    RequireClarification,
    RequireInteraction,
    Verdict,
)
from aauth_server.asgi import async_asgi_app
from aauth_server.clock import FixedClock
from aauth_server.fields import parse_aauth_requirement
from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.keys.discovery import KeyDiscovery
from aauth_server.keys.fetcher import AsyncStaticFetcher, StaticFetcher
from aauth_server.tokens.jwt import decode_unverified
from tests.federation.harness import FedWorld, body_of
from tests.person.ps_harness import PS_ISSUER, RESOURCE, T0
from tests.threaded_uvicorn import ThreadedUvicorn

QUESTION = "Which project is this for?"


def asking_policy(request: AccessRequest) -> Verdict:
    """A claim first, then a clarification, then the token."""
    if "email" not in request.claims:
        return RequireClaims(["email"])
    if not request.clarifications or request.clarifications[-1][1] is None:
        return RequireClarification(QUESTION, options=["alpha", "beta"])
    return Issue()


class LoopbackAS:
    """The AS core behind uvicorn on 127.0.0.1, its clock the PS's."""

    def __init__(self, clock: FixedClock) -> None:
        self.clock = clock
        self.core: AccessServer | None = None
        self.seen: list[AccessRequest] = []
        self.server = ThreadedUvicorn(async_asgi_app(self._handle), lifespan="off")
        self.origin = self.server.origin

    async def _handle(self, request: HttpRequest) -> HttpResponse:
        assert self.core is not None
        return (await self.core.ahandle(request)) or HttpResponse(404, [], b"")

    def start(
        self,
        world: FedWorld,
        decide: Callable[[AccessRequest], Verdict] = asking_policy,
        **settings: Any,
    ) -> None:
        docs = world.world.documents()

        def policy(request: AccessRequest) -> Verdict:
            self.seen.append(request)
            return decide(request)

        self.core = AccessServer(
            AccessServerConfig(
                issuer=self.origin,
                signing_key=world.world.as_key,
                trusted_ps=(PS_ISSUER,),
                dev_loopback=True,
                clock=self.clock,
                discovery=KeyDiscovery(
                    StaticFetcher(docs), AsyncStaticFetcher(docs), clock=self.clock
                ),
                records="sqlite://",
                page_secret=b"p" * 32,
                policy=policy,
                poll_interval=1,
                **settings,
            )
        )
        self.server.start()

    def stop(self) -> None:
        self.server.stop()
        if self.core is not None:
            self.core.close()


class _Origin:
    def __init__(self, origin: str, clock: FixedClock) -> None:
        self.origin = origin
        self.clock = clock


@pytest.fixture(params=["sync", "async"])
def worlds(request: pytest.FixtureRequest) -> Iterator[tuple[FedWorld, LoopbackAS]]:
    """A PS and a (not yet started) AS on loopback, on one FixedClock."""
    clock = FixedClock(T0)
    access = LoopbackAS(clock)
    world = FedWorld(_Origin(access.origin, clock), driver=request.param)  # type: ignore[arg-type]
    yield world, access
    access.stop()
    world.ps.close()


@pytest.fixture
def pair(worlds: tuple[FedWorld, LoopbackAS]) -> tuple[FedWorld, LoopbackAS]:
    world, access = worlds
    access.start(world)
    return world, access


def bind_first(request: AccessRequest) -> Verdict:
    return Issue() if request.interacted else RequireInteraction()


def test_interaction_at_the_as_relayed_through_the_ps(
    worlds: tuple[FedWorld, LoopbackAS],
) -> None:
    world, access = worlds

    def who(request: HttpRequest) -> str | None:
        return request.header("x-user")

    access.start(world, bind_first, authenticate=who)
    response = world.ask_token()
    assert response.status == 202, response.body
    requirement = parse_aauth_requirement(response.header("aauth-requirement") or "")
    assert requirement.requirement == "interaction"
    assert requirement.url == access.origin + "/interact"
    location = response.header("location")
    assert location is not None and location.startswith(PS_ISSUER)
    assert world.poll_after(location).status == 202  # the person has not come yet
    # The person, at the AS in a browser, approves.
    with httpx.Client(trust_env=False, headers={"X-User": "alice"}) as browser:
        page = browser.get(f"{requirement.url}?code={requirement.code}")
        assert page.status_code == 200, page.text
        fields = dict(re.findall(r'name="(code|csrf|callback)" value="([^"]*)"', page.text))
        done = browser.post(
            access.origin + "/interact",
            data={**fields, "decision": "approve"},
            headers={"Origin": access.origin},
        )
        assert done.status_code == 200, done.text
    got = world.poll_after(location)
    assert got.status == 200, got.body
    assert decode_unverified(body_of(got)["auth_token"]).payload["iss"] == access.origin
    assert access.seen[-1].interacted


def test_claims_and_clarification_through_a_real_as(pair: tuple[FedWorld, LoopbackAS]) -> None:
    world, access = pair
    response = world.ask_token()
    # The claim was answered by the PS at once; the AS's question reaches the agent.
    assert response.status == 202, response.body
    body = body_of(response)
    assert body["clarification"] == QUESTION
    assert body["options"] == ["alpha", "beta"]
    assert access.seen[-1].claims == {"email": "alice@example.com"}
    assert "sub" not in access.seen[-1].claims
    location = response.header("location")
    assert location is not None and location.startswith(PS_ISSUER)
    world.tick()
    answered = world.send(
        world.poll(
            location,
            body={"action": "clarification_response", "clarification_response": "alpha"},
        )
    )
    if answered.status == 202:
        answered = world.poll_after(location)
    assert answered.status == 200, answered.body
    token = body_of(answered)["auth_token"]
    claims = decode_unverified(token).payload
    assert claims["iss"] == access.origin
    assert claims["aud"] == RESOURCE
    assert claims["ps"] == PS_ISSUER
    assert claims["sub"] == world.sub_for()
    assert access.seen[-1].clarifications[-1] == (QUESTION, "alpha")


def test_collapse_calls_the_as_in_process() -> None:
    """One deployment serving both documents under one issuer: the PS hands the request to
    its in-process AS; no metadata fetch, no network."""
    for driver in ("sync", "async"):
        clock = FixedClock(T0)
        holder: dict[str, Any] = {}

        def build(world: FedWorld) -> AccessServer:
            docs = world.world.documents()
            return AccessServer(
                AccessServerConfig(
                    issuer=PS_ISSUER,
                    signing_key=world.world.ps_key,
                    trusted_ps=(PS_ISSUER,),
                    clock=clock,
                    discovery=KeyDiscovery(
                        StaticFetcher(docs), AsyncStaticFetcher(docs), clock=clock
                    ),
                    records="sqlite://",
                    page_secret=b"p" * 32,
                )
            )

        class Lazy:
            """The AS is built once the PS's world (keys, documents) exists."""

            config = property(lambda self: holder["as"].config)

            def handle(self, request: HttpRequest) -> HttpResponse | None:
                return holder["as"].handle(request)

            async def ahandle(self, request: HttpRequest) -> HttpResponse | None:
                return await holder["as"].ahandle(request)

            def metadata(self) -> dict[str, Any]:
                return holder["as"].metadata()

        world = FedWorld(
            _Origin(PS_ISSUER, clock),  # type: ignore[arg-type]
            driver=driver,
            local_access_server=Lazy(),
            dev_loopback=False,
        )
        holder["as"] = build(world)
        try:
            pt = world.person_token()
            rt = world.resource_token(pt, aud=PS_ISSUER)
            response = world.send(world.auth_request(rt, pt))
            assert response.status == 200, response.body
            claims = decode_unverified(body_of(response)["auth_token"]).payload
            assert claims["iss"] == PS_ISSUER
            assert claims["dwk"] == "aauth-access.json"
            assert claims["ps"] == PS_ISSUER
            assert not any("aauth-access.json" in url for url in world.fetcher.calls)
            assert not any("aauth-access.json" in url for url in world.afetcher.calls)
        finally:
            holder["as"].close()
            world.ps.close()
