"""The mode scenario table against the core alone, through both drivers."""

from __future__ import annotations

import asyncio

import pytest

from tests.resource.core_harness import CoreApp
from tests.support import Scenario, World, assert_scenario, mode_scenarios, scenarios


@pytest.mark.parametrize("scenario", scenarios() + mode_scenarios(), ids=lambda s: s.name)
def test_sync(scenario: Scenario) -> None:
    world = World()
    app = CoreApp(world.resource_config(**scenario.config))
    for request in scenario.before(world) if scenario.before else []:
        assert app.send(request).status < 400
    assert_scenario(scenario, app.send(scenario.build(world)), world)


@pytest.mark.parametrize("scenario", scenarios() + mode_scenarios(), ids=lambda s: s.name)
def test_async(scenario: Scenario) -> None:
    world = World()
    app = CoreApp(world.resource_config(**scenario.config))

    async def run() -> None:
        for request in scenario.before(world) if scenario.before else []:
            assert (await app.asend(request)).status < 400
        assert_scenario(scenario, await app.asend(scenario.build(world)), world)

    asyncio.run(run())
