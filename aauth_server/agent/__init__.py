"""Agent side: a minimal agent provider and an httpx signer, for tests, examples and users."""

from __future__ import annotations

from .client import AAuthSigner, Agent
from .provider import ENROLL_PATH, JWKS_PATH, METADATA_PATH, SUBAGENT_PATH, AgentProvider

__all__ = [
    "ENROLL_PATH",
    "JWKS_PATH",
    "METADATA_PATH",
    "SUBAGENT_PATH",
    "AAuthSigner",
    "Agent",
    "AgentProvider",
]
