"""Configuration of a Person Server, shared by the adapters."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..clock import SYSTEM_CLOCK, Clock
from ..http import DEFAULT_MAX_BODY
from ..keys.discovery import KeyDiscovery
from ..keys.fetcher import AsyncFetcher, Fetcher
from ..keys.jwk import SUPPORTED_ALGS, PrivateKey
from ..resource.config import ConfigurationError, check_server_settings
from ..storage.base import AsyncPendingStore, PendingStore, issuer_prefix
from ..storage.uri import open_store_pair
from .policy import DefaultPolicy, Policy

WELL_KNOWN_PATH = "/.well-known/aauth-person.json"

_PATHS = (
    "person_token_path",
    "auth_token_path",
    "interaction_path",
    "consent_path",
    "revocation_path",
    "jwks_path",
)


@dataclass
class PersonServerConfig:
    """Everything a Person Server needs.  ``issuer`` is ``https://host`` (``dev_loopback``
    admits ``http://127.0.0.1:PORT`` for development only).

    ``subject_secret`` keys the directed ``sub``: changing it changes every person's
    identifier at every resource, so keep it as stable as the signing key.
    """

    issuer: str
    signing_key: PrivateKey
    subject_secret: bytes
    dev_loopback: bool = False
    #: The public origin requests arrive at; wins over Host, and prefixes every URL we publish.
    public_origin: str | None = None
    signature_window: int = 60
    accept_algs: tuple[str, ...] = SUPPORTED_ALGS
    allow_eddsa: bool = False
    #: Admit key discovery through a metadata ``jwks_uri`` on another origin than the
    #: issuer's (digest 2.8 asks for explicit admission); off by default.
    allow_cross_origin_jwks: bool = False
    discovery: KeyDiscovery | None = None
    fetcher: Fetcher | None = None
    async_fetcher: AsyncFetcher | None = None
    clock: Clock = SYSTEM_CLOCK
    #: A URI (``memory://``, ``redis://...``) or a sync store with its twin in ``async_store``.
    store: str | PendingStore | None = None
    async_store: AsyncPendingStore | None = None
    #: Key prefix of a store opened from a URI; default ``aauth:ps:<issuer host[:port]>``,
    #: so Person Servers sharing one Redis database never share bindings or requests.
    store_prefix: str | None = None
    policy: Policy = field(default_factory=DefaultPolicy)
    person_token_path: str = "/person"  # noqa: S105 - a path, not a secret
    auth_token_path: str = "/token"  # noqa: S105
    pending_prefix: str = "/pending/"
    #: The interaction relay's own pending URLs (``{relay_prefix}{id}``).
    relay_prefix: str = "/relay/"
    interaction_path: str = "/interaction"
    consent_path: str = "/consent"
    revocation_path: str = "/revoke"
    jwks_path: str = "/jwks.json"
    #: Seconds a pending request (and its interaction code) lives.
    pending_lifetime: int = 600
    #: Cap on ``Prefer: wait`` (seconds).
    max_wait: int = 30
    #: ``Retry-After`` on every ``202``; a plain poll sooner than that answers ``slow_down``.
    poll_interval: int = 5
    clarification_rounds: int = 5
    #: Wrong interaction codes before a pending request (or a person, per minute) is locked.
    code_attempts: int = 5
    #: The interaction ``url`` names the request (``{consent_path}/request/{id}``), so the
    #: consent page can lock that request after ``code_attempts`` wrong codes; False gives
    #: the bare ``consent_path`` (for a page of your own that routes only that path).
    consent_url_names_request: bool = True
    #: Longest agent-supplied free text (characters): ``justification`` and clarification
    #: answers.  Longer -> ``400 invalid_request``.
    max_text: int = 4096
    #: Longest agent-supplied short string (characters): ``login_hint``, ``tenant``,
    #: ``domain_hint``; ``device`` is 64 printable characters.
    max_hint: int = 256
    #: Most ``capabilities`` one request may list (each at most 64 characters).
    max_capabilities: int = 16
    #: Open pending requests one agent may hold; one more -> ``429 slow_down``.
    max_pending_per_agent: int = 20
    person_token_lifetime: int = 3600
    auth_token_lifetime: int = 3600
    #: How long an agent-person binding is remembered after it was made.
    binding_lifetime: int = 365 * 86400
    #: Seconds a mission record is kept after its approval or termination, and its log after
    #: the last entry (the store's TTL; a mission with ``expires_at`` still ends then).
    mission_retention: int = 400 * 86400
    revocations_per_minute: int = 600
    scopes_supported: tuple[str, ...] = ()
    claims_supported: tuple[str, ...] = ()
    name: str | None = None
    description: str | None = None
    #: Bytes of a request body the adapters read at most; a larger body answers ``413``.
    max_body: int = DEFAULT_MAX_BODY

    def __post_init__(self) -> None:
        check_server_settings(self)
        if not isinstance(self.subject_secret, bytes) or len(self.subject_secret) < 32:
            raise ConfigurationError("subject_secret must be at least 32 random bytes")
        if not self.signing_key.kid:
            raise ConfigurationError("the signing key needs a kid")
        for name in _PATHS:
            path = getattr(self, name)
            if not path.startswith("/") or "?" in path or "#" in path:
                raise ConfigurationError(f"{name} must be an absolute path without query")
        for prefix in ("pending_prefix", "relay_prefix"):
            value = getattr(self, prefix)
            if not (value.startswith("/") and value.endswith("/")):
                raise ConfigurationError(f"{prefix} must start and end with '/'")
        for name in ("person_token_lifetime", "auth_token_lifetime"):
            if not 0 < getattr(self, name) <= 3600:
                raise ConfigurationError(f"{name} must be 1..3600 seconds (digest 3.7)")
        for name in (
            "pending_lifetime",
            "poll_interval",
            "code_attempts",
            "binding_lifetime",
            "mission_retention",
            "max_text",
            "max_hint",
            "max_capabilities",
            "max_pending_per_agent",
        ):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{name} must be positive")
        if self.max_wait < 0 or self.clarification_rounds < 0:
            raise ConfigurationError("max_wait and clarification_rounds must not be negative")

    def stores(self) -> tuple[PendingStore, AsyncPendingStore]:
        try:
            prefix = self.store_prefix or issuer_prefix(self.issuer, "ps")
            return open_store_pair(self.store, self.async_store, clock=self.clock, prefix=prefix)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc

    def url_for(self, path: str) -> str:
        """An absolute URL on the public origin (metadata, ``Location``, the consent page)."""
        return (self.public_origin or self.issuer).rstrip("/") + path
