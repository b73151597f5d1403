"""Configuration of a protected resource, shared by the three adapters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from ..clock import SYSTEM_CLOCK, Clock
from ..identifiers import is_server_identifier
from ..keys.discovery import KeyDiscovery
from ..keys.fetcher import AsyncFetcher, Fetcher
from ..keys.jwk import SUPPORTED_ALGS


class ConfigurationError(ValueError):
    """A configuration the framework refuses to run with."""


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

    def __post_init__(self) -> None:
        if not is_server_identifier(self.issuer, dev_loopback=self.dev_loopback):
            hint = "" if self.dev_loopback else " (loopback issuers need dev_loopback=True)"
            raise ConfigurationError(f"issuer {self.issuer!r} is not a server identifier{hint}")
        if self.public_origin is not None:
            parts = urlsplit(self.public_origin)
            if (
                parts.scheme not in ("https", "http")
                or not parts.netloc
                or parts.path not in ("", "/")
            ):
                raise ConfigurationError("public_origin must be scheme://host[:port]")
        if not 0 < self.signature_window <= 600:
            raise ConfigurationError("signature_window must be 1..600 seconds")
        unknown = [a for a in self.accept_algs if a not in SUPPORTED_ALGS]
        if unknown or not self.accept_algs:
            raise ConfigurationError(f"accept_algs must be a non-empty subset of {SUPPORTED_ALGS}")

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
        for tuple_field in ("accept_algs", "additional_signature_components"):
            if tuple_field in values and not isinstance(values[tuple_field], tuple):
                values[tuple_field] = tuple(values[tuple_field])
        if "issuer" not in values:
            raise ConfigurationError("the AAuth ISSUER setting is required")
        return cls(**values)
