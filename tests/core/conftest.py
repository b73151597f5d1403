"""Fixtures shared by the core tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="module")
def hostile_server() -> Iterator[Any]:
    """The local server of hostile key documents (tests/hostile.py), one per test module."""
    from tests.hostile import local_server

    with local_server() as running:
        yield running
