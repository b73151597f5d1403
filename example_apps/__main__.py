"""List the example apps (``python -m example_apps``)."""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent


def apps() -> list[tuple[str, str]]:
    """(module name, first docstring line) of every runnable example, without importing it.

    Reading the source instead of importing keeps this listing free of framework side
    effects (Django settings, app registries).
    """
    found: list[tuple[str, str]] = []
    for path in sorted(HERE.glob("*.py")):
        if path.stem.startswith("_"):
            continue
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        found.append((path.stem, doc.strip().splitlines()[0] if doc.strip() else ""))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="python -m example_apps", description="List the runnable example apps."
    ).parse_args(argv)
    print("Example apps (run one with: python -m example_apps.<name> --help):")
    for name, summary in apps():
        print(f"  {name:<20} {summary}")
    print(
        "\n`make demo` (python -m example_apps.demo) runs the provider and all resources together,"
        "\nthen the three-party story with the Person Server (python -m example_apps.three_party),"
        "\nthen the two ATH stories: ATH Shop (native) and the gateway in front of oauth_provider"
        "\n(python -m example_apps.ath_demo)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
