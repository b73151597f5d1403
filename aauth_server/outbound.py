"""Requests a server sends in its own right: PS -> AS token requests, revocations and their
polls, AS -> resource calls (digest 2.3, 5.4, 5.7).

A server signs with the ``jwks_uri`` scheme, ``id`` = its metadata ``issuer`` and ``dwk`` =
its own document name, covering ``@method @authority @path signature-key`` and, with a body,
``content-type content-digest``.  Every request goes through the egress policy of
:mod:`aauth_server.keys.fetcher` (https only, public addresses only unless ``dev_loopback``,
one deadline for the whole exchange, wire and decoded size caps, no redirects).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .clock import SYSTEM_CLOCK, Clock
from .http import HttpRequest, json_bytes
from .keys.egress import EgressPolicy
from .keys.fetcher import AsyncHttpxFetcher, FetchError, FetchResponse, HttpxFetcher
from .keys.jwk import PrivateKey
from .signatures.message import AAUTH_COMPONENTS, sign_request
from .signatures.signature_key import SignatureKey, serialize_signature_key

__all__ = [
    "AsyncOutboundClient",
    "FetchError",
    "FetchResponse",
    "OutboundClient",
    "ServerSigner",
]

Headers = Sequence[tuple[str, str]]
_BODY_COMPONENTS = ("content-type", "content-digest")


class ServerSigner:
    """Signs requests as the server ``issuer`` whose metadata document is ``dwk``
    (``aauth-person.json``, ``aauth-access.json``, ``aauth-resource.json``, ...)."""

    def __init__(
        self,
        key: PrivateKey,
        issuer: str,
        dwk: str,
        *,
        label: str = "sig",
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if not key.kid:
            raise ValueError("a server's signing key needs a kid (the jwks_uri scheme names it)")
        self.key = key
        self.issuer = issuer
        self.dwk = dwk
        self.label = label
        self.clock = clock
        self.signature_key = serialize_signature_key(
            [SignatureKey(label, "jwks_uri", {"id": issuer, "dwk": dwk, "kid": key.kid})]
        )

    def headers(self, method: str, url: str, headers: Headers = (), body: bytes = b"") -> Headers:
        """``headers`` plus ``Signature-Key``, ``Signature-Input``, ``Signature`` (and
        ``Content-Digest`` when there is a body)."""
        lines = [*headers, ("Signature-Key", self.signature_key)]
        components = list(AAUTH_COMPONENTS)
        if body:
            if not any(name.lower() == "content-type" for name, _ in lines):
                raise ValueError("a signed body needs a Content-Type to cover")
            components += _BODY_COMPONENTS
        request = HttpRequest(method, url, lines, body)
        added = sign_request(
            request,
            self.key,
            label=self.label,
            components=components,
            created=int(self.clock.now()),
        )
        return [*lines, *added]


def _json(payload: Any | None) -> tuple[Headers, bytes]:
    if payload is None:
        return (), b""
    return [("Content-Type", "application/json")], json_bytes(payload)


class OutboundClient:
    """Signed (or, with ``signer=None``, unsigned) requests through the egress policy."""

    def __init__(
        self, signer: ServerSigner | None = None, policy: EgressPolicy | None = None
    ) -> None:
        self.signer = signer
        self._fetcher = HttpxFetcher(policy)

    @property
    def policy(self) -> EgressPolicy:
        return self._fetcher.policy

    def request(
        self, method: str, url: str, *, json: Any | None = None, headers: Headers = ()
    ) -> FetchResponse:
        """Send ``json`` (if any) to ``url``; raises :class:`FetchError` when no usable
        response came back (refused by egress, unreachable, too slow, too large)."""
        extra, body = _json(json)
        lines: Headers = [*headers, *extra]
        if self.signer is not None:
            lines = self.signer.headers(method, url, lines, body)
        return self._fetcher.request(method, url, headers=lines, body=body)

    def close(self) -> None:
        self._fetcher.close()


class AsyncOutboundClient:
    """The async twin of :class:`OutboundClient` (signing is shared; only the send awaits)."""

    def __init__(
        self, signer: ServerSigner | None = None, policy: EgressPolicy | None = None
    ) -> None:
        self.signer = signer
        self._fetcher = AsyncHttpxFetcher(policy)

    @property
    def policy(self) -> EgressPolicy:
        return self._fetcher.policy

    async def request(
        self, method: str, url: str, *, json: Any | None = None, headers: Headers = ()
    ) -> FetchResponse:
        extra, body = _json(json)
        lines: Headers = [*headers, *extra]
        if self.signer is not None:
            lines = self.signer.headers(method, url, lines, body)
        return await self._fetcher.request(method, url, headers=lines, body=body)

    async def aclose(self) -> None:
        await self._fetcher.aclose()
