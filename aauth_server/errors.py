"""One error hierarchy: every failure the core reports renders to the same wire form.

An :class:`AAuthError` knows its HTTP status, its AAuth ``error`` code and the headers
the drafts attach to it; :meth:`AAuthError.to_response` renders an
``application/problem+json`` body with ``error`` and ``detail``.  Adapters render
nothing themselves, which is why the three frameworks answer byte-for-byte alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from . import fields
from .http import Headers, HttpResponse

PROBLEM_JSON = "application/problem+json"

#: Signature-Error codes of HTTP Signature Keys -08 plus the two -09 codes.
SIGNATURE_ERROR_CODES = frozenset(
    {
        "unsupported_algorithm",
        "unsupported_scheme",
        "cache_miss",
        "invalid_signature",
        "invalid_input",
        "invalid_request",
        "invalid_key",
        "unknown_key",
        "issuer_missing",
        "issuer_mismatch",
        "invalid_jwt",
        "expired_jwt",
        "revoked_jwt",
        "clock_skew",
    }
)


class AAuthError(Exception):
    """An AAuth protocol error: status, ``error`` code, ``detail`` and headers."""

    status: int = 400
    error: str = "invalid_request"

    def __init__(
        self,
        detail: str = "",
        *,
        error: str | None = None,
        status: int | None = None,
        headers: Headers | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        if error is not None:
            self.error = error
        if status is not None:
            self.status = status
        self.detail = detail
        self.extra_headers: Headers = list(headers or [])
        self.extra_body: dict[str, object] = dict(extra or {})
        super().__init__(f"{self.error}: {detail}" if detail else self.error)

    def response_headers(self) -> Headers:
        return list(self.extra_headers)

    def body(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.error}
        if self.detail:
            body["detail"] = self.detail
        body.update(self.extra_body)
        return body

    def to_response(self) -> HttpResponse:
        return HttpResponse.json(
            self.status, self.body(), headers=self.response_headers(), content_type=PROBLEM_JSON
        )


class SignatureFailure(AAuthError):
    """A failed HTTP signature or ``Signature-Key`` token: always ``401`` + ``Signature-Error``."""

    status = 401

    def __init__(
        self,
        code: str,
        detail: str = "",
        *,
        required_input: Sequence[str] | None = None,
        accept_schemes: Iterable[str] | None = None,
        accept_algs: Iterable[str] | None = None,
        requirement: str | None = None,
    ) -> None:
        if code not in SIGNATURE_ERROR_CODES:
            raise ValueError(f"not a Signature-Error code: {code}")
        super().__init__(detail, error=code)
        self.required_input = tuple(required_input) if required_input is not None else None
        self.accept_schemes = tuple(accept_schemes) if accept_schemes is not None else None
        self.accept_algs = tuple(accept_algs) if accept_algs is not None else None
        self.requirement = requirement

    def response_headers(self) -> Headers:
        headers: Headers = [
            ("Signature-Error", fields.signature_error(self.error, self.required_input))
        ]
        if self.accept_schemes:
            headers.append(("Accept-Signature-Scheme", fields.token_list(self.accept_schemes)))
        if self.accept_algs:
            headers.append(("Accept-Signature-Alg", fields.token_list(self.accept_algs)))
        if self.requirement:
            headers.append(("AAuth-Requirement", fields.aauth_requirement(self.requirement)))
        headers.extend(self.extra_headers)
        return headers


class RequirementChallenge(AAuthError):
    """A ``401`` (or ``202``/``402``) carrying ``AAuth-Requirement``.

    The drafts give no ``error`` code for a challenge; we use ``<requirement>_required``
    with ``-`` folded to ``_`` (``agent_token_required``), documented in the README.
    """

    status = 401

    def __init__(
        self,
        requirement: str,
        detail: str = "",
        *,
        params: Mapping[str, str] | None = None,
        status: int = 401,
        headers: Headers | None = None,
    ) -> None:
        super().__init__(
            detail,
            error=requirement.replace("-", "_") + "_required",
            status=status,
            headers=headers,
        )
        self.requirement = requirement
        self.params = dict(params or {})

    def response_headers(self) -> Headers:
        return [
            ("AAuth-Requirement", fields.aauth_requirement(self.requirement, self.params)),
            *self.extra_headers,
        ]


class RequestRejected(AAuthError):
    """A request refused before any protocol step: a ``Host`` no URL can be built from
    (``400``) or a body over the configured limit (``413``).  The drafts name no code for
    either; both answer ``invalid_request`` (documented in the README)."""

    status = 400
    error = "invalid_request"

    @classmethod
    def malformed_host(cls) -> RequestRejected:
        return cls("the Host header is not a valid host[:port]")

    @classmethod
    def body_too_large(cls, limit: int) -> RequestRejected:
        return cls(f"the body is larger than {limit} bytes", status=413)


class ConfigurationError(ValueError):
    """A configuration the framework refuses to run with."""


class Forbidden(AAuthError):
    """Authenticated but not authorised: ``403`` with no ``Signature-Error`` or ``Accept-*``."""

    status = 403
    error = "forbidden"


class ServerError(AAuthError):
    status = 500
    error = "server_error"


class Deferred(AAuthError):
    """A ``202 Accepted`` deferred response (digest 5.5): poll ``Location``.

    Raised like an error so it leaves the decision logic the same way a challenge does,
    but it renders as ``application/json`` ``{"status": ...}`` with the headers every
    pending response carries (``Location``, ``Retry-After``, ``Cache-Control: no-store``).
    """

    status = 202
    error = "pending"

    def __init__(
        self,
        location: str,
        *,
        requirement: str | None = None,
        params: Mapping[str, str] | None = None,
        retry_after: int = 0,
        body_status: str = "pending",
        extra: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__("", extra=extra)
        self.location = location
        self.requirement = requirement
        self.params = dict(params or {})
        self.retry_after = retry_after
        self.body_status = body_status

    def response_headers(self) -> Headers:
        headers: Headers = [
            ("Location", self.location),
            ("Retry-After", str(self.retry_after)),
            ("Cache-Control", "no-store"),
        ]
        if self.requirement:
            headers.append(
                ("AAuth-Requirement", fields.aauth_requirement(self.requirement, self.params))
            )
        headers.extend(self.extra_headers)
        return headers

    def body(self) -> dict[str, object]:
        return {"status": self.body_status, **self.extra_body}

    def to_response(self) -> HttpResponse:
        return HttpResponse.json(self.status, self.body(), headers=self.response_headers())
