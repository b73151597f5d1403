"""AAuth for Starlette: ``AAuth(issuer=...)``, ``@aauth.protect()``, ``aauth.routes()``."""

from __future__ import annotations

from .convert import raw_target, to_http_request, to_response
from .extension import ENV_SETTINGS, AAuth, identity

__all__ = ["ENV_SETTINGS", "AAuth", "identity", "raw_target", "to_http_request", "to_response"]
