"""Markdown from agents and resources, rendered for the pages (consent, Mission Control).

Every string an agent or a resource supplies (justification, clarification answers, scope
and resource descriptions) is untrusted (digest 7, 12).  Two independent layers: Markdown
with raw HTML disabled, so ``<script>`` arrives as text; then ``nh3`` with an allow-list,
so anything the renderer lets through (a ``javascript:`` link, an attribute) is dropped.
"""

from __future__ import annotations

from typing import Final

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

__all__ = ["ALLOWED_TAGS", "render_markdown"]

ALLOWED_TAGS: Final = frozenset(
    {
        "p",
        "br",
        "hr",
        "em",
        "strong",
        "code",
        "pre",
        "blockquote",
        "ul",
        "ol",
        "li",
        "a",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
    }
)
# Images are left out on purpose: even same-origin ones let a page author probe the PS,
# and a consent decision never needs a picture the agent chose.
_ATTRIBUTES: Final = {"a": {"href", "title"}, "ol": {"start"}}
_SCHEMES: Final = frozenset({"http", "https"})
_LINK_REL: Final = "noopener noreferrer nofollow"

_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})


def render_markdown(text: str | None) -> Markup:
    """Sanitised HTML for ``text``, safe to place in an autoescaped template as is."""
    if not text:
        return Markup("")
    html = _md.render(text)
    cleaned = nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(attrs) for tag, attrs in _ATTRIBUTES.items()},
        url_schemes=set(_SCHEMES),
        link_rel=_LINK_REL,
        strip_comments=True,
    )
    return Markup(cleaned)  # noqa: S704 - nh3 output is the sanitised fragment
