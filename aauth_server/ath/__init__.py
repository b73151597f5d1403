"""ATH v0.1, the Agent Trust Handshake: native mode and gateway mode.

An agent discovers the service (``/.well-known/ath-app.json`` or ``/.well-known/ath.json``),
registers with a signed ES256 attestation (Phase A: the service approves it), asks the user
through an OAuth authorization-code flow with PKCE that the implementer runs itself (Phase
B), receives an opaque token scoped to approved ∩ consented ∩ requested, calls the API
(native) or the gateway proxy, and revokes the token when done.

Framework-neutral and sans-I/O like the rest of the core: :class:`ATHServer` answers neutral
requests through a sync or an async driver; the adapters mount it in Starlette, Flask and
Django.  See docs/ath.md for the decisions the protocol leaves open.
"""

from __future__ import annotations

from .config import ATH_VERSION, ATHConfig, ProviderConfig
from .errors import EXTENSION_CODES, PROTOCOL_CODES, STATUS, ATHError
from .policy import (
    ApprovalPolicy,
    Decision,
    ProviderDecision,
    RegistrationRequest,
    approve_all,
    approve_subset,
    deny_all,
    review,
)
from .proxy import AsyncProxied, Proxied, ProxyPlan
from .server import ATHServer
from .tokens import TokenInfo

__all__ = [
    "ATH_VERSION",
    "EXTENSION_CODES",
    "PROTOCOL_CODES",
    "STATUS",
    "ATHConfig",
    "ATHError",
    "ATHServer",
    "ApprovalPolicy",
    "AsyncProxied",
    "Decision",
    "ProviderConfig",
    "ProviderDecision",
    "Proxied",
    "ProxyPlan",
    "RegistrationRequest",
    "TokenInfo",
    "approve_all",
    "approve_subset",
    "deny_all",
    "review",
]
