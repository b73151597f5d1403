"""Tables that count their scans, for tests asserting that a path never walks a whole table
(a cache's eviction, a pruning step): each iteration and each items/keys/values view taken
counts once, on the class (reset it to 0 before the part under test)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any


class _CountsScans:
    scans = 0

    def __iter__(self) -> Any:
        type(self).scans += 1
        return super().__iter__()  # type: ignore[misc]

    def items(self) -> Any:
        type(self).scans += 1
        return super().items()  # type: ignore[misc]

    def keys(self) -> Any:
        type(self).scans += 1
        return super().keys()  # type: ignore[misc]

    def values(self) -> Any:
        type(self).scans += 1
        return super().values()  # type: ignore[misc]


class ScanCountingDict(_CountsScans, dict):  # type: ignore[type-arg]
    scans = 0


class ScanCountingOrderedDict(_CountsScans, OrderedDict):  # type: ignore[type-arg]
    scans = 0
