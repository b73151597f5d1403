"""Keys: JWKs and thumbprints, the egress policy, fetchers, and metadata/JWKS discovery."""

from __future__ import annotations

from ..identifiers import is_server_identifier
from .discovery import KeyDiscovery
from .egress import Admitted, EgressDenied, EgressPolicy, is_public_address
from .fetcher import (
    AsyncFetcher,
    AsyncHttpxFetcher,
    AsyncStaticFetcher,
    Fetcher,
    FetchError,
    FetchResponse,
    HttpxFetcher,
    StaticFetcher,
)
from .jwk import (
    SUPPORTED_ALGS,
    PrivateKey,
    PublicKey,
    b64url_decode,
    b64url_encode,
    jwk_thumbprint,
    structurally_complete,
)

__all__ = [
    "SUPPORTED_ALGS",
    "Admitted",
    "AsyncFetcher",
    "AsyncHttpxFetcher",
    "AsyncStaticFetcher",
    "EgressDenied",
    "EgressPolicy",
    "FetchError",
    "FetchResponse",
    "Fetcher",
    "HttpxFetcher",
    "KeyDiscovery",
    "PrivateKey",
    "PublicKey",
    "StaticFetcher",
    "b64url_decode",
    "b64url_encode",
    "is_public_address",
    "is_server_identifier",
    "jwk_thumbprint",
    "structurally_complete",
]
