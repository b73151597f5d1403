"""AAuth for Django: ``@aauth_required``, ``settings.AAUTH`` and the guard's own URLs."""

from __future__ import annotations

from .checks import startup
from .conf import configure, get_guard, use_guard
from .decorators import AAuthPersonRequest, AAuthRequest, AAuthSessionRequest, aauth_required

__all__ = [
    "AAuthPersonRequest",
    "AAuthRequest",
    "AAuthSessionRequest",
    "aauth_required",
    "configure",
    "get_guard",
    "startup",
    "use_guard",
]
