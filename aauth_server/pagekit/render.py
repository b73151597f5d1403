"""Rendering pages: autoescaped templates, the security headers every page carries, redirects."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode, urlsplit, urlunsplit

import jinja2

from ..http import Headers, HttpRequest, HttpResponse

Authenticate = Callable[[HttpRequest], "str | None"]
"""The application's hook: the signed-in person's identifier for a request, or None."""

HTML: Final = "text/html; charset=utf-8"
SHARED_TEMPLATES: Final = Path(__file__).with_name("templates")
_STATIC_TYPES: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}


def csp(*, form_action: Sequence[str] = ()) -> str:
    """The pages' Content-Security-Policy; ``form_action`` adds redirect targets of forms."""
    targets = " ".join(("'self'", *form_action))
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        f"connect-src 'self'; form-action {targets}; frame-ancestors 'none'; base-uri 'none'"
    )


CSP: Final = csp()
SECURITY_HEADERS: Final[tuple[tuple[str, str], ...]] = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)


def secured(response: HttpResponse) -> HttpResponse:
    """Add each security header the response does not already set (a page may widen its CSP)."""
    names = {k.lower() for k, _ in response.headers}
    for name, value in SECURITY_HEADERS:
        if name.lower() not in names:
            response.headers.append((name, value))
    return response


def redirect(location: str, headers: Headers | None = None) -> HttpResponse:
    return secured(HttpResponse(303, [("Location", location), *(headers or [])]))


def with_query(url: str, params: Mapping[str, str]) -> str:
    """``url`` with ``params`` appended to its query (any fragment dropped)."""
    parts = urlsplit(url)
    extra = urlencode(params)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def environment(*template_dirs: str | Path | None) -> jinja2.Environment:
    """Templates from ``template_dirs`` in order (an application's overrides first), then the
    shared ``base.html`` / ``error.html``; every template autoescaped, whatever its name."""
    folders = [str(d) for d in template_dirs if d is not None]
    loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(f) for f in folders]
    loaders.append(jinja2.FileSystemLoader(str(SHARED_TEMPLATES)))
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


class Renderer:
    """Pages of one family: ``static`` is the URL prefix of its static files and ``assets``
    the ``.css`` / ``.js`` names ``base.html`` links (the CSP admits only same-origin ones)."""

    def __init__(
        self,
        *template_dirs: str | Path | None,
        server_name: str,
        static: str,
        assets: Sequence[str] = (),
    ) -> None:
        self.env = environment(*template_dirs)
        self.server_name = server_name
        self.static = static
        self.assets = tuple(assets)

    def fragment(self, name: str, **context: Any) -> str:
        return self.env.get_template(name).render(**context)

    def page(
        self, name: str, code: int = 200, headers: Headers | None = None, **context: Any
    ) -> HttpResponse:
        context.setdefault("person", None)
        body = self.fragment(
            name, server_name=self.server_name, static=self.static, assets=self.assets, **context
        )
        response = HttpResponse(code, [("Content-Type", HTML), *(headers or [])], body.encode())
        return secured(response)

    def problem(
        self,
        status: int,
        heading: str,
        message: str,
        *,
        link: str | None = None,
        link_text: str = "",
        person: str | None = None,
    ) -> HttpResponse:
        return self.page(
            "error.html",
            status,
            status=status,
            heading=heading,
            message=message,
            link=link,
            link_text=link_text,
            person=person,
        )

    def static_file(self, name: str) -> HttpResponse | None:
        """One of this family's ``assets``, or None for any other name."""
        if name not in self.assets:
            return None
        source, _, _ = self.env.loader.get_source(self.env, name)  # type: ignore[union-attr]
        content_type = _STATIC_TYPES[Path(name).suffix]
        return secured(HttpResponse(200, [("Content-Type", content_type)], source.encode("utf-8")))
