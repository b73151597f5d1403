"""End-to-end tests against the example apps running as real servers."""

from __future__ import annotations
