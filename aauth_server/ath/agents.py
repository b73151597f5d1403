"""Registered agents: the stored record, client authentication, and approval checks."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Generator, Mapping
from datetime import UTC, datetime
from typing import Any

from ..http import HttpRequest
from ..steps import StoreOp
from ..storage.base import Record
from .context import KIND_AGENT, Context
from .driver import Op
from .errors import ATHError


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def load(ctx: Context, client_id: str) -> Generator[Op, Any, Record | None]:
    if not client_id.startswith("ath_") or len(client_id) > 64:
        return None
    record: Record | None = yield StoreOp("get", (KIND_AGENT, ctx.key(client_id)))
    return record


def authenticate_client(
    ctx: Context, client_id: object, client_secret: object
) -> Generator[Op, Any, Record]:
    """The agent whose ``client_id`` and ``client_secret`` these are.  An unknown id and a wrong
    secret get the same answer, after the same work (no registration oracle)."""
    if not isinstance(client_id, str) or not client_id:
        raise ATHError("AGENT_NOT_REGISTERED", "client_id is required")
    if not isinstance(client_secret, str) or not client_secret:
        raise ATHError("AGENT_NOT_REGISTERED", "client_secret is required")
    record = yield from load(ctx, client_id)
    stored = str(record.data.get("secret_sha256", "")) if record is not None else "0" * 64
    ok = hmac.compare_digest(stored.encode("ascii"), secret_hash(client_secret).encode("ascii"))
    if record is None or not ok:
        raise ATHError("AGENT_NOT_REGISTERED", "unknown client_id or wrong client_secret")
    return record


def require_approved(ctx: Context, record: Record) -> None:
    data = record.data
    if data.get("status") != "approved":
        raise ATHError(
            "AGENT_UNAPPROVED",
            f"the agent's registration is {data.get('status')}",
            {"agent_status": data.get("status")},
        )
    if float(data.get("approval_expires", 0)) <= ctx.now():
        raise ATHError("AGENT_UNAPPROVED", "the agent's approval has expired")


def approved_scopes(record: Record, provider_id: str) -> list[str] | None:
    """The scopes the agent is approved for at ``provider_id``, or None when it is not."""
    for entry in record.data.get("providers", []):
        if entry.get("provider_id") == provider_id:
            scopes = list(entry.get("approved_scopes", []))
            return scopes or None
    return None


def public_view(record: Record) -> dict[str, Any]:
    """What ``GET /ath/agents/{client_id}`` shows the agent itself."""
    data = record.data
    return {
        "client_id": data["client_id"],
        "agent_id": data["agent_id"],
        "agent_status": data["status"],
        "approved_providers": providers_view(data),
        "approval_expires": iso(float(data["approval_expires"])),
        "registered_at": iso(float(data["registered_at"])),
        "developer": data.get("developer") or {},
        "purpose": data.get("purpose"),
        "redirect_uris": data.get("redirect_uris"),
    }


def providers_view(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for entry in data.get("providers", []):
        item: dict[str, Any] = {
            "provider_id": entry["provider_id"],
            "approved_scopes": list(entry.get("approved_scopes", [])),
            "denied_scopes": list(entry.get("denied_scopes", [])),
        }
        if entry.get("denial_reason"):
            item["denial_reason"] = entry["denial_reason"]
        out.append(item)
    return out


def basic_credentials(request: HttpRequest) -> tuple[str, str] | None:
    """``Authorization: Basic`` client credentials (RFC 6749 2.3.1 style), if sent."""
    value = request.header("authorization") or ""
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise ATHError("AGENT_NOT_REGISTERED", "malformed Basic credentials") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise ATHError("AGENT_NOT_REGISTERED", "malformed Basic credentials")
    return client_id, secret
