"""AAuth resource protection for Flask (``pip install aauth-server[flask]``)."""

from __future__ import annotations

from aauth_server.resource import AgentIdentity, ConfigurationError, ResourceConfig

from .convert import raw_target, to_flask_response, to_http_request
from .extension import AAuth, guard_for

__all__ = [
    "AAuth",
    "AgentIdentity",
    "ConfigurationError",
    "ResourceConfig",
    "guard_for",
    "raw_target",
    "to_flask_response",
    "to_http_request",
]
