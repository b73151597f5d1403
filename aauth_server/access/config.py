"""Configuration of an Access Server (digest 1.5, 5.4), shared by the adapters."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..clock import SYSTEM_CLOCK, Clock
from ..http import DEFAULT_MAX_BODY
from ..keys.discovery import KeyDiscovery
from ..keys.fetcher import AsyncFetcher, Fetcher
from ..keys.jwk import SUPPORTED_ALGS, PrivateKey
from ..pagekit import MIN_SECRET, Authenticate
from ..resource.config import ConfigurationError, check_server_settings, identifier_error
from ..server_shell import ServerSettings
from ..storage.base import AsyncPendingStore, PendingStore
from .policy import Policy, issue_requested

if TYPE_CHECKING:
    from ..records import RecordStore

log = logging.getLogger("aauth_server.access")
WELL_KNOWN_PATH = "/.well-known/aauth-access.json"
MEMORY_RECORDS = "sqlite://"
_PATHS = ("token_path", "revocation_path", "jwks_path", "interact_path")


@dataclass
class AccessServerConfig(ServerSettings):
    """Everything an Access Server needs.  ``issuer`` is ``https://host`` (``dev_loopback``
    admits ``http://127.0.0.1:PORT`` for development only).

    Only Person Servers call an AS: ``trusted_ps`` lists those it takes requests from, or
    ``trust_any_ps=True`` takes any (the policy still decides every request).
    """

    issuer: str
    signing_key: PrivateKey
    trusted_ps: tuple[str, ...] = ()
    trust_any_ps: bool = False
    policy: Policy = field(default=issue_requested)
    dev_loopback: bool = False
    #: The public origin requests arrive at; wins over Host, and prefixes every URL we publish.
    public_origin: str | None = None
    signature_window: int = 60
    accept_algs: tuple[str, ...] = SUPPORTED_ALGS
    allow_eddsa: bool = False
    allow_cross_origin_jwks: bool = False
    discovery: KeyDiscovery | None = None
    fetcher: Fetcher | None = None
    async_fetcher: AsyncFetcher | None = None
    clock: Clock = SYSTEM_CLOCK
    #: A URI (``memory://``, ``redis://...``) or a sync store with its twin in ``async_store``.
    store: str | PendingStore | None = None
    async_store: AsyncPendingStore | None = None
    #: Default ``aauth:as:<issuer host[:port]>``.
    store_prefix: str | None = None
    #: Durable records (issued auth tokens, revocations): ``sqlite:///path``,
    #: ``postgresql+psycopg://...`` or a ``RecordStore``; None keeps them in memory.
    records: str | RecordStore | None = None
    records_migrate: bool = False
    token_path: str = "/token"  # noqa: S105 - a path, not a secret
    pending_prefix: str = "/pending/"
    revocation_path: str = "/revoke"
    jwks_path: str = "/jwks.json"
    #: The page a person completes for ``requirement=interaction`` (binding the PS here).
    interact_path: str = "/interact"
    #: Serve the interaction page; False: a ``RequireInteraction`` verdict answers
    #: ``403 user_unreachable`` (no person can be reached here).
    interaction_page: bool = True
    #: Who is signed in at the interaction page (the application's login); None admits
    #: anyone, which only a ``dev_loopback`` deployment may do.
    authenticate: Authenticate | None = None
    #: Keys the interaction page's CSRF tokens (>= 32 bytes); random per process if None,
    #: so several workers need the same value.
    page_secret: bytes | None = None
    auth_token_lifetime: int = 3600
    pending_lifetime: int = 600
    poll_interval: int = 1
    max_wait: int = 30
    #: Most claims and clarification rounds one request may take (digest 7: 5).
    clarification_rounds: int = 5
    #: Wrong interaction codes one person may enter per minute (digest 6.2 rate limit).
    code_attempts: int = 5
    max_text: int = 4096
    #: Most claims one answer may carry.
    max_claims: int = 32
    #: Revocations one caller may send per minute, counted across workers (digest 5.7).
    revocations_per_minute: int = 600
    name: str | None = None
    max_body: int = DEFAULT_MAX_BODY

    def __post_init__(self) -> None:
        check_server_settings(self)
        if not self.signing_key.kid:
            raise ConfigurationError("the signing key needs a kid (the jwks_uri scheme names it)")
        if isinstance(self.trusted_ps, str):
            raise ConfigurationError("trusted_ps is a list of Person Server issuers, not one")
        self.trusted_ps = tuple(self.trusted_ps)
        for ps in self.trusted_ps:
            error = identifier_error("trusted_ps entry", ps, self.dev_loopback)
            if error is not None:
                raise error
        if self.trust_any_ps and self.trusted_ps:
            raise ConfigurationError("set trusted_ps or trust_any_ps=True, not both")
        if not self.trust_any_ps and not self.trusted_ps:
            raise ConfigurationError(
                "an Access Server takes requests only from Person Servers: list them in "
                "trusted_ps, or set trust_any_ps=True"
            )
        if not callable(self.policy):
            raise ConfigurationError("policy must be a callable(AccessRequest) -> verdict")
        self.check_paths(_PATHS, ("pending_prefix",))
        if not 0 < self.auth_token_lifetime <= 3600:
            raise ConfigurationError("auth_token_lifetime must be 1..3600 seconds (digest 3.7)")
        for name in (
            "pending_lifetime",
            "poll_interval",
            "code_attempts",
            "max_text",
            "revocations_per_minute",
        ):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{name} must be positive")
        if self.max_wait < 0 or self.clarification_rounds < 0 or self.max_claims <= 0:
            raise ConfigurationError(
                "max_wait and clarification_rounds must not be negative, max_claims positive"
            )
        if self.page_secret is not None and len(self.page_secret) < MIN_SECRET:
            raise ConfigurationError(f"page_secret must be at least {MIN_SECRET} bytes")
        if self.interaction_page and self.authenticate is None and not self.dev_loopback:
            log.warning(
                "aauth_server: the Access Server's interaction page has no authenticate "
                "hook: requirement=interaction answers no one until one is configured"
            )
        self.check_records("issued tokens and revocations")

    def trusts(self, ps: str) -> bool:
        return self.trust_any_ps or ps in self.trusted_ps

    def record_store(self) -> RecordStore:
        from ..records.open import open_records

        return open_records(self.records, migrate=self.records_migrate, who="the Access Server")

    def stores(self) -> tuple[PendingStore, AsyncPendingStore]:
        return self.open_stores("as")
