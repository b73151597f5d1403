"""Configuration of a protected resource, shared by the three adapters."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..clock import SYSTEM_CLOCK, Clock
from ..errors import ConfigurationError as ConfigurationError  # re-exported: its public home
from ..identifiers import SERVER_IDENTIFIER_RULE, server_identifier_problem
from ..keys.discovery import KeyDiscovery
from ..keys.fetcher import AsyncFetcher, Fetcher
from ..keys.jwk import SUPPORTED_ALGS, PrivateKey
from ..storage.base import AsyncPendingStore, PendingStore, StorageError
from ..storage.uri import open_store_pair

ACCESS_MODES = ("agent-token", "person-token", "auth-token", "session-token")


class _ServerSettings(Protocol):
    issuer: str
    dev_loopback: bool
    public_origin: str | None
    signature_window: int
    accept_algs: tuple[str, ...]


class _DiscoverySettings(_ServerSettings, Protocol):
    discovery: KeyDiscovery | None
    fetcher: Fetcher | None
    async_fetcher: AsyncFetcher | None
    clock: Clock
    allow_eddsa: bool


def discovery_for(cfg: _DiscoverySettings) -> KeyDiscovery:
    """The configured key discovery, or one that builds its egress-checked httpx fetchers."""
    return cfg.discovery or KeyDiscovery(
        cfg.fetcher,
        cfg.async_fetcher,
        clock=cfg.clock,
        accept_algs=cfg.accept_algs,
        allow_eddsa=cfg.allow_eddsa,
        dev_loopback=cfg.dev_loopback,
    )


def identifier_error(setting: str, value: object, dev_loopback: bool) -> ConfigurationError | None:
    """A ConfigurationError naming the digest 1.2 rule ``value`` breaks, or None."""
    problem = server_identifier_problem(value, dev_loopback=dev_loopback)
    if problem is None:
        return None
    return ConfigurationError(
        f"{setting} {value!r} is not a server identifier: {problem} ({SERVER_IDENTIFIER_RULE})"
    )


def check_server_settings(cfg: _ServerSettings) -> None:
    """The checks every AAuth server's configuration shares (resource, Person Server)."""
    error = identifier_error("issuer", cfg.issuer, cfg.dev_loopback)
    if error is not None:
        raise error
    store = getattr(cfg, "store", None)
    if isinstance(store, str):
        check_store_uri(store)
    if cfg.public_origin is not None:
        parts = urlsplit(cfg.public_origin)
        if parts.scheme not in ("https", "http") or not parts.netloc or parts.path not in ("", "/"):
            raise ConfigurationError("public_origin must be scheme://host[:port]")
    if not 0 < cfg.signature_window <= 600:
        raise ConfigurationError("signature_window must be 1..600 seconds")
    if not cfg.accept_algs or any(a not in SUPPORTED_ALGS for a in cfg.accept_algs):
        raise ConfigurationError(f"accept_algs must be a non-empty subset of {SUPPORTED_ALGS}")


_NO_SIGNING_KEY = (
    "{what} needs the resource's signing_key (a PrivateKey with a kid): it signs the resource "
    "tokens of the auth-token challenge"
)
#: Storage URI schemes (aauth_server.storage.uri) and the extra each needs.
STORE_SCHEMES = {"memory": None, "redis": "redis", "rediss": "redis", "redis+unix": "redis"}


def check_store_uri(uri: str) -> None:
    """A store URI names a known backend whose package is installed (else ConfigurationError)."""
    scheme = urlsplit(uri).scheme.lower() if "://" in uri else ""
    if scheme not in STORE_SCHEMES:
        known = ", ".join(f"{name}://" for name in STORE_SCHEMES)
        raise ConfigurationError(
            f"store {redact(uri)!r} is not a storage URI: the scheme must be one of {known} "
            "(memory:// for one process, redis://host:6379/0 for several)"
        )
    extra = STORE_SCHEMES[scheme]
    if extra is not None and importlib.util.find_spec(extra) is None:
        raise ConfigurationError(
            f"store {redact(uri)!r} needs the {extra!r} package: "
            f"pip install 'aauth-server[{extra}]'"
        )


def redact(uri: str) -> str:
    """``uri`` with any password replaced, for messages and logs."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def describe_store(store: object) -> str:
    return redact(store) if isinstance(store, str) else type(store).__name__


def check_store_reachable(store: PendingStore, setting: object) -> None:
    """Ask the store to answer now: a store that does not is a startup error, not a 503
    on the first request (``startup_store_check=False`` turns this off)."""
    try:
        store.check()
    except StorageError as exc:
        raise ConfigurationError(
            f"the AAuth store {describe_store(setting)} did not answer at startup ({exc}): start "
            "it or fix the store setting (startup_store_check=False defers the check to the "
            "first request, which then answers 503 while it is down)"
        ) from exc


class _ProtectionLike(Protocol):
    @property
    def mode(self) -> str: ...
    @property
    def scopes(self) -> frozenset[str]: ...


def protection_label(protection: _ProtectionLike, target: object, call: str = "protect") -> str:
    """``protect('auth-token', scope='data.read') on app.views.report``, for messages."""
    args = [repr(protection.mode)]
    if protection.scopes:
        args.append(f"scope={' '.join(sorted(protection.scopes))!r}")
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None)
    module = getattr(target, "__module__", None)
    where = f"{module}.{name}" if module and name else repr(target)
    return f"{call}({', '.join(args)}) on {where}"


def protection_error(
    config: ResourceConfig, protection: _ProtectionLike, where: str
) -> ConfigurationError | None:
    """What makes ``protection`` (one endpoint's) impossible under ``config``, naming the rule."""
    if protection.mode != "auth-token":
        return None
    if config.signing_key is None:
        return ConfigurationError(_NO_SIGNING_KEY.format(what=f"{where} (auth-token mode)"))
    undeclared = sorted(protection.scopes - set(config.scope_descriptions))
    if undeclared:
        declared = ", ".join(sorted(config.scope_descriptions)) or "none"
        return ConfigurationError(
            f"{where}: scope {' '.join(undeclared)!r} is not declared in scope_descriptions "
            f"(declared: {declared}); only declared scopes go into resource tokens"
        )
    return None


@dataclass
class ResourceConfig:
    """Everything a resource guard needs.  Adapters build it from their own settings.

    ``issuer`` is the resource identifier (``https://host``).  ``dev_loopback`` is the
    development setting that admits ``http://127.0.0.1:PORT`` / ``http://localhost:PORT``
    identifiers and key fetches, and nothing else; never turn it on in production.
    """

    issuer: str
    dev_loopback: bool = False
    #: The public origin requests arrive at (``https://api.example``); wins over Host.
    public_origin: str | None = None
    signature_window: int = 60
    accept_algs: tuple[str, ...] = SUPPORTED_ALGS
    #: Compatibility: admit the polymorphic ``EdDSA`` from older agents (off by default).
    allow_eddsa: bool = False
    #: Accept unpadded base64url ``Signature`` values (an interop quirk of some stacks).
    accept_base64url: bool = True
    additional_signature_components: tuple[str, ...] = ()
    jwks_uri: str | None = None
    name: str | None = None
    description: str | None = None
    documentation_uri: str | None = None
    discovery: KeyDiscovery | None = None
    fetcher: Fetcher | None = None
    async_fetcher: AsyncFetcher | None = None
    clock: Clock = SYSTEM_CLOCK
    metadata_extra: Mapping[str, Any] = field(default_factory=dict)

    # -- person-token, auth-token and session-token modes (digest section 9) --------------
    #: What ``access_mode`` the metadata advertises (advisory; the runtime challenge wins).
    access_mode: str = "agent-token"
    #: The resource's own key, which signs resource tokens; published at ``jwks_path``.
    signing_key: PrivateKey | None = None
    jwks_path: str = "/aauth/jwks.json"
    #: Person Servers whose person and auth tokens are accepted; empty accepts any PS
    #: (persons are ``(ps, sub)``, so one PS can never speak for another's users).
    trusted_ps: tuple[str, ...] = ()
    #: Four-party: the resource's Access Server.  Resource tokens are then addressed to it
    #: and only its auth tokens (``dwk`` ``aauth-access.json``) are accepted.
    access_server: str | None = None
    #: Declared scopes (scope -> Markdown); only these appear in resource tokens.
    scope_descriptions: Mapping[str, str] = field(default_factory=dict)
    resource_token_lifetime: int = 300
    #: Paths of the endpoints the guard serves itself; None turns one off.
    authorization_path: str | None = None
    revocation_path: str | None = None
    pending_prefix: str = "/aauth/pending/"
    #: Session-token mode: the resource's own interaction page, and session lifetime.
    interaction_path: str = "/aauth/interact"
    session_lifetime: int = 86400
    pending_lifetime: int = 600
    #: Revocations one caller may record per minute before ``rate_limited`` (digest 5.7).
    revocations_per_minute: int = 600
    #: Reject a second request with the same (key, created, method, authority, path).
    replay_cache: bool = False
    #: Add ``Link: <.../aauth-resource.json>; rel="aauth-resource"`` to challenges.
    link_header: bool = True
    #: Shared state: a URI (``memory://``, ``redis://...``) or a sync store; with a sync
    #: store object also pass ``async_store``.  Default: memory (one process only).
    store: str | PendingStore | None = None
    async_store: AsyncPendingStore | None = None
    #: Ask the store to answer when the adapter starts (Starlette ``AAuth(...)``, Flask
    #: ``init_app``, Django ``startup()`` and system checks): unreachable is a startup error.
    startup_store_check: bool = True

    def __post_init__(self) -> None:
        check_server_settings(self)
        if self.access_mode not in ACCESS_MODES:
            raise ConfigurationError(f"access_mode must be one of {ACCESS_MODES}")
        servers = [("trusted_ps entry", ps) for ps in self.trusted_ps]
        if self.access_server:
            servers.append(("access_server", self.access_server))
        for setting, server in servers:
            error = identifier_error(setting, server, self.dev_loopback)
            if error is not None:
                raise error
        if self.signing_key is None:
            if self.access_mode == "auth-token":
                raise ConfigurationError(_NO_SIGNING_KEY.format(what="access_mode='auth-token'"))
            if self.authorization_path is not None:
                raise ConfigurationError(
                    _NO_SIGNING_KEY.format(what="the authorization endpoint (authorization_path)")
                )
        for name in ("jwks_path", "authorization_path", "revocation_path", "interaction_path"):
            path = getattr(self, name)
            if path is not None and (not path.startswith("/") or "?" in path or "#" in path):
                raise ConfigurationError(f"{name} must be an absolute path without query")
        if not (self.pending_prefix.startswith("/") and self.pending_prefix.endswith("/")):
            raise ConfigurationError("pending_prefix must start and end with '/'")
        if not 0 < self.resource_token_lifetime <= 300:
            raise ConfigurationError("resource_token_lifetime must be 1..300 seconds")
        for scope, text in self.scope_descriptions.items():
            if not scope or any(c.isspace() for c in scope) or not isinstance(text, str):
                raise ConfigurationError(f"bad scope description for {scope!r}")
        if self.async_store is not None and (self.store is None or isinstance(self.store, str)):
            raise ConfigurationError("async_store goes with a sync store object in store")
        if self.store is not None and not isinstance(self.store, str) and self.async_store is None:
            raise ConfigurationError("a store object needs its async twin in async_store")

    def stores(self) -> tuple[PendingStore, AsyncPendingStore]:
        """The sync and async stores over one backend (shared state for both flavours)."""
        try:
            return open_store_pair(self.store, self.async_store, clock=self.clock)
        except (ValueError, TypeError, ImportError) as exc:
            # e.g. redis-py refusing a URL whose scheme we know ("redis://host:port-typo")
            raise ConfigurationError(
                f"store {describe_store(self.store)!r} cannot be opened: {exc}"
            ) from exc

    def check_protection(self, protection: _ProtectionLike, where: str = "protect()") -> None:
        """Raise ConfigurationError when an endpoint's protection cannot work here."""
        error = protection_error(self, protection, where)
        if error is not None:
            raise error

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any], **overrides: Any) -> ResourceConfig:
        """Build from a settings mapping with upper- or lower-case keys (``ISSUER``/``issuer``).

        Explicit ``overrides`` win over the mapping, as constructor arguments win over
        app config in Flask-style extensions.
        """
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in settings.items():
            name = key.lower()
            if name not in known:
                raise ConfigurationError(f"unknown AAuth setting {key!r}")
            values[name] = value
        values.update({k: v for k, v in overrides.items() if v is not None})
        for tuple_field in ("accept_algs", "additional_signature_components", "trusted_ps"):
            if tuple_field in values and not isinstance(values[tuple_field], tuple):
                values[tuple_field] = tuple(values[tuple_field])
        if "issuer" not in values:
            raise ConfigurationError("the AAuth ISSUER setting is required")
        return cls(**values)
