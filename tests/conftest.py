from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--hostile-long",
        action="store_true",
        default=False,
        help="run the hostile HTTP suite with ten times as many generated requests",
    )
