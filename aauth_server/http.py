"""Framework-neutral request and response types.

Adapters convert their framework's request into :class:`HttpRequest` and render
:class:`HttpResponse` back; the core never sees a framework object.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

Headers = list[tuple[str, str]]


@dataclass(slots=True)
class HttpRequest:
    """A request as the core sees it.

    ``url`` is the absolute public URL (scheme, authority, path, query).  ``headers``
    keeps every header line in wire order with its raw value: signed fields must
    never be re-serialised.
    """

    method: str
    url: str
    headers: Headers = field(default_factory=list)
    body: bytes = b""
    # Lower-cased name -> combined value, built on first lookup: verification reads a
    # dozen fields per request.  Treat ``headers`` as immutable once a lookup happened.
    _combined: dict[str, str] | None = field(default=None, init=False, repr=False, compare=False)

    def header_values(self, name: str) -> list[str]:
        """Every value of ``name`` (case-insensitive), in wire order."""
        lname = name.lower()
        return [v for k, v in self.headers if k.lower() == lname]

    def header(self, name: str) -> str | None:
        """The field value as RFC 9110 combines repeated lines (``", "``), or None."""
        combined = self._combined
        if combined is None:
            combined = {}
            for k, v in self.headers:
                lname = k.lower()
                value = v.strip()
                combined[lname] = combined[lname] + ", " + value if lname in combined else value
            self._combined = combined
        return combined.get(name.lower())

    @property
    def path(self) -> str:
        return urlsplit(self.url).path or "/"


@dataclass(slots=True)
class HttpResponse:
    status: int
    headers: Headers = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for k, v in self.headers:
            if k.lower() == lname:
                return v
        return None

    @classmethod
    def json(
        cls,
        status: int,
        payload: Any,
        *,
        headers: Headers | None = None,
        content_type: str = "application/json",
    ) -> HttpResponse:
        body = json_bytes(payload)
        hdrs: Headers = [("Content-Type", content_type)]
        hdrs.extend(headers or [])
        return cls(status, hdrs, body)


def json_bytes(payload: Any) -> bytes:
    """The one JSON serialisation every response uses, so adapters answer byte-for-byte alike."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
