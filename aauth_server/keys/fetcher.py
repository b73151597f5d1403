"""Fetchers: the only place key discovery touches the network.

The httpx fetchers admit every URL through the :class:`EgressPolicy`, then connect to the
pinned address (the URL host is replaced by the IP; ``Host`` and TLS SNI keep the name, so the
certificate is still checked against it).  Redirects are refused outright rather than followed,
since a redirect target would escape admission.  The sync and async fetchers share everything
except the awaits.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypedDict

import httpx

from .egress import EgressDenied, EgressPolicy


@dataclass(frozen=True, slots=True)
class FetchResponse:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""


class FetchError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Fetcher(Protocol):
    def get(self, url: str) -> FetchResponse: ...


class AsyncFetcher(Protocol):
    async def get(self, url: str) -> FetchResponse: ...


class _ClientOptions(TypedDict):
    timeout: httpx.Timeout
    follow_redirects: bool
    trust_env: bool
    limits: httpx.Limits


def _client_options(policy: EgressPolicy) -> _ClientOptions:
    return {
        "timeout": httpx.Timeout(policy.timeout),
        "follow_redirects": False,
        # Environment proxies would bypass the pinned address.
        "trust_env": False,
        # A pooled connection is keyed by IP, so reusing it for another host name would skip
        # that name's certificate check; discovery fetches are rare enough to go unpooled.
        "limits": httpx.Limits(max_keepalive_connections=0),
    }


def _prepare(
    client: httpx.Client | httpx.AsyncClient, policy: EgressPolicy, url: str
) -> httpx.Request:
    try:
        admitted = policy.admit(url)
    except EgressDenied as exc:
        raise FetchError(f"egress refused: {exc.reason}") from exc
    target = httpx.URL(url).copy_with(host=admitted.ip, port=admitted.port)
    default_port = 443 if admitted.scheme == "https" else 80
    host = admitted.host if ":" not in admitted.host else f"[{admitted.host}]"
    if admitted.port != default_port:
        host = f"{host}:{admitted.port}"
    extensions = {"sni_hostname": admitted.host} if admitted.scheme == "https" else {}
    return client.build_request(
        "GET",
        target,
        headers={"Host": host, "Accept": "application/json"},
        extensions=extensions,
    )


class _BodyReader:
    """Checks the status line, then collects the body within the size and time budget."""

    def __init__(self, response: httpx.Response, policy: EgressPolicy, started: float) -> None:
        if 300 <= response.status_code < 400:
            raise FetchError("redirect")
        self._limit = policy.max_bytes
        self._deadline = started + policy.timeout
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._limit:
            raise FetchError("too large")
        self._response = response
        self._chunks: list[bytes] = []
        self._size = 0

    def feed(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._limit:
            raise FetchError("too large")
        # The read timeout bounds each wait; this bounds a server trickling bytes forever.
        if time.monotonic() > self._deadline:
            raise FetchError("timeout")
        self._chunks.append(chunk)

    def result(self) -> FetchResponse:
        # httpx lower-cases names and joins repeated fields with ", ".
        headers = dict(self._response.headers.items())
        return FetchResponse(self._response.status_code, headers, b"".join(self._chunks))


def _transport_error(exc: httpx.HTTPError) -> FetchError:
    if isinstance(exc, httpx.TimeoutException):
        return FetchError("timeout")
    return FetchError(f"transport error: {type(exc).__name__}")


class HttpxFetcher:
    def __init__(self, policy: EgressPolicy | None = None) -> None:
        self.policy = policy if policy is not None else EgressPolicy()
        self._client = httpx.Client(**_client_options(self.policy))

    def get(self, url: str) -> FetchResponse:
        request = _prepare(self._client, self.policy, url)
        started = time.monotonic()
        try:
            response = self._client.send(request, stream=True)
            try:
                reader = _BodyReader(response, self.policy, started)
                for chunk in response.iter_bytes():
                    reader.feed(chunk)
            finally:
                response.close()
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from exc
        return reader.result()

    def close(self) -> None:
        self._client.close()


class AsyncHttpxFetcher:
    def __init__(self, policy: EgressPolicy | None = None) -> None:
        self.policy = policy if policy is not None else EgressPolicy()
        self._client = httpx.AsyncClient(**_client_options(self.policy))

    async def get(self, url: str) -> FetchResponse:
        request = _prepare(self._client, self.policy, url)
        started = time.monotonic()
        try:
            response = await self._client.send(request, stream=True)
            try:
                reader = _BodyReader(response, self.policy, started)
                async for chunk in response.aiter_bytes():
                    reader.feed(chunk)
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from exc
        return reader.result()

    async def aclose(self) -> None:
        await self._client.aclose()


def _as_response(value: object) -> FetchResponse:
    if isinstance(value, FetchResponse):
        return value
    if isinstance(value, FetchError):
        raise value
    body = json.dumps(value).encode("utf-8")
    return FetchResponse(200, {"content-type": "application/json"}, body)


class _StaticDocuments:
    """Serves ``documents`` by exact URL: a JSON-able value, a FetchResponse, or a FetchError
    (raised).  ``documents`` stays mutable so a test can change what the "network" answers."""

    def __init__(self, documents: Mapping[str, object]) -> None:
        self.documents: dict[str, object] = dict(documents)
        self.calls: list[str] = []

    def _lookup(self, url: str) -> FetchResponse:
        self.calls.append(url)
        if url not in self.documents:
            return FetchResponse(404, {"content-type": "text/plain"}, b"not found")
        return _as_response(self.documents[url])


class StaticFetcher(_StaticDocuments):
    def get(self, url: str) -> FetchResponse:
        return self._lookup(url)


class AsyncStaticFetcher(_StaticDocuments):
    async def get(self, url: str) -> FetchResponse:
        return self._lookup(url)
