"""The resource side: guard, configuration, metadata."""

from __future__ import annotations

from .config import ConfigurationError, ResourceConfig
from .guard import (
    AGENT_TOKEN,
    DEFAULT_PROTECTION,
    SUPPORTED_MODES,
    WELL_KNOWN_PATH,
    AgentIdentity,
    Protection,
    ResourceGuard,
)

__all__ = [
    "AGENT_TOKEN",
    "DEFAULT_PROTECTION",
    "SUPPORTED_MODES",
    "WELL_KNOWN_PATH",
    "AgentIdentity",
    "ConfigurationError",
    "Protection",
    "ResourceConfig",
    "ResourceGuard",
]
