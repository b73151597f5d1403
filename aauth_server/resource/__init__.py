"""The resource side: guard, configuration, identities, resource tokens, endpoints."""

from __future__ import annotations

from .config import ConfigurationError, ResourceConfig
from .guard import (
    AGENT_TOKEN,
    AUTH_TOKEN,
    DEFAULT_PROTECTION,
    PERSON_TOKEN,
    SESSION_TOKEN,
    SUPPORTED_MODES,
    WELL_KNOWN_PATH,
    Protection,
    Redispatch,
    ResourceGuard,
)
from .identity import AgentIdentity, Identity, PersonIdentity, SessionIdentity

__all__ = [
    "AGENT_TOKEN",
    "AUTH_TOKEN",
    "DEFAULT_PROTECTION",
    "PERSON_TOKEN",
    "SESSION_TOKEN",
    "SUPPORTED_MODES",
    "WELL_KNOWN_PATH",
    "AgentIdentity",
    "ConfigurationError",
    "Identity",
    "PersonIdentity",
    "Protection",
    "Redispatch",
    "ResourceConfig",
    "ResourceGuard",
    "SessionIdentity",
]
