from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hostile_http.servers import Fleet, fleet


@pytest.fixture(scope="session")
def hostile_fleet() -> Iterator[Fleet]:
    """The example resources and Person Servers of every framework, started once."""
    with fleet() as running:
        yield running
