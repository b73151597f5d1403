"""Fetchers: the only place the server talks to URLs that callers chose.

Every URL is admitted by the :class:`EgressPolicy` first, then the connection goes to the
pinned address (the URL host is replaced by the IP; ``Host`` and TLS SNI keep the name, so
the certificate is still checked against it).  Redirects are refused outright, since a
redirect target would escape admission.

What a hostile server controls is bounded here, not after the fact:

- **One deadline** (``policy.timeout``) covers the whole exchange: connect, sending, the
  status line and headers, and the body.  A server trickling one header byte every second
  is cut off at the deadline, not kept alive by each read arriving in time.  The sync
  fetcher clamps every socket operation to the time left; the async one also runs the
  exchange under ``asyncio.timeout``.
- **Two size caps:** the bytes on the wire (``policy.max_bytes``) and the decoded bytes
  (``policy.max_decoded_bytes``).  Bodies are read raw (httpcore never decodes) and
  decompressed here, at most a cap's worth per step, so a gzip bomb costs at most the cap
  in memory.  One ``gzip`` or ``deflate`` layer is accepted; stacked or unknown codings are
  refused.

httpcore is used directly (it is what httpx runs on) because both bounds need the raw byte
stream and control of every socket read, which httpx's decoding response does not give.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import ssl
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpcore

from .egress import Admitted, EgressDenied, EgressPolicy


@dataclass(frozen=True, slots=True)
class FetchResponse:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""


class FetchError(Exception):
    """A fetch that produced no usable response.  ``reason`` is safe to show a caller (it
    never carries resolver answers); ``log_detail`` may, for the operator's log."""

    def __init__(self, reason: str, log_detail: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.log_detail = log_detail or reason


class Fetcher(Protocol):
    def get(self, url: str) -> FetchResponse: ...


class AsyncFetcher(Protocol):
    async def get(self, url: str) -> FetchResponse: ...


Headers = Sequence[tuple[str, str]]

# -- one deadline for the whole exchange --------------------------------------------------------

#: The monotonic deadline of the exchange running in this context (thread or task).
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "aauth_fetch_deadline", default=None
)


def _time_left(timeout: float | None) -> float | None:
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("deadline reached")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every read and write ends by the exchange's deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _time_left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _time_left(timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        tls = self._stream.start_tls(ssl_context, server_hostname, _time_left(timeout))
        return _DeadlineStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_tcp(
            host, port, _time_left(timeout), local_address, socket_options
        )
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:  # pragma: no cover - fetches never use unix sockets
        raise httpcore.ConnectError("unix sockets are not fetched")

    def sleep(self, seconds: float) -> None:  # pragma: no cover - no retries configured
        time.sleep(seconds)


# -- bounded decoding ----------------------------------------------------------------------------

_CODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class _Body:
    """Collects a response body within the wire and decoded caps, decoding as it goes."""

    def __init__(self, headers: Mapping[str, str], policy: EgressPolicy) -> None:
        self._wire_limit = policy.max_bytes
        self._limit = policy.max_decoded_bytes
        self._wire = 0
        self._size = 0
        self._chunks: list[bytes] = []
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._wire_limit:
            raise FetchError("too large")
        codings = [c.strip().lower() for c in headers.get("content-encoding", "").split(",")]
        codings = [c for c in codings if c and c != "identity"]
        if len(codings) > 1:
            raise FetchError("stacked content codings are refused")
        self._wbits: int | None = None
        self._decoder: Any = None
        if codings:
            if codings[0] not in _CODINGS:
                raise FetchError(f"content coding {codings[0][:20]!r} is not supported")
            self._wbits = _CODINGS[codings[0]]
            self._decoder = zlib.decompressobj(self._wbits)

    def feed(self, chunk: bytes) -> None:
        self._wire += len(chunk)
        if self._wire > self._wire_limit:
            raise FetchError("too large")
        if self._decoder is None:
            self._keep(chunk)
            return
        data = chunk
        while data:
            try:
                # At most what still fits (+1 to notice overflow): memory stays bounded.
                out = self._decoder.decompress(data, self._limit - self._size + 1)
            except zlib.error as exc:
                if self._wbits == zlib.MAX_WBITS and self._size == 0 and not self._chunks:
                    # "deflate" sent as a raw stream (no zlib wrapper), as some servers do.
                    self._wbits = -zlib.MAX_WBITS
                    self._decoder = zlib.decompressobj(self._wbits)
                    continue
                raise FetchError("body does not decode") from exc
            self._keep(out)
            data = self._decoder.unconsumed_tail
            if self._decoder.eof:
                rest = self._decoder.unused_data + data
                if not rest:
                    return
                # Another gzip member (RFC 1952 allows several); deflate allows one stream.
                if self._wbits != _CODINGS["gzip"]:
                    raise FetchError("body does not decode")
                self._decoder = zlib.decompressobj(self._wbits)
                data = rest

    def _keep(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._limit:
            raise FetchError("too large")
        if data:
            self._chunks.append(data)

    def result(self) -> bytes:
        if self._decoder is not None and not self._decoder.eof and self._wire:
            raise FetchError("body does not decode")
        return b"".join(self._chunks)


# -- requests ------------------------------------------------------------------------------------


def _target(admitted: Admitted) -> tuple[httpcore.URL, str, dict[str, Any]]:
    default_port = 443 if admitted.scheme == "https" else 80
    host = admitted.host if ":" not in admitted.host else f"[{admitted.host}]"
    if admitted.port != default_port:
        host = f"{host}:{admitted.port}"
    parts = urlsplit(admitted.url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        url = httpcore.URL(
            scheme=admitted.scheme.encode("ascii"),
            host=admitted.ip.encode("ascii"),
            port=admitted.port,
            target=path.encode("ascii"),
        )
        host.encode("ascii")
    except UnicodeEncodeError as exc:
        raise FetchError("the URL is not ASCII (send IDNs and paths percent-encoded)") from exc
    extensions: dict[str, Any] = {}
    if admitted.scheme == "https":
        extensions["sni_hostname"] = admitted.host
    return url, host, extensions


def _admit(policy: EgressPolicy, url: str) -> Admitted:
    try:
        return policy.admit(url)
    except EgressDenied as exc:
        # The reason may name resolver answers: for the log only.
        raise FetchError("egress refused", f"egress refused: {exc.reason}") from exc


def _request_headers(
    host: str, headers: Headers, body: bytes, accept: str
) -> list[tuple[bytes, bytes]]:
    names = {name.lower() for name, _ in headers}
    out = [(b"Host", host.encode("ascii"))]
    if "accept" not in names:
        out.append((b"Accept", accept.encode("ascii")))
    out.append((b"Accept-Encoding", b"gzip, deflate"))
    for name, value in headers:
        if name.lower() in ("host", "accept-encoding", "content-length", "transfer-encoding"):
            continue
        out.append((name.encode("latin-1"), value.encode("latin-1")))
    if body:
        out.append((b"Content-Length", str(len(body)).encode("ascii")))
    return out


def _response_headers(raw: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    # Lower-cased names; repeated fields joined with ", " (RFC 9110).
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1").strip()
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def _check_status(status: int) -> None:
    if 300 <= status < 400:
        raise FetchError("redirect")


def _timeouts(policy: EgressPolicy) -> dict[str, Any]:
    t = policy.timeout
    return {"timeout": {"connect": t, "read": t, "write": t, "pool": t}}


def _transport_error(exc: Exception) -> FetchError:
    if isinstance(exc, httpcore.TimeoutException | TimeoutError):
        return FetchError("timeout")
    return FetchError("transport error", f"transport error: {type(exc).__name__}: {exc}")


def _ssl_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # BCP 195
    return context


class HttpxFetcher:
    """The sync fetcher (the name is kept from when it ran on httpx; it runs on httpcore)."""

    def __init__(self, policy: EgressPolicy | None = None) -> None:
        self.policy = policy if policy is not None else EgressPolicy()
        # No keep-alive: a pooled connection is keyed by IP, so reusing it for another host
        # name would skip that name's certificate check.
        self._pool = httpcore.ConnectionPool(
            ssl_context=_ssl_context(),
            max_keepalive_connections=0,
            network_backend=_DeadlineBackend(),
        )

    def get(self, url: str) -> FetchResponse:
        return self.request("GET", url)

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Headers = (),
        body: bytes = b"",
        accept: str = "application/json",
    ) -> FetchResponse:
        """Send one request through the egress policy; raises :class:`FetchError`."""
        policy = self.policy
        admitted = _admit(policy, url)
        target, host, extensions = _target(admitted)
        extensions.update(_timeouts(policy))
        token = _DEADLINE.set(time.monotonic() + policy.timeout)
        try:
            with self._pool.stream(
                method,
                target,
                headers=_request_headers(host, headers, body, accept),
                content=body or None,
                extensions=extensions,
            ) as response:
                _check_status(response.status)
                fields = _response_headers(response.headers)
                collected = _Body(fields, policy)
                for chunk in response.iter_stream():
                    collected.feed(chunk)
                return FetchResponse(response.status, fields, collected.result())
        except FetchError:
            raise
        except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError) as exc:
            raise _transport_error(exc) from exc
        except (OSError, ValueError, httpcore.UnsupportedProtocol) as exc:
            raise _transport_error(exc) from exc
        finally:
            _DEADLINE.reset(token)

    def close(self) -> None:
        self._pool.close()


class AsyncHttpxFetcher:
    """The async fetcher: the same bounds, the deadline kept by ``asyncio.timeout``."""

    def __init__(self, policy: EgressPolicy | None = None) -> None:
        self.policy = policy if policy is not None else EgressPolicy()
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=_ssl_context(), max_keepalive_connections=0
        )

    async def get(self, url: str) -> FetchResponse:
        return await self.request("GET", url)

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Headers = (),
        body: bytes = b"",
        accept: str = "application/json",
    ) -> FetchResponse:
        policy = self.policy
        admitted = _admit(policy, url)
        target, host, extensions = _target(admitted)
        extensions.update(_timeouts(policy))
        try:
            async with asyncio.timeout(policy.timeout):
                async with self._pool.stream(
                    method,
                    target,
                    headers=_request_headers(host, headers, body, accept),
                    content=body or None,
                    extensions=extensions,
                ) as response:
                    _check_status(response.status)
                    fields = _response_headers(response.headers)
                    collected = _Body(fields, policy)
                    async for chunk in response.aiter_stream():
                        collected.feed(chunk)
                    return FetchResponse(response.status, fields, collected.result())
        except FetchError:
            raise
        except (httpcore.TimeoutException, TimeoutError) as exc:
            raise _transport_error(exc) from exc
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
            raise _transport_error(exc) from exc
        except (OSError, ValueError) as exc:
            raise _transport_error(exc) from exc

    async def aclose(self) -> None:
        await self._pool.aclose()


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
