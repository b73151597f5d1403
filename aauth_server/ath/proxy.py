"""The gateway proxy: ``ANY /ath/proxy/{provider_id}/{path}``.

:func:`plan` is the protocol part (steps): parse the raw target, refuse path tricks, validate
the ATH token for this provider and operation, and build the upstream request with the
upstream token the gateway keeps.  :class:`Forwarder` is the I/O part, sync and async:
httpx streams the agent's body up and the provider's body back, within a total deadline and
size caps.  Adapters only convert: they hand the body stream in and the response stream out.

Path rules (``INVALID_PATH``, 400): the path is judged as sent (percent-encoding intact):
no ``.`` or ``..`` segment (also encoded, ``%2e``), no encoded slash or backslash (``%2f``,
``%5c``), no NUL (``%00``), no empty segment (``//``, which would read as a host), no
scheme-like first segment (``http:``), no raw backslash, space or control character, and
every ``%`` must start a valid escape.  The upstream URL is the provider's configured
``api_base_url`` followed by that path and the query, byte for byte.

Headers: ``Authorization`` (replaced by the upstream token), ``X-ATH-Agent-ID``, ``Host``,
``Cookie`` (the gateway's own), ``Content-Length`` (re-framed) and every hop-by-hop header,
including those named by ``Connection``, are not forwarded; hop-by-hop headers of the
response are dropped, everything else passes back unchanged (the body as raw bytes).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..http import Headers, HttpRequest, small_uint
from . import tokens
from .config import ATHConfig
from .context import Context
from .driver import Op
from .errors import ATHError
from .tokens import TokenInfo

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
_NOT_FORWARDED = HOP_BY_HOP | {
    "authorization",
    "x-ath-agent-id",
    "host",
    "cookie",
    "content-length",
}
_PROVIDER = re.compile(r"[A-Za-z0-9._-]{1,128}")
_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_UNSAFE = re.compile(r"[\x00-\x20\x7f-\U0010ffff\\]")
_FORBIDDEN_ESCAPES = ("%2f", "%5c", "%00", "%2e")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _bad_path(reason: str) -> ATHError:
    return ATHError("INVALID_PATH", "the proxied path is not allowed", {"reason": reason})


def parse_target(prefix: str, url: str) -> tuple[str, str, str]:
    """(provider_id, path, raw query) of a proxy URL, or ``INVALID_PATH``."""
    parts = urlsplit(url)
    raw = parts.path
    base = prefix + "/ath/proxy/"
    if not raw.startswith(base):
        raise _bad_path("not a proxy path")
    rest = raw[len(base) :]
    provider_id, _, tail = rest.partition("/")
    if not _PROVIDER.fullmatch(provider_id):
        raise _bad_path("malformed provider_id")
    path = "/" + tail
    check_path(path)
    return provider_id, path, parts.query


def check_path(path: str) -> None:
    """Refuse a path (as sent, percent-encoding intact) that could mean something else."""
    if _UNSAFE.search(path):
        raise _bad_path("spaces, control characters and backslashes are refused")
    if "%" in path:
        if _ESCAPE.search(path):
            raise _bad_path("a stray % is refused")
        lowered = path.lower()
        if any(e in lowered for e in _FORBIDDEN_ESCAPES):
            raise _bad_path("encoded slashes, backslashes, dots and NUL are refused")
    if "/." in path:
        segments = path[1:].split("/")
        if any(s in (".", "..") for s in segments):
            raise _bad_path("dot segments are refused")
    if "//" in path:
        raise _bad_path("empty segments are refused")
    first = path[1:].split("/", 1)[0]
    if ":" in first:
        raise _bad_path("an absolute URL is refused")


@dataclass(frozen=True, slots=True)
class ProxyPlan:
    method: str
    url: str
    headers: Headers
    token: TokenInfo
    provider_id: str
    declared_length: int | None = None


def _connection_tokens(headers: Headers) -> set[str]:
    named: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            named |= {t.strip().lower() for t in value.split(",") if t.strip()}
    return named


def forwardable(headers: Headers) -> Headers:
    dropped = _NOT_FORWARDED | _connection_tokens(headers)
    return [(k, v) for k, v in headers if k.lower() not in dropped]


def returnable(headers: Iterable[tuple[str, str]]) -> Headers:
    pairs = list(headers)
    dropped = HOP_BY_HOP | _connection_tokens(pairs)
    return [(k, v) for k, v in pairs if k.lower() not in dropped]


def plan(ctx: Context, request: HttpRequest) -> Generator[Op, Any, ProxyPlan]:
    config = ctx.config
    method = request.method.upper()
    if method not in METHODS:
        raise ATHError("METHOD_NOT_ALLOWED", f"{method} is not proxied")
    provider_id, path, query = parse_target(config.prefix, request.url)
    provider = config.provider(provider_id)
    scope_map = provider.scope_map() if provider is not None else None
    if scope_map is None:
        # The token check answers first (TOKEN_* or PROVIDER_MISMATCH): an unknown provider
        # can never be the one a token is bound to.
        from .routes import ScopeMap

        scope_map = ScopeMap({})
    info = yield from tokens.validate(
        ctx, request, provider_id=provider_id, scope_map=scope_map, operation=(method, path)
    )
    assert provider is not None and provider.api_base_url
    upstream = info.upstream or {}
    access = upstream.get("access_token")
    if not isinstance(access, str):
        raise ATHError("UPSTREAM_ERROR", "the gateway holds no upstream token for this grant")
    length = small_uint(request.header("content-length"))
    if length is not None and length > config.proxy_max_request:
        raise ATHError(
            "PAYLOAD_TOO_LARGE", f"the proxied body exceeds {config.proxy_max_request} bytes"
        )
    headers = forwardable(request.headers)
    headers.append(("Authorization", f"Bearer {access}"))
    url = provider.api_base_url.rstrip("/") + path + (f"?{query}" if query else "")
    ctx.audit(
        "proxy_request",
        agent_id=info.agent_id,
        user_id=info.user_id,
        provider_id=provider_id,
        method=method,
        path=path[:200],
    )
    return ProxyPlan(method, url, headers, info, provider_id, length)


# -- forwarding (I/O) -------------------------------------------------------------------------


class BodyTooLarge(Exception):
    pass


class _Budget:
    def __init__(self, limit: int, deadline: float) -> None:
        self.limit = limit
        self.deadline = deadline
        self.size = 0

    def take(self, chunk: bytes) -> bytes:
        self.size += len(chunk)
        if self.size > self.limit:
            raise BodyTooLarge()
        if time.monotonic() > self.deadline:
            raise TimeoutError("proxy deadline")
        return chunk


@dataclass
class Proxied:
    """An upstream answer being streamed back: iterate ``body`` once; it closes itself."""

    status: int
    headers: Headers
    body: Iterator[bytes]
    close: Callable[[], None] = field(default=lambda: None)


@dataclass
class AsyncProxied:
    status: int
    headers: Headers
    body: AsyncIterator[bytes]
    aclose: Callable[[], Any] = field(default=lambda: None)


def _limits(config: ATHConfig) -> dict[str, Any]:
    return {
        "timeout": httpx.Timeout(config.proxy_timeout),
        "follow_redirects": False,
        "trust_env": False,
    }


def _upstream_failed(exc: BaseException) -> ATHError:
    if isinstance(exc, BodyTooLarge) or isinstance(exc.__context__, BodyTooLarge):
        return ATHError("PAYLOAD_TOO_LARGE", "the proxied body exceeds the limit")
    reason = (
        "timeout" if isinstance(exc, httpx.TimeoutException | TimeoutError) else type(exc).__name__
    )
    return ATHError("UPSTREAM_ERROR", "the provider could not be reached", {"reason": reason})


class Forwarder:
    def __init__(self, config: ATHConfig) -> None:
        self.config = config
        self._client: httpx.Client | None = None
        self._aclient: httpx.AsyncClient | None = None

    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(**_limits(self.config))
        return self._client

    def aclient(self) -> httpx.AsyncClient:
        if self._aclient is None:
            self._aclient = httpx.AsyncClient(**_limits(self.config))
        return self._aclient

    def send(self, plan: ProxyPlan, body: Iterable[bytes]) -> Proxied:
        config = self.config
        deadline = time.monotonic() + config.proxy_timeout
        up = _Budget(config.proxy_max_request, deadline)
        content = (up.take(c) for c in body) if plan.method not in ("GET", "HEAD") else None
        client = self.client()
        request = client.build_request(plan.method, plan.url, headers=plan.headers, content=content)
        try:
            response = client.send(request, stream=True)
        except (httpx.HTTPError, BodyTooLarge, TimeoutError) as exc:
            raise _upstream_failed(exc) from exc
        declared = small_uint(response.headers.get("content-length"))
        if declared is not None and declared > config.proxy_max_response:
            response.close()
            raise ATHError(
                "UPSTREAM_ERROR", "the provider's answer is too large", {"reason": "too large"}
            )
        down = _Budget(config.proxy_max_response, deadline)

        def stream() -> Iterator[bytes]:
            try:
                for chunk in response.iter_raw():
                    yield down.take(chunk)
            except (httpx.HTTPError, BodyTooLarge, TimeoutError):
                return  # the client sees a short body: the status line is already sent
            finally:
                response.close()

        return Proxied(
            response.status_code,
            returnable(response.headers.multi_items()),
            stream(),
            response.close,
        )

    async def asend(self, plan: ProxyPlan, body: AsyncIterable[bytes]) -> AsyncProxied:
        config = self.config
        deadline = time.monotonic() + config.proxy_timeout
        up = _Budget(config.proxy_max_request, deadline)

        async def upload() -> AsyncIterator[bytes]:
            async for chunk in body:
                yield up.take(chunk)

        content = upload() if plan.method not in ("GET", "HEAD") else None
        client = self.aclient()
        request = client.build_request(plan.method, plan.url, headers=plan.headers, content=content)
        try:
            response = await client.send(request, stream=True)
        except (httpx.HTTPError, BodyTooLarge, TimeoutError) as exc:
            raise _upstream_failed(exc) from exc
        declared = small_uint(response.headers.get("content-length"))
        if declared is not None and declared > config.proxy_max_response:
            await response.aclose()
            raise ATHError(
                "UPSTREAM_ERROR", "the provider's answer is too large", {"reason": "too large"}
            )
        down = _Budget(config.proxy_max_response, deadline)

        async def stream() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.aiter_raw():
                    yield down.take(chunk)
            except (httpx.HTTPError, BodyTooLarge, TimeoutError):
                return
            finally:
                await response.aclose()

        return AsyncProxied(
            response.status_code,
            returnable(response.headers.multi_items()),
            stream(),
            response.aclose,
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        if self._aclient is not None:
            await self._aclient.aclose()
            self._aclient = None
