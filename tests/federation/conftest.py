"""Fixtures of the federation tests: one scripted Access Server per module (on uvicorn), and
a PS trusting it, fresh per test, on each driver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aauth_server.clock import FixedClock
from tests.federation.harness import FedWorld, ScriptedAS
from tests.person.ps_harness import T0


@pytest.fixture(scope="module")
def access() -> Iterator[ScriptedAS]:
    with ScriptedAS(FixedClock(T0)) as server:
        yield server


@pytest.fixture
def fresh(access: ScriptedAS) -> ScriptedAS:
    """The scripted AS with no script, nothing seen, its clock back at T0."""
    access.script.clear()
    access.seen.clear()
    access.clock.t = T0
    return access


@pytest.fixture(params=["sync", "async"])
def fed(request: pytest.FixtureRequest, fresh: ScriptedAS) -> Iterator[FedWorld]:
    # One second for a whole exchange with the AS: the slow AS of the tests takes longer.
    world = FedWorld(fresh, driver=request.param, access_timeout=1.0)
    yield world
    world.ps.close()
