"""What every ATH step module is handed: the configuration, the clock, the audit sink, the
identity-document cache, and the store kinds namespaced under this service.  The assembler
(:mod:`.server`) builds one; the step modules receive it and never import the assembler."""

from __future__ import annotations

from dataclasses import dataclass

from ..clock import Clock
from .audit import Audit
from .config import ATHConfig
from .identity import IdentityCache

KIND_AGENT = "ath-agent"
KIND_AGENT_ID = "ath-agent-id"
KIND_SESSION = "ath-session"
KIND_STATE = "ath-oauth-state"
KIND_CODE = "ath-code"
KIND_TOKEN = "ath-token"  # noqa: S105 - a record kind, not a secret
KIND_REVIEW = "ath-review"
JTI_PREFIX = "ath-jti"


@dataclass
class Context:
    config: ATHConfig
    clock: Clock
    audit: Audit
    identities: IdentityCache

    def __post_init__(self) -> None:
        #: Store ids are prefixed with this (computed once: every request uses it).
        self.ns = self.config.key_namespace

    def key(self, id: str) -> str:
        """A store id inside this service's namespace."""
        return f"{self.ns}.{id}"

    def now(self) -> float:
        return self.clock.now()
