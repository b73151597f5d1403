"""AAuth for Django: ``@aauth_required``, ``settings.AAUTH`` and the well-known metadata URL."""

from __future__ import annotations

from .conf import configure, get_guard
from .decorators import AAuthRequest, aauth_required

__all__ = ["AAuthRequest", "aauth_required", "configure", "get_guard"]
