"""Reading what a browser sends: query strings, urlencoded forms, and where a POST came from."""

from __future__ import annotations

import ipaddress
from typing import Final
from urllib.parse import parse_qs, urlsplit

from ..http import HttpRequest

#: Bytes of an urlencoded form that are parsed at all; a larger body reads as empty.
FORM_LIMIT: Final = 16 * 1024


def query_params(request: HttpRequest) -> dict[str, str]:
    """The first value of each query parameter."""
    return {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}


def form_fields(request: HttpRequest, limit: int = FORM_LIMIT) -> dict[str, str]:
    """The first value of each field of an urlencoded body (blank values kept)."""
    if len(request.body) > limit:
        return {}
    text = request.body.decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_origin_post(request: HttpRequest) -> bool:
    """Defence in depth beside the CSRF token: refuse what the browser says is cross-site.

    ``Referrer-Policy: no-referrer`` makes browsers send ``Origin: null`` even for our own
    forms, so ``null`` proves nothing either way and is left to the token.
    """
    origin = request.header("origin")
    if origin is not None and origin != "null" and origin.lower() != origin_of(request.url):
        return False
    site = request.header("sec-fetch-site")
    return site is None or site in ("same-origin", "none")


def safe_next(value: str | None, default: str) -> str:
    """Only same-site absolute paths: ``next`` must never become an open redirect."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    if any(ord(c) < 0x20 for c in value):
        return default
    return value


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
