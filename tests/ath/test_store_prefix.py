"""ATH services sharing one Redis database keep apart: each one's keys live under
``aauth:ath:<base_url host[:port] and path>`` (as a Person Server's under ``aauth:ps:<host>``),
so even two services configured with one ``namespace`` never read each other's records."""

from __future__ import annotations

import redis

from aauth_server.ath.context import KIND_AGENT
from tests.ath.harness import Agent, World
from tests.redis_server import RedisProcess


def test_two_ath_services_on_one_redis_never_share_a_key() -> None:
    with RedisProcess(appendonly=False) as server:
        agent = Agent()
        # One namespace on purpose: the store prefix alone keeps them apart.
        shop = World(agents=(agent,), store=server.url, namespace="shared")
        gateway = World(mode="gateway", agents=(agent,), store=server.url, namespace="shared")
        try:
            assert shop.config.key_prefix == "aauth:ath:shop.example"
            assert gateway.config.key_prefix == "aauth:ath:gateway.example"
            client_id = shop.register(agent)["client_id"]
            stored = f"shared.{client_id}"
            assert shop.server.store.get(KIND_AGENT, stored) is not None
            assert gateway.server.store.get(KIND_AGENT, stored) is None
            with redis.Redis.from_url(server.url) as admin:
                keys = [k.decode() for k in admin.scan_iter(match="*", count=1000)]
            assert keys and all(k.startswith("aauth:ath:shop.example:") for k in keys), keys
        finally:
            shop.server.close()
            gateway.server.close()


def test_store_prefix_names_the_keys_when_set() -> None:
    with RedisProcess(appendonly=False) as server:
        agent = Agent()
        shop = World(agents=(agent,), store=server.url, store_prefix="tenant-7:ath")
        try:
            shop.register(agent)
            with redis.Redis.from_url(server.url) as admin:
                keys = [k.decode() for k in admin.scan_iter(match="*", count=1000)]
            assert keys and all(k.startswith("tenant-7:ath:") for k in keys), keys
        finally:
            shop.server.close()
