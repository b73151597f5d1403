"""Agent-side tests."""

from __future__ import annotations
