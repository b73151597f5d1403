"""Configuration of an ATH implementer (a native service or a gateway); it fails early.

Every rule a request could otherwise trip over at run time is checked here, at start:
the base URL's shape (``https://`` unless ``dev_loopback``), a gateway provider without
its OAuth endpoints, a scope route naming a scope nobody offers, verification skipping
outside development, a page secret that is too short.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from ..clock import SYSTEM_CLOCK, Clock
from ..errors import ConfigurationError
from ..keys.fetcher import AsyncFetcher, Fetcher
from ..pagekit import MIN_SECRET, Authenticate
from ..storage.base import AsyncPendingStore, PendingStore, issuer_prefix
from .policy import ApprovalPolicy, approve_all
from .routes import ScopeMap

ATH_VERSION = "0.1"
Mode = Literal["native", "gateway"]


@dataclass(frozen=True)
class ProviderConfig:
    """One provider: the service itself (native) or an upstream OAuth provider (gateway).

    ``scopes`` maps each offered scope to the description the consent page shows;
    ``routes`` maps scopes to the operations they allow (``"GET /items/*"``), relative to
    the API base (native ``api_base``, gateway ``api_base_url``).
    """

    provider_id: str
    display_name: str
    scopes: Mapping[str, str]
    routes: Mapping[str, Iterable[str]] = field(default_factory=dict)
    # gateway only: the upstream OAuth 2 authorization server and API
    authorize_endpoint: str | None = None
    token_endpoint: str | None = None
    api_base_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    categories: tuple[str, ...] = ()
    agent_approval_required: bool = True

    def scope_map(self) -> ScopeMap:
        return ScopeMap.build(self.routes, self.scopes)


AuditHook = Callable[[str, Mapping[str, Any]], None]


def _origin_ok(url: str, *, dev_loopback: bool) -> bool:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    if parts.query or parts.fragment or parts.username or parts.password or not parts.hostname:
        return False
    if parts.scheme == "https":
        return True
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    return dev_loopback and parts.scheme == "http" and loopback and port is not None


@dataclass
class ATHConfig:
    """An ATH implementer.  ``base_url`` is where agents discover it (the SDKs build every
    ATH endpoint as ``base_url + "/ath/..."``); its path, if any, prefixes every route."""

    mode: Mode
    base_url: str
    name: str
    providers: tuple[ProviderConfig, ...]
    #: native: the service's ``app_id`` (also its provider_id); gateway: unused.
    app_id: str | None = None
    #: native: where the protected API lives (default ``base_url + "/api"``).
    api_base: str | None = None
    #: native: other provider_id values agents may use for the service (the SDK tests use
    #: the app_id, the demo a short name, the CLI "default").
    provider_aliases: tuple[str, ...] = ("default",)
    #: gateway: the ``gateway_id`` published in discovery (default ``base_url``).
    gateway_id: str | None = None
    approval: ApprovalPolicy = field(default_factory=approve_all)
    #: The signed-in user of a browser request (consent page, user revocation), or None.
    authenticate: Authenticate | None = None
    #: An administrator of a request (admin page, admin revocation), or None.
    admin_authenticate: Authenticate | None = None
    #: Keys the page forms' CSRF tokens and the native OAuth client's secret.
    page_secret: bytes | None = None
    login_path: str = "/login"
    store: str | PendingStore | None = None
    async_store: AsyncPendingStore | None = None
    clock: Clock = SYSTEM_CLOCK
    fetcher: Fetcher | None = None
    async_fetcher: AsyncFetcher | None = None
    dev_loopback: bool = False
    #: Development only (needs ``dev_loopback``): attestations are checked for shape,
    #: claims and replay but their signature is not verified and no document is fetched.
    insecure_skip_attestation_signature: bool = False
    audit: AuditHook | None = None
    token_ttl: int = 3600
    session_ttl: int = 600
    approval_ttl: int = 365 * 24 * 3600
    identity_cache_ttl: int = 300
    identity_refetch_interval: int = 60
    iat_window: int = 300
    max_body: int = 64 * 1024
    #: API and proxy calls must carry ``X-ATH-Agent-ID`` (the proxy spec's MUST).
    require_agent_header: bool = True
    proxy_timeout: float = 30.0
    proxy_max_request: int = 10 * 1024 * 1024
    proxy_max_response: int = 10 * 1024 * 1024
    upstream_timeout: float = 10.0
    upstream_max_bytes: int = 256 * 1024
    #: A store key namespace; default: derived from the service's own identity.
    namespace: str | None = None
    #: Key prefix of a store opened from a URI; default ``aauth:ath:<base_url host[:port]
    #: and path>`` (as a Person Server's is ``aauth:ps:<host>``), so ATH services sharing
    #: one Redis database never share records or change notifications.
    store_prefix: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("native", "gateway"):
            raise ConfigurationError("mode must be 'native' or 'gateway'")
        self.base_url = self.base_url.rstrip("/")
        if not _origin_ok(self.base_url, dev_loopback=self.dev_loopback):
            raise ConfigurationError(
                f"base_url {self.base_url!r} must be https:// (http://127.0.0.1:PORT or "
                "http://localhost:PORT only with dev_loopback), without query or fragment"
            )
        if self.insecure_skip_attestation_signature and not self.dev_loopback:
            raise ConfigurationError(
                "insecure_skip_attestation_signature is a development setting: it needs "
                "dev_loopback, and never belongs in production"
            )
        if not self.providers:
            raise ConfigurationError("an ATH implementer needs at least one provider")
        ids = [p.provider_id for p in self.providers]
        if len(set(ids)) != len(ids):
            raise ConfigurationError(f"provider ids must be unique: {ids}")
        for provider in self.providers:
            if not provider.provider_id or not provider.scopes:
                raise ConfigurationError("every provider needs a provider_id and scopes")
            provider.scope_map()  # the routes must parse and name offered scopes
        if self.mode == "native":
            self._check_native()
        else:
            self._check_gateway()
        if self.page_secret is not None and len(self.page_secret) < MIN_SECRET:
            raise ConfigurationError(f"page_secret must be at least {MIN_SECRET} bytes")
        if self.mode == "native" and (self.authenticate is None or self.page_secret is None):
            raise ConfigurationError(
                "a native service shows its own consent page: it needs authenticate "
                "(the signed-in user) and page_secret"
            )
        for name in ("token_ttl", "session_ttl", "approval_ttl", "max_body", "iat_window"):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{name} must be positive")

    def _check_native(self) -> None:
        if len(self.providers) != 1:
            raise ConfigurationError("a native service is its own single provider")
        if not self.app_id:
            raise ConfigurationError("a native service needs an app_id")
        if self.providers[0].provider_id != self.app_id:
            raise ConfigurationError("the native provider's provider_id must be the app_id")
        if self.api_base is None:
            self.api_base = self.base_url + "/api"
        self.api_base = self.api_base.rstrip("/")
        if not _origin_ok(self.api_base, dev_loopback=self.dev_loopback):
            raise ConfigurationError(f"api_base {self.api_base!r} is not an http(s) URL")

    def _check_gateway(self) -> None:
        if self.gateway_id is None:
            self.gateway_id = self.base_url
        for provider in self.providers:
            missing = [
                name
                for name in (
                    "authorize_endpoint",
                    "token_endpoint",
                    "api_base_url",
                    "client_id",
                    "client_secret",
                )
                if not getattr(provider, name)
            ]
            if missing:
                raise ConfigurationError(
                    f"gateway provider {provider.provider_id!r} lacks {', '.join(missing)}"
                )
            for name in ("authorize_endpoint", "token_endpoint", "api_base_url"):
                url = str(getattr(provider, name))
                if not _upstream_ok(url, dev_loopback=self.dev_loopback):
                    raise ConfigurationError(
                        f"gateway provider {provider.provider_id!r}: {name} {url!r} must be "
                        "https:// (loopback http:// only with dev_loopback)"
                    )

    # -- derived values ------------------------------------------------------------------

    @property
    def prefix(self) -> str:
        """The path every route lives under ('' at the root)."""
        return urlsplit(self.base_url).path.rstrip("/")

    @property
    def key_prefix(self) -> str:
        """The store key prefix (``store_prefix`` or one derived from ``base_url``)."""
        return self.store_prefix or issuer_prefix(self.base_url, "ath")

    @property
    def token_audience(self) -> str:
        return self.base_url + "/ath/token"

    @property
    def callback_url(self) -> str:
        return self.base_url + "/ath/callback"

    @property
    def service_id(self) -> str:
        return str(self.app_id if self.mode == "native" else self.gateway_id)

    @property
    def key_namespace(self) -> str:
        """Store ids are prefixed with this, so two services sharing a Redis never meet."""
        if self.namespace:
            return self.namespace
        seed = f"{self.mode}\0{self.service_id}\0{self.base_url}".encode()
        return hashlib.sha256(seed).hexdigest()[:16]

    @property
    def native_client_id(self) -> str:
        """The native service's own OAuth client id (its ATH layer is the only client)."""
        return f"{self.app_id}.ath"

    def native_client_secret(self) -> str:
        assert self.page_secret is not None
        return hmac.new(self.page_secret, b"ath-native-oauth-client", hashlib.sha256).hexdigest()

    def provider(self, provider_id: str) -> ProviderConfig | None:
        """The provider an agent names (native: the app_id or one of its aliases)."""
        if self.mode == "native":
            if provider_id == self.app_id or provider_id in self.provider_aliases:
                return self.providers[0]
            return None
        return next((p for p in self.providers if p.provider_id == provider_id), None)


def _upstream_ok(url: str, *, dev_loopback: bool) -> bool:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    if parts.fragment or parts.username or parts.password or not parts.hostname:
        return False
    if parts.scheme == "https":
        return True
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    return dev_loopback and parts.scheme == "http" and loopback and port is not None


def native_provider(
    app_id: str, name: str, scopes: Mapping[str, str], routes: Mapping[str, Iterable[str]]
) -> ProviderConfig:
    return ProviderConfig(app_id, name, dict(scopes), dict(routes))
