"""Phase B start: ``POST /ath/authorize`` and the session it creates.

The session is single-use, expires ``session_ttl`` (10 min) after creation, carries the
implementer's own PKCE verifier and OAuth ``state`` (never the agent's), and is bound to
the first browser that opens the authorization URL by an HttpOnly cookie, checked again at
the callback.  The agent's ``state`` must carry at least 128 bits: 32 hex digits, or 22
characters of any other URL-safe alphabet; a missing or weaker one is ``STATE_MISMATCH``.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Generator, Mapping
from typing import Any
from urllib.parse import urlencode

from ..http import HttpRequest, HttpResponse
from ..steps import StoreOp
from ..storage.base import Record
from . import agents, attestation, upstream
from .context import KIND_SESSION, KIND_STATE, Context
from .driver import Op
from .errors import ATHError
from .wire import absolute_url, digest, json_body, new_id, required_text, text, text_list

_HEX = re.compile(r"[0-9a-fA-F]+")
_STATE = re.compile(r"[A-Za-z0-9._~+/=-]+")
#: Records outlive the session by this much so a late call hears SESSION_EXPIRED, not NOT_FOUND.
GRACE = 600


def check_state(value: object) -> str:
    if value is None:
        raise ATHError("STATE_MISMATCH", "state is required")
    if not isinstance(value, str) or len(value) > 512 or not _STATE.fullmatch(value):
        raise ATHError("STATE_MISMATCH", "state must be a URL-safe string")
    needed = 32 if _HEX.fullmatch(value) else 22
    if len(value) < needed:
        raise ATHError("STATE_MISMATCH", "state must carry at least 128 bits of randomness")
    return value


def s256(verifier: str) -> str:
    return (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest())
        .rstrip(b"=")
        .decode("ascii")
    )


def _redirect(ctx: Context, record: Record, body: Mapping[str, Any]) -> str | None:
    uri = text(body, "user_redirect_uri", required=False)
    registered = record.data.get("redirect_uris")
    if uri is None:
        return None
    if not registered:
        raise ATHError(
            "INVALID_REQUEST",
            "user_redirect_uri needs redirect_uris at registration",
            {"field": "user_redirect_uri"},
        )
    if uri not in registered:
        raise ATHError(
            "INVALID_REQUEST",
            "user_redirect_uri matches no registered redirect_uri",
            {"field": "user_redirect_uri"},
        )
    return uri


def authorize(ctx: Context, request: HttpRequest) -> Generator[Op, Any, HttpResponse]:
    config = ctx.config
    body = json_body(request, config.max_body)
    agent_state = check_state(body.get("state"))
    client_id = required_text(body, "client_id", limit=64)
    provider_id = required_text(body, "provider_id", limit=128)
    scopes = text_list(body, "scopes")
    assert scopes is not None
    if not scopes:
        raise ATHError(
            "INVALID_REQUEST", "scopes must name at least one scope", {"field": "scopes"}
        )
    resource = text(body, "resource", required=False)
    if resource is not None and not absolute_url(resource, dev_loopback=config.dev_loopback):
        raise ATHError("INVALID_REQUEST", "resource must be an absolute URL", {"field": "resource"})
    record = yield from agents.load(ctx, client_id)
    if record is None:
        raise ATHError("AGENT_NOT_REGISTERED", "unknown client_id")
    agents.require_approved(ctx, record)
    agent_id = str(record.data["agent_id"])
    yield from attestation.verify(
        ctx,
        body.get("agent_attestation"),
        audience=config.base_url,
        agent_id=agent_id,
        endpoint="authorize",
        registered=True,
    )
    provider = config.provider(provider_id)
    approved = agents.approved_scopes(record, provider.provider_id) if provider else None
    if provider is None or approved is None:
        raise ATHError(
            "PROVIDER_NOT_APPROVED",
            "the agent is not approved for this provider",
            {"provider_id": provider_id},
        )
    beyond = [s for s in scopes if s not in approved]
    if beyond:
        ctx.audit(
            "scope_violation",
            agent_id=agent_id,
            client_id=client_id,
            step="authorize",
            scopes=beyond,
        )
        raise ATHError(
            "SCOPE_NOT_APPROVED",
            "scopes outside the agent's approved scopes",
            {"not_approved": beyond, "approved": approved},
        )
    user_redirect_uri = _redirect(ctx, record, body)
    session_id = new_id("ath_sess_", 16)
    oauth_state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(48)
    if config.mode == "native":
        query = {
            "response_type": "code",
            "client_id": config.native_client_id,
            "redirect_uri": config.callback_url,
            "scope": " ".join(scopes),
            "state": oauth_state,
            "code_challenge": s256(verifier),
            "code_challenge_method": "S256",
        }
        if resource:
            query["resource"] = resource
        authorization_url = f"{config.base_url}/ath/consent?{urlencode(query)}"
        upstream_url = None
    else:
        upstream_url = upstream.authorization_url(
            provider,
            redirect_uri=config.callback_url,
            scopes=scopes,
            state=oauth_state,
            code_verifier=verifier,
            resource=resource,
        )
        authorization_url = f"{config.base_url}/ath/start?{urlencode({'state': oauth_state})}"
    now = ctx.now()
    data = {
        "session_id": session_id,
        "client_id": client_id,
        "agent_id": agent_id,
        "provider_id": provider.provider_id,
        "scopes": scopes,
        "agent_state": agent_state,
        "user_redirect_uri": user_redirect_uri,
        "resource": resource,
        "oauth_state_sha256": digest(oauth_state),
        "code_verifier": verifier,
        "upstream_url": upstream_url,
        "browser": None,
        "status": "pending",
        "created_at": now,
    }
    ttl = config.session_ttl + GRACE
    yield StoreOp("create", (KIND_SESSION, ctx.key(session_id), data, ttl))
    yield StoreOp(
        "create", (KIND_STATE, ctx.key(digest(oauth_state)), {"session_id": session_id}, ttl)
    )
    ctx.audit(
        "authorization_started",
        agent_id=agent_id,
        client_id=client_id,
        provider_id=provider.provider_id,
        scopes=scopes,
        session_id=session_id,
    )
    return HttpResponse.json(
        200,
        {"authorization_url": authorization_url, "ath_session_id": session_id},
        headers=[("Cache-Control", "no-store")],
    )


def session_for_state(ctx: Context, oauth_state: str) -> Generator[Op, Any, Record | None]:
    """The session an OAuth ``state`` belongs to, or None."""
    if not oauth_state or len(oauth_state) > 512:
        return None
    pointer: Record | None = yield StoreOp("get", (KIND_STATE, ctx.key(digest(oauth_state))))
    if pointer is None:
        return None
    session: Record | None = yield StoreOp(
        "get", (KIND_SESSION, ctx.key(str(pointer.data["session_id"])))
    )
    if session is None or session.data.get("oauth_state_sha256") != digest(oauth_state):
        return None
    return session


def expired(ctx: Context, session: Record) -> bool:
    return ctx.now() - float(session.data["created_at"]) > ctx.config.session_ttl
