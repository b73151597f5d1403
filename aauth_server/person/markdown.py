"""Kept for imports of before the page toolkit: :mod:`aauth_server.pagekit.markdown`."""

from __future__ import annotations

from ..pagekit.markdown import ALLOWED_TAGS, render_markdown

__all__ = ["ALLOWED_TAGS", "render_markdown"]
