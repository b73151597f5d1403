"""Configuration of a Person Server, shared by the adapters."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..clock import SYSTEM_CLOCK, Clock
from ..http import DEFAULT_MAX_BODY
from ..identifiers import is_server_identifier
from ..keys.discovery import KeyDiscovery
from ..keys.fetcher import AsyncFetcher, Fetcher
from ..keys.jwk import SUPPORTED_ALGS, PrivateKey
from ..resource.config import ConfigurationError, check_server_settings
from ..server_shell import ServerSettings
from ..storage.base import AsyncPendingStore, PendingStore
from .policy import DefaultPolicy, Policy

if TYPE_CHECKING:
    from ..records import RecordStore

log = logging.getLogger("aauth_server.person")
WELL_KNOWN_PATH = "/.well-known/aauth-person.json"

_PATHS = (
    "person_token_path",
    "auth_token_path",
    "interaction_path",
    "consent_path",
    "revocation_path",
    "jwks_path",
    "mission_path",
    "permission_path",
    "audit_path",
)
MEMORY_RECORDS = "sqlite://"
OUTSIDE_SCOPE = ("deny", "ask")
UPDATES = ("person", "accept")


@dataclass
class PersonServerConfig(ServerSettings):
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
    #: Durable records (missions, their logs, bindings, issued tokens, revocations):
    #: ``sqlite:///path``, ``postgresql+psycopg://...``, or a ``RecordStore``.  None keeps
    #: them in this process's memory (lost on restart; refused beside a shared ``store``).
    records: str | RecordStore | None = None
    #: Migrate the records' schema at startup (else it must be current: ``python -m
    #: aauth_server db upgrade URL``).  Records in memory are always migrated.
    records_migrate: bool = False
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
    #: The mission endpoint (``{mission_path}/{s256}`` for update and completion), the
    #: permission and the audit endpoints (digest 8.1, 8.7, 8.8).
    mission_path: str = "/mission"
    permission_path: str = "/permission"
    audit_path: str = "/audit"
    #: Within a mission with ``approved_resources``, a request for another resource is
    #: ``deny``-ed ("outside mission scope") or put to the person (``ask``).
    mission_outside_scope: str = "deny"
    #: Person tokens for a mission's ``approved_resources`` are issued without asking.
    mission_grants_person_tokens: bool = True
    #: A mission update is decided by the ``person`` or ``accept``-ed by the PS itself.
    mission_updates: str = "person"
    #: Accepted updates one mission may hold (each read of the mission, every token request
    #: naming it included, reads them all); one more -> ``409 mission_update_limit``: a
    #: bigger change is a new mission (digest 8.5).
    max_mission_updates: int = 50
    #: Outbound revocations (suspend/revoke): retries until the token's ``exp``, at most.
    revocation_attempts: int = 8
    #: Seconds the revocation endpoint holds a cascade before it answers ``202`` (None: about
    #: one round trip per downstream server, at most 20 s; ``Prefer: wait`` overrides).
    revocation_hold: float | None = None
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
    revocations_per_minute: int = 600
    scopes_supported: tuple[str, ...] = ()
    claims_supported: tuple[str, ...] = ()
    name: str | None = None
    description: str | None = None
    #: Bytes of a request body the adapters read at most; a larger body answers ``413``.
    max_body: int = DEFAULT_MAX_BODY
    #: Four-party (digest 5.4, :mod:`.federation`): Access Servers this PS federates to.  A
    #: resource token whose ``aud`` is one of them goes on to that AS; any other ``aud`` but
    #: this PS stays ``400 invalid_resource_token``.
    trusted_access_servers: Sequence[str] = ()
    #: Or decide per AS issuer: ``(issuer) -> bool`` (in addition to the list).
    trust_access_server: Callable[[str], bool] | None = None
    #: The PS's records of the person an AS may ask for (``requirement=claims``):
    #: ``(ClaimsRequest) -> {name: value}``; a name it leaves out ends the request (``403
    #: denied``); ``sub`` is never sent.
    access_claims: Callable[[Any], Mapping[str, Any] | None] | None = None
    #: Answers an AS clarification for the PS: ``(AccessQuestion) -> str | None``; None
    #: passes the question on to the agent (when it declared ``clarification``).
    access_clarification: Callable[[Any], str | None] | None = None
    #: Seconds one exchange with an AS may take (connect, headers, body); slower answers
    #: ``502 as_unreachable``.
    access_timeout: float = 10.0
    #: PS-AS collapse: an in-process Access Server (same deployment, typically the same
    #: issuer) the PS calls without the network hop; list its issuer as trusted.
    local_access_server: Any = None

    def __post_init__(self) -> None:
        check_server_settings(self)
        if not isinstance(self.subject_secret, bytes) or len(self.subject_secret) < 32:
            raise ConfigurationError("subject_secret must be at least 32 random bytes")
        if not self.signing_key.kid:
            raise ConfigurationError("the signing key needs a kid")
        self.check_paths(_PATHS, ("pending_prefix", "relay_prefix"))
        for name in ("person_token_lifetime", "auth_token_lifetime"):
            if not 0 < getattr(self, name) <= 3600:
                raise ConfigurationError(f"{name} must be 1..3600 seconds (digest 3.7)")
        for name in (
            "pending_lifetime",
            "poll_interval",
            "code_attempts",
            "binding_lifetime",
            "max_text",
            "max_hint",
            "max_capabilities",
            "max_pending_per_agent",
            "revocation_attempts",
        ):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{name} must be positive")
        if self.max_wait < 0 or self.clarification_rounds < 0:
            raise ConfigurationError("max_wait and clarification_rounds must not be negative")
        if self.mission_outside_scope not in OUTSIDE_SCOPE:
            raise ConfigurationError("mission_outside_scope must be 'deny' or 'ask'")
        if self.mission_updates not in UPDATES:
            raise ConfigurationError("mission_updates must be 'person' or 'accept'")
        cap = self.max_mission_updates
        if not isinstance(cap, int) or isinstance(cap, bool) or cap <= 0:
            raise ConfigurationError("max_mission_updates must be a positive integer")
        self.check_records("missions, bindings and revocations")
        if isinstance(self.trusted_access_servers, str):
            raise ConfigurationError("trusted_access_servers must be a list of issuers")
        self.trusted_access_servers = tuple(self.trusted_access_servers)
        for issuer in self.trusted_access_servers:
            if not is_server_identifier(issuer, dev_loopback=self.dev_loopback):
                raise ConfigurationError(
                    f"trusted access server {issuer!r} is not a server identifier"
                )
        if not 0 < self.access_timeout <= 120:
            raise ConfigurationError("access_timeout must be 0..120 seconds")

    def record_store(self) -> RecordStore:
        """Open the records (``ConfigurationError`` for a URL or schema we cannot use)."""
        from ..records import RecordStore

        if isinstance(self.records, RecordStore):
            store = self.records
        elif self.records is None:
            log.warning(
                "aauth_server: the Person Server keeps its records in memory: missions, "
                "bindings and revocations are lost on restart (set records=sqlite:///path)"
            )
            store = RecordStore(MEMORY_RECORDS, migrate=True)
        else:
            store = RecordStore(self.records, migrate=self.records_migrate)
            if store.memory and not self.records_migrate:
                from ..records.migrate import upgrade

                upgrade(store)
        store.check()
        return store

    def stores(self) -> tuple[PendingStore, AsyncPendingStore]:
        return self.open_stores("ps")
