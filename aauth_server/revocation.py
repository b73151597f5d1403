"""Token revocation endpoints (digest 5.7), shared by the resource and the Person Server.

The caller signs as a server in its own right (``jwks_uri`` scheme, digest and type
covered) and revokes only its own tokens: state is keyed ``(verified caller, jti)``.
Who may revoke here is the endpoint's decision (``accepts``); the rest is common: the
per-caller rate limit, the ``{jti, exp}`` body and the record kept until ``exp`` + grace.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from . import safejson
from .clock import Clock
from .errors import AAuthError
from .http import HttpRequest
from .keys.discovery import KeyDiscovery
from .signatures.message import AAUTH_COMPONENTS
from .signatures.signature_key import select_signature_key
from .steps import Steps, StoreOp
from .storage.base import RecordExists
from .verifier import RequestVerifier, VerifierConfig

#: The furthest in the future a revoked token's ``exp`` may be (tokens live <= 24 h).
MAX_REVOCATION_HORIZON = 2 * 86400


def problem(status: int, error: str, detail: str, **headers: str) -> AAuthError:
    return AAuthError(detail, error=error, status=status, headers=list(headers.items()))


def json_request_body(request: HttpRequest) -> Mapping[str, Any]:
    """A token endpoint's body: ``Content-Type: application/json`` and a JSON object
    (:func:`json_body`); anything else is ``400 invalid_request``."""
    media = (request.header("content-type") or "").split(";")[0].strip().lower()
    if media != "application/json":
        raise problem(400, "invalid_request", "the body must be application/json")
    return json_body(request)


def slow_down(detail: str, retry_after: int) -> AAuthError:
    """``429 slow_down`` (digest 5.5 polling errors), with the ``Retry-After`` to keep."""
    return problem(429, "slow_down", detail, **{"Retry-After": str(retry_after)})


def json_body(request: HttpRequest) -> Mapping[str, Any]:
    """The request body as a JSON object, parsed with the nesting limit of
    :mod:`aauth_server.safejson`: the one parser of every AAuth request body (token,
    authorization, revocation, interaction and pending-URL endpoints).  Anything else is
    ``400 invalid_request``."""
    try:
        body = safejson.loads(request.body)
    except ValueError as exc:  # includes UnicodeDecodeError and too deep a nesting
        raise problem(400, "invalid_request", "the body is not JSON") from exc
    if not isinstance(body, dict):
        raise problem(400, "invalid_request", "the body is not a JSON object")
    return body


class RateLimit:
    """Revocations per caller per minute, counted in the pending store with its atomic
    ``increment``: every worker sharing the store shares the count (state must stay bounded
    per issuer, digest 5.7)."""

    def __init__(self, limit: int, window: int = 60) -> None:
        self.limit = limit
        self.window = window

    def check_steps(self, caller: str, now: float) -> Steps[None]:
        """``429 rate_limited`` (``Retry-After`` the window) once ``caller`` is over."""
        from .resource.state import digest_id  # lazy, as in revocation_steps

        window = int(now // self.window)
        key = f"revocations:{digest_id(caller)}:{window}"
        count = yield StoreOp("increment", (key, 1, float(self.window)))
        if count > self.limit:
            raise problem(
                429, "rate_limited", "too many revocations", **{"Retry-After": str(self.window)}
            )


def server_verifier(discovery: KeyDiscovery, base: VerifierConfig, clock: Clock) -> RequestVerifier:
    """A verifier for requests servers sign in their own right (digest 2.3, 5.7)."""
    return RequestVerifier(
        discovery,
        VerifierConfig(
            accept_schemes=("jwks_uri",),
            accept_algs=base.accept_algs,
            token_types=(),
            window=base.window,
            required_components=AAUTH_COMPONENTS,
            require_body_coverage=True,
            accept_base64url=base.accept_base64url,
            dev_loopback=base.dev_loopback,
        ),
        clock=clock,
    )


def revocation_steps(
    request: HttpRequest,
    verifier: RequestVerifier,
    *,
    accepts: Callable[[str, object], bool],
    rate_limit: RateLimit,
    clock: Clock,
    record: Callable[[str, str, int, float], Steps[None]] | None = None,
) -> Steps[tuple[str, object, str]]:
    """Verify, authorise and record one revocation; returns ``(caller, dwk, jti)``.

    ``accepts(caller, dwk)`` says whether this server takes revocations from that issuer
    and document (``unsupported_iss`` otherwise).  Revoking twice is the same as once.
    ``record(caller, jti, exp, now)`` keeps the revocation somewhere else than the pending
    store (the Person Server's durable records).
    """
    # Lazy: the resource package imports this module while it initialises.
    from .resource.state import KIND_REVOKED, REVOCATION_GRACE, digest_id

    verified = yield from verifier.steps(request)
    caller = verified.issuer
    assert caller is not None
    dwk = select_signature_key(request.header("signature-key"), verified.label).params.get("dwk")
    if not accepts(caller, dwk):
        raise problem(403, "unsupported_iss", f"{caller} does not issue tokens accepted here")
    yield from rate_limit.check_steps(caller, clock.now())
    body = json_body(request)
    jti, exp = body.get("jti"), body.get("exp")
    if not isinstance(jti, str) or not jti:
        raise problem(400, "invalid_request", "jti is required")
    if not isinstance(exp, int) or isinstance(exp, bool):
        raise problem(400, "invalid_request", "exp is required (integer seconds)")
    now = clock.now()
    if exp > now + MAX_REVOCATION_HORIZON:
        raise problem(400, "invalid_request", "exp is further away than any token lives")
    if record is not None:
        if exp + REVOCATION_GRACE > now:
            yield from record(caller, jti, exp, now)
        return caller, dwk, jti
    ttl = exp + REVOCATION_GRACE - now
    if ttl > 0:
        try:
            yield StoreOp(
                "create", (KIND_REVOKED, digest_id(caller, jti), {"iss": caller, "jti": jti}, ttl)
            )
        except RecordExists:
            pass
    return caller, dwk, jti
