"""Resource-side flows against the core: resource tokens, deferred delivery, sessions,
revocation, replay (memory and a real Redis), and a store outage."""

from __future__ import annotations

import json
import uuid

import pytest

from aauth_server.clock import FixedClock
from aauth_server.fields import parse_aauth_requirement
from aauth_server.http import HttpRequest
from aauth_server.storage.redis import AsyncRedisStore, RedisStore
from aauth_server.tokens.aauth import TYP_RESOURCE
from aauth_server.tokens.jwt import decode_unverified, verify_jwt_signature
from tests.redis_server import RedisProcess, ensure_redis
from tests.resource.core_harness import CoreApp
from tests.support import AS_ISSUER, PERSON, PS_ISSUER, RESOURCE, World

MISSION = "Qh0Q_UpYKjgHatS0Md56tmJ7IbzYAXfI-TbpnyDHn8w"


def _resource_token(response_header: str | None) -> str:
    assert response_header is not None
    requirement = parse_aauth_requirement(response_header)
    assert requirement.requirement == "auth-token"
    assert requirement.resource_token is not None
    return requirement.resource_token


def test_resource_token_has_every_required_claim_and_copies_mission_and_tenant() -> None:
    world = World()
    app = CoreApp(world.resource_config())
    person = world.person_token(mission_s256=MISSION, tenant="acme")
    response = app.send(world.signed("GET", "/data", token=person))
    assert response.status == 401
    token = decode_unverified(_resource_token(response.header("AAuth-Requirement")))
    assert token.header["typ"] == TYP_RESOURCE
    assert token.header["kid"] == "rs-1"
    verify_jwt_signature(token, world.resource_key.public)
    claims = token.payload
    person_claims = decode_unverified(person).payload
    assert claims["iss"] == RESOURCE
    assert claims["dwk"] == "aauth-resource.json"
    assert claims["aud"] == PS_ISSUER  # three-party: the person token's iss
    assert claims["ps"] == PS_ISSUER
    assert claims["sub"] == PERSON
    assert claims["presented_jti"] == person_claims["jti"]
    assert claims["agent_jkt"] == world.agent_key.public.thumbprint
    assert claims["scope"] == "data.read"
    assert claims["mission_s256"] == MISSION
    assert claims["tenant"] == "acme"
    assert isinstance(claims["jti"], str) and claims["jti"]
    assert 0 < claims["exp"] - claims["iat"] <= 300
    assert "agent" not in claims and "cnf" not in claims


def test_four_party_resource_token_is_addressed_to_the_access_server() -> None:
    world = World()
    app = CoreApp(world.resource_config(access_server=AS_ISSUER))
    response = app.send(world.signed("GET", "/data", token=world.person_token()))
    claims = decode_unverified(_resource_token(response.header("AAuth-Requirement"))).payload
    assert claims["aud"] == AS_ISSUER
    assert claims["ps"] == PS_ISSUER


def test_step_up_names_the_auth_token_it_saw() -> None:
    world = World()
    app = CoreApp(world.resource_config())
    auth = world.auth_token("data.read")
    response = app.send(world.signed("POST", "/data", token=auth))
    claims = decode_unverified(_resource_token(response.header("AAuth-Requirement"))).payload
    assert claims["presented_jti"] == decode_unverified(auth).payload["jti"]
    assert claims["scope"] == "data.write"


def test_deferred_delivery_runs_the_held_call_once_and_repeats_its_result() -> None:
    world = World()
    app = CoreApp(world.resource_config())
    held = app.send(world.signed("GET", "/deferred", token=world.person_token()))
    assert held.status == 202
    location = held.header("Location")
    assert location is not None and location.startswith(RESOURCE + "/aauth/pending/")
    path = location[len(RESOURCE) :]
    assert app.calls.get("/deferred") is None

    # Polling with the person token again: still pending, the resource token repeated.
    again = app.send(world.signed("GET", path, token=world.person_token()))
    assert again.status == 202
    assert again.header(
        "AAuth-Requirement",
    ).startswith("requirement=auth-token")  # type: ignore[union-attr]

    auth = world.auth_token("data.read")
    first = app.send(world.signed("GET", path, token=auth))
    assert first.status == 200
    assert json.loads(first.body) == {"scope": "data.read", "deferred": True}
    assert app.calls["/deferred"] == 1
    repeat = app.send(world.signed("GET", path, token=auth))
    assert (repeat.status, repeat.body) == (200, first.body)
    assert app.calls["/deferred"] == 1

    other = app.send(world.signed("GET", path, token=world.auth_token("data.read")))
    assert other.status == 410

    too_little = app.send(world.signed("GET", "/deferred", token=world.person_token()))
    path2 = str(too_little.header("Location"))[len(RESOURCE) :]
    narrow = app.send(world.signed("GET", path2, token=world.auth_token("data.write")))
    assert narrow.status == 403 and json.loads(narrow.body)["error"] == "insufficient_scope"
    cancelled = app.send(world.signed("DELETE", path2, token=world.person_token()))
    assert cancelled.status == 204
    assert app.send(world.signed("GET", path2, token=auth)).status == 404


def test_deferred_poll_by_another_agent_is_refused() -> None:
    world, stranger = World(), World()
    stranger.provider, stranger.agent_key = world.provider, stranger.agent_key
    stranger.agent_token = world.provider.issue(stranger.agent_key.public, "other")
    app = CoreApp(world.resource_config())
    held = app.send(world.signed("GET", "/deferred", token=world.person_token()))
    path = str(held.header("Location"))[len(RESOURCE) :]
    intruder = app.send(stranger.signed("GET", path))
    assert intruder.status == 403
    assert intruder.header("Signature-Error") is None


def test_session_flow_and_single_use_code() -> None:
    world = World()
    app = CoreApp(world.resource_config())
    caps = [("AAuth-Capabilities", "interaction")]
    started = app.send(world.signed("GET", "/session", headers=caps))
    assert started.status == 202
    requirement = parse_aauth_requirement(str(started.header("AAuth-Requirement")))
    assert requirement.requirement == "interaction"
    code = str(requirement.code)
    path = str(started.header("Location"))[len(RESOURCE) :]
    assert app.send(world.signed("GET", path)).status == 202

    assert app.guard.sessions.approve(code.lower().replace("-", ""), "acct-1") is True
    assert app.guard.sessions.approve(code, "acct-1") is False  # single use
    granted = app.send(world.signed("GET", path))
    assert granted.status == 200
    assert json.loads(granted.body) == {"status": "authorized"}
    session = granted.header("AAuth-Access")
    assert session
    assert app.send(world.signed("GET", path)).status == 404  # delivered once

    authz = [("Authorization", f"AAuth {session}")]
    components = ["@method", "@authority", "@path", "signature-key", "authorization"]
    ok = app.send(world.signed("GET", "/session", headers=authz, components=components))
    assert ok.status == 200
    assert json.loads(ok.body) == {"agent": world.agent_id, "account": "acct-1"}
    # Never a bearer token: without the signature the resource challenges.
    bare = app.send(HttpRequest("GET", RESOURCE + "/session", authz))
    assert bare.status == 401


def test_session_denied_answers_403_denied() -> None:
    world = World()
    app = CoreApp(world.resource_config())
    started = app.send(
        world.signed("GET", "/session", headers=[("AAuth-Capabilities", "interaction")])
    )
    code = str(parse_aauth_requirement(str(started.header("AAuth-Requirement"))).code)
    path = str(started.header("Location"))[len(RESOURCE) :]
    assert app.guard.sessions.deny(code) is True
    denied = app.send(world.signed("GET", path))
    assert denied.status == 403 and json.loads(denied.body)["error"] == "denied"


@pytest.fixture()
def redis_url() -> str:
    return ensure_redis()


def _redis_config(world: World, url: str, **overrides: object):  # type: ignore[no-untyped-def]
    prefix = "t-" + uuid.uuid4().hex
    return world.resource_config(
        store=RedisStore.from_url(url, prefix=prefix),
        async_store=AsyncRedisStore.from_url(url, prefix=prefix),
        **overrides,
    )


def test_replay_cache_on_redis_rejects_the_second_request(redis_url: str) -> None:
    world = World()
    app = CoreApp(_redis_config(world, redis_url, replay_cache=True))
    request = world.signed()
    assert app.send(request).status == 200
    second = app.send(request)
    assert second.status == 401
    assert second.header("Signature-Error") == "error=invalid_signature"


def test_revocation_on_redis_reaches_another_guard(redis_url: str) -> None:
    world = World()
    config = _redis_config(world, redis_url)
    first, second = CoreApp(config), CoreApp(config)
    person = world.person_token()
    claims = decode_unverified(person).payload
    body = json.dumps({"jti": claims["jti"], "exp": claims["exp"]}).encode()
    assert first.send(world.server_signed("POST", "/aauth/revoke", body)).status == 200
    refused = second.send(world.signed("GET", "/profile", token=person))
    assert refused.header("Signature-Error") == "error=revoked_jwt"


def test_store_outage_answers_503_with_retry_after(tmp_path: object) -> None:
    world = World()
    with RedisProcess() as server:
        prefix = "t-" + uuid.uuid4().hex
        options = {"prefix": prefix, "socket_timeout": 0.5, "socket_connect_timeout": 0.5}
        config = world.resource_config(
            replay_cache=True,
            store=RedisStore.from_url(server.url, **options),
            async_store=AsyncRedisStore.from_url(server.url, **options),
        )
        app = CoreApp(config)
        # Distinct `created` values: the replay key is (key, created, method, authority, path).
        t = world.now()
        assert app.send(world.signed(created=t - 2)).status == 200
        server.stop()
        down = app.send(world.signed(created=t - 1))
        assert down.status == 503
        assert down.header("Retry-After") == "5"
        assert json.loads(down.body)["error"] == "temporarily_unavailable"
        server.start()
        assert app.send(world.signed(created=t)).status == 200
        # The entry acknowledged before the outage survived it (append-only persistence).
        assert app.send(world.signed(created=t - 2)).status == 401


def test_revocation_grace_expires_with_the_token() -> None:
    clock = FixedClock(1_800_000_000)
    world = World(clock=clock)
    app = CoreApp(world.resource_config())
    person = world.person_token()
    claims = decode_unverified(person).payload
    past = json.dumps({"jti": claims["jti"], "exp": world.now() - 3600}).encode()
    # A token long expired needs no record: answered 200, nothing kept.
    assert app.send(world.server_signed("POST", "/aauth/revoke", past)).status == 200
    assert app.send(world.signed("GET", "/profile", token=person)).status == 200
