"""Phase B finish and the token's life: ``POST /ath/token``, validation, ``POST /ath/revoke``.

Tokens are opaque (``ath_tk_`` + 256 random bits), stored only by their SHA-256 in the shared
store, bound to (agent, user, provider, scopes), and kept past expiry for an hour so a late
call hears ``TOKEN_EXPIRED`` rather than ``TOKEN_INVALID``.  Revocation marks the record, so
every worker refuses the token at its next call (``TOKEN_REVOKED``).

Decisions: ``code`` at the token endpoint is vestigial (the upstream code was redeemed at the
callback) and any string, including the SDKs' ``"placeholder"``, is accepted; ``grant_type``
must be ``authorization_code`` when sent.  A session owned by another client is
``SESSION_NOT_FOUND`` (no session oracle).  Revocation answers ``200 {}`` for known and
unknown tokens alike; an agent revoking another agent's token is ``403
AGENT_IDENTITY_MISMATCH``; a user revoking a token not bound to them is ``403 FORBIDDEN``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..http import HttpRequest, HttpResponse
from ..pagekit import same_origin_post
from ..steps import StoreOp
from ..storage.base import Record, RecordNotFound, VersionConflict
from . import agents, attestation
from .context import KIND_SESSION, KIND_TOKEN, Context
from .driver import Op
from .errors import ATHError
from .routes import ScopeMap
from .wire import digest, json_body, required_text, text

TOKEN_PREFIX = "ath_tk_"  # noqa: S105 - a prefix, not a secret
EXPIRED_GRACE = 3600
_BEARER = re.compile(r"Bearer +([A-Za-z0-9._~+/-]+=*) *", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What a validated ATH token is bound to; views receive it."""

    agent_id: str
    client_id: str
    user_id: str
    provider_id: str
    scopes: tuple[str, ...]
    expires_at: float
    token_id: str
    upstream: Mapping[str, Any] | None = None


def _token_id(token: str) -> str:
    return digest(token)


def token(ctx: Context, request: HttpRequest) -> Generator[Op, Any, HttpResponse]:
    config = ctx.config
    body = json_body(request, config.max_body)
    grant_type = body.get("grant_type")
    if grant_type is not None and grant_type != "authorization_code":
        raise ATHError(
            "INVALID_REQUEST", "grant_type must be authorization_code", {"field": "grant_type"}
        )
    code = body.get("code")
    if code is not None and (not isinstance(code, str) or len(code) > 2048):
        raise ATHError("INVALID_REQUEST", "code must be a string", {"field": "code"})
    session_id = required_text(body, "ath_session_id", code="SESSION_NOT_FOUND", limit=128)
    record = yield from agents.authenticate_client(
        ctx, body.get("client_id"), body.get("client_secret")
    )
    agents.require_approved(ctx, record)
    agent_id = str(record.data["agent_id"])
    client_id = str(record.data["client_id"])
    yield from attestation.verify(
        ctx,
        body.get("agent_attestation"),
        audience=config.token_audience,
        agent_id=agent_id,
        endpoint="token",
        registered=True,
    )
    session: Record | None = yield StoreOp("get", (KIND_SESSION, ctx.key(session_id)))
    if session is None or session.data.get("client_id") != client_id:
        raise ATHError("SESSION_NOT_FOUND", "no such session for this client")
    data = session.data
    if ctx.now() - float(data["created_at"]) > config.session_ttl:
        raise ATHError("SESSION_EXPIRED", "the session is older than its lifetime")
    if data.get("status") == "failed":
        code_name = str(data.get("error_code") or "USER_DENIED")
        raise ATHError(
            code_name,
            "the user did not grant access"
            if code_name == "USER_DENIED"
            else "the authorization failed",
        )
    if data.get("status") != "completed":
        raise ATHError("SESSION_NOT_FOUND", "the user has not completed the authorization yet")
    consumed: Record | None = yield StoreOp("consume", (KIND_SESSION, ctx.key(session_id)))
    if consumed is None or consumed.version != session.version:
        raise ATHError("SESSION_NOT_FOUND", "the session was already used")
    provider_id = str(data["provider_id"])
    approved = agents.approved_scopes(record, provider_id) or []
    consented = list(data.get("consented_scopes") or [])
    requested = list(data.get("scopes") or [])
    effective = [s for s in requested if s in approved and s in consented]
    breakdown = {"agent_approved": approved, "user_consented": consented, "effective": effective}
    if not effective:
        ctx.audit(
            "access_denied",
            agent_id=agent_id,
            client_id=client_id,
            reason="empty scope intersection",
        )
        raise ATHError(
            "SCOPE_NOT_APPROVED",
            "no scope is approved, consented and requested",
            {"scope_intersection": breakdown},
        )
    access_token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = ctx.now()
    token_data = {
        "agent_id": agent_id,
        "client_id": client_id,
        "user_id": data.get("user_id"),
        "provider_id": provider_id,
        "scopes": effective,
        "issued_at": now,
        "expires_at": now + config.token_ttl,
        "revoked": False,
        "upstream": data.get("upstream"),
    }
    yield StoreOp(
        "create",
        (
            KIND_TOKEN,
            ctx.key(_token_id(access_token)),
            token_data,
            config.token_ttl + EXPIRED_GRACE,
        ),
    )
    ctx.audit(
        "access_granted",
        agent_id=agent_id,
        client_id=client_id,
        user_id=data.get("user_id"),
        provider_id=provider_id,
        scopes=effective,
        token=_token_id(access_token)[:8],
    )
    payload = {
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": config.token_ttl,
        "effective_scopes": effective,
        "provider_id": provider_id,
        "agent_id": agent_id,
        "scope_intersection": breakdown,
    }
    return HttpResponse.json(
        200, payload, headers=[("Cache-Control", "no-store"), ("Pragma", "no-cache")]
    )


def bearer(request: HttpRequest) -> str:
    value = request.header("authorization")
    if not value:
        raise ATHError("TOKEN_INVALID", "an ATH bearer token is required")
    match = _BEARER.fullmatch(value)
    if match is None or not match.group(1).startswith(TOKEN_PREFIX) or len(match.group(1)) > 256:
        raise ATHError("TOKEN_INVALID", "the Authorization header is not an ATH bearer token")
    return match.group(1)


def validate(
    ctx: Context,
    request: HttpRequest,
    *,
    provider_id: str | None,
    scope_map: ScopeMap,
    operation: tuple[str, str] | None,
    required: Iterable[str] = (),
) -> Generator[Op, Any, TokenInfo]:
    """The token a request carries, checked for this provider, operation and scopes.

    ``operation`` is (method, path relative to the API base): it must be mapped, and the
    token must hold a scope the map grants for it; ``required`` scopes (a view's own) must
    all be held as well.
    """
    access_token = bearer(request)
    tid = _token_id(access_token)
    record: Record | None = yield StoreOp("get", (KIND_TOKEN, ctx.key(tid)))
    if record is None:
        raise ATHError("TOKEN_INVALID", "unknown token")
    data = record.data
    if data.get("revoked"):
        raise ATHError("TOKEN_REVOKED", "the token was revoked")
    if float(data["expires_at"]) <= ctx.now():
        raise ATHError("TOKEN_EXPIRED", "the token has expired")
    agent_id = str(data["agent_id"])
    header = request.header("x-ath-agent-id")
    if header is None and ctx.config.require_agent_header:
        raise ATHError("AGENT_IDENTITY_MISMATCH", "X-ATH-Agent-ID is required")
    if header is not None and header != agent_id:
        raise ATHError("AGENT_IDENTITY_MISMATCH", "X-ATH-Agent-ID is not the token's agent")
    if provider_id is not None and provider_id != data["provider_id"]:
        raise ATHError("PROVIDER_MISMATCH", "the token is bound to another provider")
    scopes = tuple(data.get("scopes", ()))
    info = TokenInfo(
        agent_id=agent_id,
        client_id=str(data["client_id"]),
        user_id=str(data.get("user_id")),
        provider_id=str(data["provider_id"]),
        scopes=scopes,
        expires_at=float(data["expires_at"]),
        token_id=tid,
        upstream=data.get("upstream"),
    )
    if operation is not None:
        method, path = operation
        allowing = scope_map.scopes_for(method, path)
        if not allowing:
            ctx.audit(
                "scope_violation",
                agent_id=agent_id,
                method=method,
                path=path[:200],
                reason="unmapped operation",
            )
            raise ATHError(
                "SCOPE_NOT_APPROVED",
                "this operation is not mapped to any scope",
                {"method": method},
            )
        if not allowing & set(scopes):
            ctx.audit(
                "scope_violation",
                agent_id=agent_id,
                method=method,
                path=path[:200],
                reason="scope not held",
            )
            raise ATHError(
                "SCOPE_NOT_APPROVED",
                "the token lacks a scope for this operation",
                {"needs_one_of": sorted(allowing)},
            )
    missing = [s for s in required if s not in scopes]
    if missing:
        ctx.audit(
            "scope_violation", agent_id=agent_id, reason="view scope not held", scopes=missing
        )
        raise ATHError(
            "SCOPE_NOT_APPROVED",
            "the token lacks a scope this operation needs",
            {"missing": missing},
        )
    return info


def _mark_revoked(ctx: Context, tid: str) -> Generator[Op, Any, None]:
    for _ in range(8):
        record: Record | None = yield StoreOp("get", (KIND_TOKEN, ctx.key(tid)))
        if record is None or record.data.get("revoked"):
            return
        try:
            yield StoreOp(
                "compare_and_set",
                (KIND_TOKEN, ctx.key(tid), record.version, {**record.data, "revoked": True}, None),
            )
            return
        except (VersionConflict, RecordNotFound):
            continue


def revoke(ctx: Context, request: HttpRequest) -> Generator[Op, Any, HttpResponse]:
    config = ctx.config
    body = json_body(request, config.max_body)
    access_token = text(body, "token", required=True, limit=256)
    assert access_token is not None
    tid = _token_id(access_token)
    ok = HttpResponse.json(200, {}, headers=[("Cache-Control", "no-store")])
    if body.get("client_id") is not None or body.get("client_secret") is not None:
        record = yield from agents.authenticate_client(
            ctx, body.get("client_id"), body.get("client_secret")
        )
        target: Record | None = yield StoreOp("get", (KIND_TOKEN, ctx.key(tid)))
        if target is None:
            return ok
        if target.data.get("client_id") != record.data.get("client_id"):
            raise ATHError("AGENT_IDENTITY_MISMATCH", "an agent may revoke only its own tokens")
        yield from _mark_revoked(ctx, tid)
        ctx.audit("token_revoked", by="agent", agent_id=target.data.get("agent_id"), token=tid[:8])
        return ok
    # A person signed in to the service, or an administrator: cookies ride on a browser's
    # requests, so the call must come from this origin (JSON bodies cannot be sent
    # cross-site without a preflight; Origin and Sec-Fetch-Site are checked as well).
    admin = config.admin_authenticate(request) if config.admin_authenticate else None
    user = None if admin else (config.authenticate(request) if config.authenticate else None)
    if admin is None and user is None:
        raise ATHError(
            "AUTH_REQUIRED",
            "revocation needs client credentials, a signed-in user or an administrator",
        )
    if not same_origin_post(request):
        raise ATHError("FORBIDDEN", "a cross-site revocation is refused")
    target = yield StoreOp("get", (KIND_TOKEN, ctx.key(tid)))
    if target is None:
        return ok
    if admin is None and str(target.data.get("user_id")) != user:
        raise ATHError("FORBIDDEN", "this token was not granted by you")
    yield from _mark_revoked(ctx, tid)
    ctx.audit(
        "token_revoked",
        by="admin" if admin else "user",
        actor=admin or user,
        agent_id=target.data.get("agent_id"),
        token=tid[:8],
    )
    return ok


def revoke_as_admin(ctx: Context, access_token: str, admin: str) -> Generator[Op, Any, bool]:
    tid = _token_id(access_token)
    target: Record | None = yield StoreOp("get", (KIND_TOKEN, ctx.key(tid)))
    if target is None:
        return False
    yield from _mark_revoked(ctx, tid)
    ctx.audit(
        "token_revoked",
        by="admin",
        actor=admin,
        agent_id=target.data.get("agent_id"),
        token=tid[:8],
    )
    return True
