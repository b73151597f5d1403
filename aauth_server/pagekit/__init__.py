"""One small toolkit for the server-rendered pages of every role (consent, Mission Control,
ATH consent): rendering with autoescaped Jinja2 templates, the security headers and CSP,
CSRF tokens and cookies, form and query parsing, safe redirects, and the application's
``authenticate`` hook type.  Each page family keeps its own templates and static files in a
folder beside its module and hands that folder to :class:`Renderer`; ``base.html`` and
``error.html`` here are shared.
"""

from __future__ import annotations

from .csrf import (
    MIN_SECRET,
    SessionCodec,
    check_csrf,
    check_secret,
    csrf_token,
    new_nonce,
    read_cookie,
    set_cookie,
)
from .forms import form_fields, is_loopback, origin_of, query_params, safe_next, same_origin_post
from .render import (
    CSP,
    HTML,
    SECURITY_HEADERS,
    Authenticate,
    Renderer,
    csp,
    redirect,
    secured,
    with_query,
)

__all__ = [
    "CSP",
    "HTML",
    "MIN_SECRET",
    "SECURITY_HEADERS",
    "Authenticate",
    "Renderer",
    "SessionCodec",
    "check_csrf",
    "check_secret",
    "csp",
    "csrf_token",
    "form_fields",
    "is_loopback",
    "new_nonce",
    "origin_of",
    "query_params",
    "read_cookie",
    "redirect",
    "safe_next",
    "same_origin_post",
    "secured",
    "set_cookie",
    "with_query",
]
