"""The native service's own OAuth 2 authorization server: codes and their redemption.

A native service runs the authorization-code flow itself: its consent page is the
authorization endpoint (``/ath/consent``), and a code the page issues is redeemed with the
PKCE verifier, for the service's own ATH client (``<app_id>.ath``) and its callback only.
The callback redeems in process through :func:`redeem`; ``POST /ath/oauth/token`` is the
same redemption over HTTP (form-encoded, RFC 6749 4.1.3, client_secret_basic or _post)
for that one client, whose secret only the service derives.  The grant stays server-side:
the service's API accepts ATH tokens only.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Generator
from typing import Any

from ..http import HttpRequest, HttpResponse
from ..pagekit import form_fields
from ..steps import StoreOp
from ..storage.base import Record
from .agents import basic_credentials
from .authorize import s256
from .context import KIND_CODE, Context
from .driver import Op
from .errors import ATHError
from .wire import digest

CODE_TTL = 120


class GrantError(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def issue(
    ctx: Context, session: Record, user_id: str, scopes: list[str]
) -> Generator[Op, Any, str]:
    code = secrets.token_urlsafe(32)
    data = {
        "session_id": session.data["session_id"],
        "client_id": ctx.config.native_client_id,
        "redirect_uri": ctx.config.callback_url,
        "code_challenge": s256(str(session.data["code_verifier"])),
        "scopes": scopes,
        "user_id": user_id,
    }
    yield StoreOp("create", (KIND_CODE, ctx.key(digest(code)), data, CODE_TTL))
    return code


def redeem(
    ctx: Context, code: str, *, client_id: str, redirect_uri: str, verifier: str
) -> Generator[Op, Any, dict[str, Any]]:
    """The grant behind ``code``, used up (once, across workers), or :class:`GrantError`."""
    if not code or len(code) > 256:
        raise GrantError("invalid_grant", "unknown code")
    record: Record | None = yield StoreOp("consume", (KIND_CODE, ctx.key(digest(code))))
    if record is None:
        raise GrantError("invalid_grant", "unknown, used or expired code")
    data = record.data
    if not hmac.compare_digest(str(data["client_id"]), client_id):
        raise GrantError("invalid_grant", "the code was issued to another client")
    if data["redirect_uri"] != redirect_uri:
        raise GrantError("invalid_grant", "redirect_uri does not match")
    if not verifier or not hmac.compare_digest(s256(verifier), str(data["code_challenge"])):
        raise GrantError("invalid_grant", "the PKCE code_verifier does not match")
    return dict(data)


def _oauth_error(status: int, error: str, description: str) -> HttpResponse:
    return HttpResponse.json(
        status,
        {"error": error, "error_description": description},
        headers=[("Cache-Control", "no-store")],
    )


def token_endpoint(ctx: Context, request: HttpRequest) -> Generator[Op, Any, HttpResponse]:
    config = ctx.config
    if len(request.body) > config.max_body:
        raise ATHError("PAYLOAD_TOO_LARGE", "the request body is too large")
    form = form_fields(request, config.max_body)
    try:
        basic = basic_credentials(request)
    except ATHError:
        basic = None
    client_id, secret = (
        basic if basic else (form.get("client_id", ""), form.get("client_secret", ""))
    )
    expected = config.native_client_secret()
    if client_id != config.native_client_id or not hmac.compare_digest(
        secret.encode(), expected.encode()
    ):
        return _oauth_error(401, "invalid_client", "unknown client or wrong secret")
    if form.get("grant_type") != "authorization_code":
        return _oauth_error(400, "unsupported_grant_type", "only authorization_code")
    try:
        grant = yield from redeem(
            ctx,
            form.get("code", ""),
            client_id=client_id,
            redirect_uri=form.get("redirect_uri", ""),
            verifier=form.get("code_verifier", ""),
        )
    except GrantError as exc:
        return _oauth_error(400, exc.error, exc.description)
    return HttpResponse.json(
        200,
        {
            "access_token": "ath_grant_" + digest(str(grant["session_id"]))[:32],
            "token_type": "Bearer",
            "expires_in": CODE_TTL,
            "scope": " ".join(grant["scopes"]),
        },
        headers=[("Cache-Control", "no-store")],
    )
