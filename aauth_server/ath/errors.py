"""The ATH error model: ``{"code", "message", "details"}`` with the protocol's sixteen codes.

ATH does not use AAuth's problem+json: every failure an ATH endpoint reports is an
:class:`ATHError`, whose code fixes the HTTP status (digest 4.11).  A few situations the
sixteen codes do not name (a body that is not JSON, a duplicate registration, a proxy path
trick, an upstream failure, a caller with no credentials at all) get an extension code;
each is listed in :data:`EXTENSION_CODES` and documented in docs/ath.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from ..http import Headers, HttpResponse

#: The sixteen codes of ATH v0.1 and their statuses.
PROTOCOL_CODES: Final[Mapping[str, int]] = MappingProxyType(
    {
        "INVALID_ATTESTATION": 401,
        "AGENT_NOT_REGISTERED": 403,
        "AGENT_UNAPPROVED": 403,
        "PROVIDER_NOT_APPROVED": 403,
        "SCOPE_NOT_APPROVED": 403,
        "SESSION_NOT_FOUND": 400,
        "SESSION_EXPIRED": 400,
        "STATE_MISMATCH": 400,
        "TOKEN_INVALID": 401,
        "TOKEN_EXPIRED": 401,
        "TOKEN_REVOKED": 401,
        "AGENT_IDENTITY_MISMATCH": 403,
        "PROVIDER_MISMATCH": 403,
        "USER_DENIED": 403,
        "OAUTH_ERROR": 502,
        "INTERNAL_ERROR": 500,
    }
)

#: Codes beyond the sixteen, for what the protocol leaves without a code.
EXTENSION_CODES: Final[Mapping[str, int]] = MappingProxyType(
    {
        "INVALID_REQUEST": 400,  # body not a JSON object, a field missing or ill-typed
        "PAYLOAD_TOO_LARGE": 413,  # body over the configured limit
        "UNSUPPORTED_MEDIA_TYPE": 415,  # a JSON endpoint called without application/json
        "CONFLICT": 409,  # agent_id already registered (the reference gateway's code)
        "AUTH_REQUIRED": 401,  # no credentials of any kind (revoke, GET agent)
        "FORBIDDEN": 403,  # a user or admin acting on what is not theirs
        "NOT_FOUND": 404,  # no such ATH endpoint
        "METHOD_NOT_ALLOWED": 405,
        "INVALID_PATH": 400,  # a proxy path with dot segments, encoded slashes, a URL
        "UPSTREAM_ERROR": 502,  # the proxied provider failed, timed out or answered too much
        "SERVICE_UNAVAILABLE": 503,  # the shared store is unreachable
    }
)

STATUS: Final[Mapping[str, int]] = MappingProxyType({**PROTOCOL_CODES, **EXTENSION_CODES})

_TOKEN_CODES = frozenset({"TOKEN_INVALID", "TOKEN_EXPIRED", "TOKEN_REVOKED"})


class ATHError(Exception):
    """An ATH failure: ``code`` (its status follows), a ``message`` and optional ``details``."""

    def __init__(
        self,
        code: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        *,
        headers: Headers | None = None,
    ) -> None:
        if code not in STATUS:
            raise ValueError(f"unknown ATH error code {code!r}")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details: dict[str, Any] = dict(details or {})
        self.headers: Headers = list(headers or [])

    @property
    def status(self) -> int:
        return STATUS[self.code]

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body

    def to_response(self) -> HttpResponse:
        headers: Headers = [("Cache-Control", "no-store")]
        if self.code in _TOKEN_CODES:
            # RFC 6750 3: a bearer-token failure names the scheme and the error.
            headers.append(("WWW-Authenticate", 'Bearer error="invalid_token"'))
        headers.extend(self.headers)
        return HttpResponse.json(self.status, self.body(), headers=headers)


def error_response(
    code: str, message: str, details: Mapping[str, Any] | None = None
) -> HttpResponse:
    return ATHError(code, message, details).to_response()
