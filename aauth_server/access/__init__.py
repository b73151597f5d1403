"""Access Server: the resource's policy engine, issuing auth tokens to Person Servers
(four-party, digest 1.5, 5.4)."""

from __future__ import annotations

from .config import WELL_KNOWN_PATH, AccessServerConfig
from .policy import (
    AccessRequest,
    Deny,
    Issue,
    Policy,
    RequireApproval,
    RequireClaims,
    RequireClarification,
    RequireInteraction,
    Verdict,
    issue_requested,
)
from .server import AccessServer

__all__ = [
    "WELL_KNOWN_PATH",
    "AccessRequest",
    "AccessServer",
    "AccessServerConfig",
    "Deny",
    "Issue",
    "Policy",
    "RequireApproval",
    "RequireClaims",
    "RequireClarification",
    "RequireInteraction",
    "Verdict",
    "issue_requested",
]
