"""AAuth resource protection for Flask (``pip install aauth-server[flask]``)."""

from __future__ import annotations

from aauth_server.resource import (
    AgentIdentity,
    ConfigurationError,
    PersonIdentity,
    ResourceConfig,
    SessionIdentity,
)

from .convert import (
    from_flask_response,
    raw_target,
    to_environ,
    to_flask_response,
    to_http_request,
)
from .extension import HELD_IDENTITY_KEY, AAuth, guard_for

__all__ = [
    "HELD_IDENTITY_KEY",
    "AAuth",
    "AgentIdentity",
    "ConfigurationError",
    "PersonIdentity",
    "ResourceConfig",
    "SessionIdentity",
    "from_flask_response",
    "guard_for",
    "raw_target",
    "to_environ",
    "to_flask_response",
    "to_http_request",
]
