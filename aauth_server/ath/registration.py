"""Phase A: ``POST /ath/agents/register`` and ``GET /ath/agents/{client_id}``.

Decisions made here (documented in docs/ath.md): ``201`` for every outcome (``approved``,
``pending``, ``denied``), each with credentials, since authorize checks the status anyway;
requested scopes a provider does not offer (or an unknown provider) are denied by the
server with a reason before the approval policy sees the rest; a second registration of
an ``agent_id`` is ``409 CONFLICT`` even after a denial; ``redirect_uris`` must be absolute
https URLs (loopback http in development), at most ten.
"""

from __future__ import annotations

import secrets
from collections.abc import Generator, Mapping
from typing import Any

from ..http import HttpRequest, HttpResponse
from ..steps import StoreOp
from ..storage.base import Record, RecordExists, RecordNotFound, VersionConflict
from . import agents, attestation
from .context import KIND_AGENT, KIND_AGENT_ID, KIND_REVIEW, Context
from .driver import Op
from .errors import ATHError
from .policy import Decision, ProviderDecision, RegistrationRequest
from .wire import absolute_url, digest, json_body, new_id, required_text, text, text_list

MAX_PROVIDERS = 16
MAX_REDIRECTS = 10
MAX_REVIEW = 500
REVIEW_ID = "queue"


def _developer(body: Mapping[str, Any]) -> dict[str, str]:
    value = body.get("developer")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ATHError("INVALID_REQUEST", "developer must be an object", {"field": "developer"})
    out: dict[str, str] = {}
    for member in ("name", "id", "contact"):
        item = value.get(member)
        if item is None:
            continue
        if not isinstance(item, str) or len(item) > 200:
            raise ATHError(
                "INVALID_REQUEST",
                f"developer.{member} must be a short string",
                {"field": "developer"},
            )
        out[member] = item
    return out


def _requested(body: Mapping[str, Any]) -> dict[str, list[str]]:
    value = body.get("requested_providers")
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_PROVIDERS:
        raise ATHError(
            "INVALID_REQUEST",
            f"requested_providers must list 1 to {MAX_PROVIDERS} providers",
            {"field": "requested_providers"},
        )
    out: dict[str, list[str]] = {}
    for item in value:
        if not isinstance(item, dict):
            raise ATHError(
                "INVALID_REQUEST",
                "each requested provider must be an object",
                {"field": "requested_providers"},
            )
        provider_id = required_text(item, "provider_id", limit=128)
        scopes = text_list(item, "scopes")
        assert scopes is not None
        if not scopes:
            raise ATHError(
                "INVALID_REQUEST",
                "each requested provider needs scopes",
                {"field": "requested_providers"},
            )
        if provider_id in out:
            raise ATHError(
                "INVALID_REQUEST",
                f"provider {provider_id!r} is listed twice",
                {"field": "requested_providers"},
            )
        out[provider_id] = scopes
    return out


def _redirect_uris(ctx: Context, body: Mapping[str, Any]) -> list[str] | None:
    uris = text_list(body, "redirect_uris", required=False, limit=MAX_REDIRECTS, item_limit=2048)
    if uris is None:
        return None
    for uri in uris:
        if not absolute_url(uri, dev_loopback=ctx.config.dev_loopback):
            raise ATHError(
                "INVALID_REQUEST",
                "redirect_uris must be absolute https URLs without fragment or credentials",
                {"field": "redirect_uris", "value": uri[:200]},
            )
    return uris


def _decide(
    ctx: Context,
    request: RegistrationRequest,
    unoffered: Mapping[str, list[str]],
    unknown: Mapping[str, list[str]],
) -> Decision:
    decision = ctx.config.approval(request)
    if decision.status not in ("approved", "pending", "denied"):
        raise ValueError(f"approval policy answered status {decision.status!r}")
    by_provider = {d.provider_id: d for d in decision.providers}
    providers: list[ProviderDecision] = []
    for provider_id, offered in request.requested.items():
        given = by_provider.get(provider_id)
        # The policy may only narrow: never a scope the agent did not ask for, or not offered.
        approved = tuple(s for s in (given.approved_scopes if given else ()) if s in offered)
        if decision.status != "approved":
            approved = ()
        denied = tuple(s for s in offered if s not in approved)
        extra = unoffered.get(provider_id, [])
        reason = given.denial_reason if given else None
        if extra:
            reason = (
                (reason + "; " if reason else "")
                + "not offered by this provider: "
                + " ".join(extra)
            )
        if denied and not reason:
            reason = decision.reason or "not approved"
        providers.append(ProviderDecision(provider_id, approved, (*denied, *extra), reason))
    for provider_id, scopes in unknown.items():
        providers.append(ProviderDecision(provider_id, (), tuple(scopes), "unknown provider"))
    status = decision.status
    if status == "approved" and not any(p.approved_scopes for p in providers):
        status = "denied"
    return Decision(status, tuple(providers), decision.reason)


def register(ctx: Context, request: HttpRequest) -> Generator[Op, Any, HttpResponse]:
    config = ctx.config
    body = json_body(request, config.max_body)
    agent_id = required_text(body, "agent_id")
    if not absolute_url(agent_id, dev_loopback=config.dev_loopback):
        raise ATHError("INVALID_REQUEST", "agent_id must be an https URL", {"field": "agent_id"})
    developer = _developer(body)
    requested = _requested(body)
    purpose = text(body, "purpose", required=False, limit=1000) or ""
    redirect_uris = _redirect_uris(ctx, body)
    attested = yield from attestation.verify(
        ctx,
        body.get("agent_attestation"),
        audience=config.base_url,
        agent_id=agent_id,
        endpoint="register",
        registered=False,
    )
    document = attested.document
    offered: dict[str, tuple[str, ...]] = {}
    unoffered: dict[str, list[str]] = {}
    unknown: dict[str, list[str]] = {}
    for provider_id, scopes in requested.items():
        provider = config.provider(provider_id)
        if provider is None:
            unknown[provider_id] = scopes
            continue
        pid = provider.provider_id
        if pid in offered:
            raise ATHError(
                "INVALID_REQUEST",
                f"provider {provider_id!r} is listed twice",
                {"field": "requested_providers"},
            )
        offered[pid] = tuple(s for s in scopes if s in provider.scopes)
        unoffered[pid] = [s for s in scopes if s not in provider.scopes]
    reg = RegistrationRequest(
        agent_id=agent_id,
        agent_name=document.name if document else agent_id,
        developer=developer or (dict(document.developer) if document else {}),
        purpose=purpose,
        requested=offered,
    )
    decision = _decide(ctx, reg, unoffered, unknown)
    now = ctx.now()
    client_id = new_id("ath_", 16)
    client_secret = "ath_secret_" + secrets.token_hex(32)
    data = {
        "client_id": client_id,
        "agent_id": agent_id,
        "name": reg.agent_name,
        "developer": reg.developer,
        "purpose": purpose,
        "redirect_uris": redirect_uris,
        "secret_sha256": agents.secret_hash(client_secret),
        "status": decision.status,
        "requested": {p: list(s) for p, s in offered.items()},
        "providers": [
            {
                "provider_id": p.provider_id,
                "approved_scopes": list(p.approved_scopes),
                "denied_scopes": list(p.denied_scopes),
                "denial_reason": p.denial_reason,
            }
            for p in decision.providers
        ],
        "registered_at": now,
        "approval_expires": now + config.approval_ttl,
    }
    try:
        yield StoreOp(
            "create",
            (
                KIND_AGENT_ID,
                ctx.key(digest(agent_id)),
                {"client_id": client_id},
                config.approval_ttl,
            ),
        )
    except RecordExists:
        raise ATHError(
            "CONFLICT", "this agent_id is already registered", {"agent_id": agent_id}
        ) from None
    yield StoreOp("create", (KIND_AGENT, ctx.key(client_id), data, config.approval_ttl))
    if decision.status == "pending":
        yield from _enqueue(ctx, client_id)
    event = "agent_registration_denied" if decision.status == "denied" else "agent_registered"
    ctx.audit(event, agent_id=agent_id, client_id=client_id, status=decision.status)
    payload = {
        "client_id": client_id,
        "client_secret": client_secret,
        "agent_status": decision.status,
        "approved_providers": agents.providers_view(data),
        "approval_expires": agents.iso(now + config.approval_ttl),
    }
    return HttpResponse.json(201, payload, headers=[("Cache-Control", "no-store")])


def get_agent(
    ctx: Context, request: HttpRequest, client_id: str
) -> Generator[Op, Any, HttpResponse]:
    """The caller's own record: authenticated by Basic client credentials, or by a fresh
    attestation in ``X-ATH-Agent-Attestation`` (audience: the base URL)."""
    basic = agents.basic_credentials(request)
    attestation_header = request.header("x-ath-agent-attestation")
    if basic is not None:
        record = yield from agents.authenticate_client(ctx, *basic)
        if basic[0] != client_id:
            raise ATHError("AGENT_IDENTITY_MISMATCH", "an agent may read only its own registration")
    elif attestation_header:
        record_or_none = yield from agents.load(ctx, client_id)
        claimed = _claimed_sub(attestation_header)
        if record_or_none is None or record_or_none.data.get("agent_id") != claimed:
            raise ATHError("AGENT_IDENTITY_MISMATCH", "an agent may read only its own registration")
        record = record_or_none
        yield from attestation.verify(
            ctx,
            attestation_header,
            audience=ctx.config.base_url,
            agent_id=str(record.data["agent_id"]),
            endpoint="get_agent",
            registered=True,
        )
    else:
        raise ATHError(
            "AUTH_REQUIRED",
            "authenticate with Basic client credentials or X-ATH-Agent-Attestation",
            headers=[("WWW-Authenticate", 'Basic realm="ath"')],
        )
    return HttpResponse.json(
        200, agents.public_view(record), headers=[("Cache-Control", "no-store")]
    )


def _claimed_sub(token: str) -> str | None:
    from ..tokens.jwt import TokenError, decode_unverified

    try:
        sub = decode_unverified(token, max_length=attestation.MAX_ATTESTATION).payload.get("sub")
    except TokenError:
        raise ATHError(
            "INVALID_ATTESTATION",
            "the agent attestation is not valid",
            {"reason": "not a compact JWS"},
        ) from None
    return sub if isinstance(sub, str) else None


# -- the admin review queue ------------------------------------------------------------------


def _enqueue(ctx: Context, client_id: str) -> Generator[Op, Any, None]:
    for _ in range(8):
        record: Record | None = yield StoreOp("get", (KIND_REVIEW, ctx.key(REVIEW_ID)))
        ids = list(record.data.get("ids", [])) if record else []
        if client_id in ids:
            return
        ids = [*ids, client_id][-MAX_REVIEW:]
        try:
            if record is None:
                yield StoreOp(
                    "create",
                    (KIND_REVIEW, ctx.key(REVIEW_ID), {"ids": ids}, ctx.config.approval_ttl),
                )
            else:
                yield StoreOp(
                    "compare_and_set",
                    (
                        KIND_REVIEW,
                        ctx.key(REVIEW_ID),
                        record.version,
                        {"ids": ids},
                        ctx.config.approval_ttl,
                    ),
                )
            return
        except (RecordExists, VersionConflict, RecordNotFound):
            continue


def _dequeue(ctx: Context, client_id: str) -> Generator[Op, Any, None]:
    for _ in range(8):
        record: Record | None = yield StoreOp("get", (KIND_REVIEW, ctx.key(REVIEW_ID)))
        if record is None:
            return
        ids = [i for i in record.data.get("ids", []) if i != client_id]
        try:
            yield StoreOp(
                "compare_and_set",
                (
                    KIND_REVIEW,
                    ctx.key(REVIEW_ID),
                    record.version,
                    {"ids": ids},
                    ctx.config.approval_ttl,
                ),
            )
            return
        except (VersionConflict, RecordNotFound):
            continue


def pending_agents(ctx: Context) -> Generator[Op, Any, list[Record]]:
    queue: Record | None = yield StoreOp("get", (KIND_REVIEW, ctx.key(REVIEW_ID)))
    out: list[Record] = []
    for client_id in list(queue.data.get("ids", [])) if queue else []:
        record = yield from agents.load(ctx, str(client_id))
        if record is not None and record.data.get("status") == "pending":
            out.append(record)
    return out


def decide_pending(
    ctx: Context, client_id: str, approve: bool, reviewer: str
) -> Generator[Op, Any, bool]:
    """A reviewer's decision on a pending agent: every requested, offered scope, or none."""
    for _ in range(8):
        record = yield from agents.load(ctx, client_id)
        if record is None or record.data.get("status") != "pending":
            return False
        data = dict(record.data)
        requested: Mapping[str, list[str]] = data.get("requested", {})
        providers = []
        for entry in data.get("providers", []):
            pid = entry["provider_id"]
            offered = list(requested.get(pid, []))
            unoffered = [s for s in entry.get("denied_scopes", []) if s not in offered]
            providers.append(
                {
                    "provider_id": pid,
                    "approved_scopes": offered if approve else [],
                    "denied_scopes": unoffered if approve else offered + unoffered,
                    "denial_reason": None
                    if approve and not unoffered
                    else ("denied by a reviewer" if not approve else entry.get("denial_reason")),
                }
            )
        data["providers"] = providers
        data["status"] = (
            "approved" if approve and any(p["approved_scopes"] for p in providers) else "denied"
        )
        data["reviewed_by"] = reviewer
        try:
            yield StoreOp(
                "compare_and_set", (KIND_AGENT, ctx.key(client_id), record.version, data, None)
            )
        except (VersionConflict, RecordNotFound):
            continue
        yield from _dequeue(ctx, client_id)
        event = "agent_registered" if data["status"] == "approved" else "agent_registration_denied"
        ctx.audit(
            event,
            agent_id=data["agent_id"],
            client_id=client_id,
            status=data["status"],
            reviewer=reviewer,
        )
        return True
    return False
