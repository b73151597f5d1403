"""``agent_attestation``: the ES256 JWT an agent signs for register, authorize and token.

Checked strictly, in this order (cheap checks first, so junk never costs a fetch):

1. a compact JWS whose header says ``alg: ES256`` (``none``, ``HS256``, ``ES384``... are
   refused before any key is touched; ``crit`` and ``b64`` are refused; ``typ`` is not
   required, as one SDK sends none);
2. claims: ``sub`` is the agent (at authorize and token: the registered ``agent_id``, else
   ``AGENT_IDENTITY_MISMATCH``); ``iss`` is the ``agent_id`` or its domain (the host, with
   or without the port); ``aud`` names this endpoint's audience (the base URL for register
   and authorize, ``<base>/ath/token`` for token; a list may hold it); ``iat`` within the
   window (5 min) of now; ``exp`` present and in the future; ``nbf``, if present, passed;
   ``jti`` a string;
3. the signature, with the key of the identity document at ``agent_id`` (joserfc,
   ``algorithms=["ES256"]``); on a bad signature the document is re-fetched once (at most
   once a minute per agent) in case the key rotated;
4. ``jti`` unused: remembered in the shared store until the attestation can no longer
   pass the ``iat`` window (which ends before ``exp`` could matter), across workers.

Every failure is ``INVALID_ATTESTATION`` (401) with a ``reason`` in ``details``, and an
``attestation_failed`` audit event.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from joserfc import jws
from joserfc.errors import JoseError

from ..steps import StoreOp
from ..tokens.jwt import TokenError, decode_unverified
from .context import JTI_PREFIX, Context
from .driver import Op
from .errors import ATHError
from .identity import AgentDocument
from .wire import digest

MAX_ATTESTATION = 8192


@dataclass(frozen=True, slots=True)
class Attested:
    agent_id: str
    jti: str
    claims: Mapping[str, Any]
    document: AgentDocument | None


def _invalid(reason: str) -> ATHError:
    return ATHError("INVALID_ATTESTATION", "the agent attestation is not valid", {"reason": reason})


def issuer_ok(iss: object, agent_id: str) -> bool:
    """``iss`` is the full ``agent_id`` (what the SDKs send) or the agent's domain."""
    if not isinstance(iss, str):
        return False
    if iss == agent_id:
        return True
    parts = urlsplit(agent_id)
    return iss.lower() in {parts.netloc.lower(), (parts.hostname or "").lower()} and bool(iss)


def _audience_ok(aud: object, expected: str) -> bool:
    want = expected.rstrip("/")
    if isinstance(aud, str):
        return aud.rstrip("/") == want
    if isinstance(aud, list) and 0 < len(aud) <= 16:
        return any(isinstance(a, str) and a.rstrip("/") == want for a in aud)
    return False


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def verify(
    ctx: Context,
    token: object,
    *,
    audience: str,
    agent_id: str,
    endpoint: str,
    registered: bool,
) -> Generator[Op, Any, Attested]:
    """Verify ``token`` for ``endpoint``; ``registered`` says ``agent_id`` comes from a stored
    registration (a different ``sub`` is then an identity mismatch, not a bad token)."""
    try:
        return (yield from _verify(ctx, token, audience, agent_id, registered))
    except ATHError as error:
        ctx.audit(
            "attestation_failed",
            endpoint=endpoint,
            agent_id=agent_id,
            code=error.code,
            reason=error.details.get("reason", error.message),
        )
        raise


def _verify(
    ctx: Context, token: object, audience: str, agent_id: str, registered: bool
) -> Generator[Op, Any, Attested]:
    config = ctx.config
    if token is None:
        raise _invalid("agent_attestation is required")
    if not isinstance(token, str) or len(token) > MAX_ATTESTATION:
        raise _invalid("agent_attestation must be a compact JWS string")
    try:
        jwt = decode_unverified(token, max_length=MAX_ATTESTATION)
    except TokenError as exc:
        raise _invalid(f"not a compact JWS: {exc.detail}") from exc
    alg = jwt.header.get("alg")
    if alg != "ES256":
        raise _invalid(f"alg must be ES256, not {alg!r}")
    claims = jwt.payload
    sub = claims.get("sub")
    if not isinstance(sub, str):
        raise _invalid("sub is required")
    if sub != agent_id:
        if registered:
            raise ATHError(
                "AGENT_IDENTITY_MISMATCH",
                "the attestation's sub is not the registered agent_id",
            )
        raise _invalid("sub must equal agent_id")
    if not issuer_ok(claims.get("iss"), agent_id):
        raise _invalid("iss must be the agent_id or its domain")
    if not _audience_ok(claims.get("aud"), audience):
        raise _invalid(f"aud must be {audience}")
    now = ctx.now()
    iat = _number(claims.get("iat"))
    exp = _number(claims.get("exp"))
    if iat is None:
        raise _invalid("iat is required")
    if abs(now - iat) > config.iat_window:
        raise _invalid("iat is outside the accepted window")
    if exp is None:
        raise _invalid("exp is required")
    if exp <= now:
        raise _invalid("the attestation has expired")
    if "nbf" in claims:
        nbf = _number(claims.get("nbf"))
        if nbf is None or nbf > now + 60:
            raise _invalid("nbf is not yet reached")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 256:
        raise _invalid("jti is required")
    document: AgentDocument | None = None
    if not config.insecure_skip_attestation_signature:
        document = yield from _check_signature(ctx, token, agent_id, now)
    # Until the iat window closes the attestation could pass again; after it, never.
    ttl = max(1.0, min(exp, iat + config.iat_window) - now + 1)
    first = yield StoreOp("remember_once", (f"{JTI_PREFIX}:{ctx.ns}:{digest(agent_id, jti)}", ttl))
    if not first:
        raise _invalid("jti was already used (replayed attestation)")
    return Attested(agent_id, jti, dict(claims), document)


def _signature_ok(token: str, document: AgentDocument) -> bool:
    try:
        jws.deserialize_compact(token, document.key.joserfc_key, algorithms=["ES256"])  # type: ignore[arg-type]
    except (JoseError, ValueError):
        return False
    return True


def _check_signature(
    ctx: Context, token: str, agent_id: str, now: float
) -> Generator[Op, Any, AgentDocument]:
    identities = ctx.identities
    was_cached = identities.cached(agent_id)
    document = yield from identities.load(agent_id, now)
    if _signature_ok(token, document):
        return document
    if was_cached and identities.may_refetch(agent_id, now):
        document = yield from identities.load(agent_id, now, force=True)
        if _signature_ok(token, document):
            return document
    raise _invalid("the signature does not verify with the agent's public key")
