"""Where the shared conformance vectors live (``/work/shared/vectors`` beside the repo)."""

from __future__ import annotations

from pathlib import Path


def vectors_dir() -> Path:
    return (Path(__file__).resolve().parents[1] / ".." / "shared" / "vectors").resolve()
