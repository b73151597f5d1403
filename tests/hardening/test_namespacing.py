"""Issue 8 item 11: servers sharing one Redis database keep their records apart.

Two Person Servers with different issuers on one real Redis database: the person consents
at the first; the second, whose policy approves that agent without asking, must still ask
the person (its own binding table is empty).  Resources and their replay caches get the
same per-issuer namespace; an explicit ``store_prefix`` wins.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis

from aauth_server.person import DefaultPolicy, PersonServerConfig
from aauth_server.resource import ResourceConfig
from tests.person.ps_harness import PsApp, PsWorld
from tests.redis_server import ensure_redis
from tests.storage.conftest import delete_prefix

CODE = re.compile(r'code="([^"]+)"')
AGENT = "aauth:assistant@agent.example"


def issuer_prefix(issuer: str, role: str) -> str:
    from aauth_server.storage.base import issuer_prefix as derive

    return derive(issuer, role)


@pytest.fixture
def issuers() -> Iterator[tuple[str, str]]:
    tag = uuid.uuid4().hex[:12]
    pair = (f"https://ps-a-{tag}.example", f"https://ps-b-{tag}.example")
    yield pair
    for issuer in pair:
        delete_prefix(ensure_redis(), issuer_prefix(issuer, "ps"))


def test_two_person_servers_on_one_redis_keep_their_bindings_apart(
    issuers: tuple[str, str],
) -> None:
    url = ensure_redis()
    first_issuer, second_issuer = issuers
    policy = DefaultPolicy(auto_approve_agents=(AGENT,))
    pw = PsWorld(issuer=first_issuer, store=url, async_store=None, policy=policy)
    first = pw.app
    # The agent is unknown at the first PS: the person is asked and consents (a binding).
    asked = first.send(pw.person_request())
    assert asked.status == 202
    code = CODE.search(asked.header("aauth-requirement") or "")
    assert code
    view = first.ps.consent.open(code.group(1), "alice")
    first.ps.consent.approve(view.pending_id, "alice")
    # From now on the first PS approves this agent for alice without asking.
    assert first.send(pw.person_request()).status == 200

    second = PsApp(replace(pw.config, issuer=second_issuer))
    answer = second.send(pw.person_request())
    # The second PS has never seen this agent: it asks the person, it issues nothing.
    assert answer.status == 202, answer.body
    assert (answer.header("aauth-requirement") or "").startswith("requirement=interaction")

    # Both PSes wrote into the one database, each under its own prefix.
    with redis.Redis.from_url(url) as admin:
        for issuer in issuers:
            assert list(admin.scan_iter(match=issuer_prefix(issuer, "ps") + ":*", count=1000))
    first.ps.store.close()
    second.ps.store.close()


def test_store_prefixes_derive_from_the_issuer_and_role() -> None:
    assert issuer_prefix("https://ps.example", "ps") == "aauth:ps:ps.example"
    assert issuer_prefix("http://127.0.0.1:8010", "rs") == "aauth:rs:127.0.0.1:8010"
    url = ensure_redis()
    a = ResourceConfig(issuer="https://a.example", store=url)
    b = ResourceConfig(issuer="https://b.example", store=url)
    explicit = ResourceConfig(issuer="https://b.example", store=url, store_prefix="tenant-7")
    stores = [config.stores() for config in (a, b, explicit)]
    try:
        prefixes = [sync.prefix for sync, _ in stores]  # type: ignore[attr-defined]
        assert prefixes == ["aauth:rs:a.example", "aauth:rs:b.example", "tenant-7"]
        key = f"k-{uuid.uuid4().hex}"
        stores[0][0].create("revoked", key, {"x": 1}, 60)
        assert stores[1][0].get("revoked", key) is None  # a replay guard or revocation of A
        assert stores[0][0].remember_once(key, 60) and stores[1][0].remember_once(key, 60)
    finally:
        for sync, _ in stores:
            sync.close()
        for prefix in ("aauth:rs:a.example", "aauth:rs:b.example", "tenant-7"):
            delete_prefix(url, prefix)


def test_person_server_prefix_is_derived_too() -> None:
    pw = PsWorld()
    config = PersonServerConfig(
        issuer="https://ps.example",
        signing_key=pw.config.signing_key,
        subject_secret=pw.config.subject_secret,
    )
    sync, _ = config.stores()
    assert sync.prefix == "aauth:ps:ps.example"  # type: ignore[attr-defined]
