"""Sending token revocations (digest 5.7): ``POST {revocation_endpoint}`` with ``{jti, exp}``,
signed as a server (``jwks_uri`` scheme, content-type and digest covered), through the
egress policy (:mod:`aauth_server.outbound`).

The exchange is written once, as steps (:func:`attempt_steps`, :func:`revoke_steps`) that
yield what they need: a request to send (:class:`Send`) or a pause (:class:`Pause`).
:class:`RevocationClient` answers them synchronously or asynchronously.  Two ways to use it:

* :meth:`RevocationClient.attempt` makes one exchange and says what happened: revoked,
  refused (terminal), pending (``202``: poll ``poll_url`` after ``retry_after``) or retry
  (rate-limited, a failure worth repeating).  A durable outbox (the Person Server's) stores
  the answer and comes back later: nothing is lost on a restart.
* :meth:`RevocationClient.revoke` loops until a terminal outcome (``revoked``,
  ``unsupported`` or ``unavailable``), honouring ``Retry-After``, polling a ``202``'s pending
  URL with signed ``GET`` under the same identity, and backing off after failures: what an
  Access Server's cascade waits for before it answers its own caller.

How responses read (digest 5.7 and 5.5): ``200`` revoked (the body may list
``downstream`` outcomes); ``202`` pending (``Location`` same origin, ``Retry-After``,
default 5 s); ``429 rate_limited`` retry after ``Retry-After``; ``400``/``403``
(``invalid_request``, ``unsupported_iss``) refused, repeating would not help; ``401``,
``404`` of a pending URL (start over), ``408``, ``5xx`` and no response at all: retry with
exponential backoff.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

from .http import small_uint
from .keys.fetcher import FetchError, FetchResponse
from .outbound import AsyncOutboundClient, OutboundClient

T = TypeVar("T")

REVOKED = "revoked"
REFUSED = "refused"
PENDING = "pending"
RETRY = "retry"
#: Terminal outcomes of :meth:`RevocationClient.revoke`.
UNSUPPORTED = "unsupported"
UNAVAILABLE = "unavailable"
DEFAULT_RETRY_AFTER = 5.0
MAX_RETRY_AFTER = 3600.0


@dataclass(frozen=True, slots=True)
class Send:
    method: str
    url: str
    json: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Pause:
    seconds: float


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one exchange with a revocation endpoint (or its pending URL) came to."""

    outcome: str
    detail: str = ""
    status: int | None = None
    retry_after: float | None = None
    poll_url: str | None = None
    downstream: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)

    @property
    def terminal(self) -> bool:
        return self.outcome in (REVOKED, REFUSED)


@dataclass(frozen=True, slots=True)
class Result:
    """The terminal outcome of :meth:`RevocationClient.revoke`."""

    status: str  # revoked | unsupported | unavailable
    detail: str
    attempts: int
    downstream: tuple[Mapping[str, Any], ...] = ()


Need = Send | Pause
Steps = Generator[Need, Any, T]


def _retry_after(headers: Mapping[str, str]) -> float | None:
    seconds = small_uint(headers.get("retry-after"), int(MAX_RETRY_AFTER))
    return None if seconds is None else float(seconds)


def _error(body: bytes) -> str:
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    if isinstance(parsed, dict):
        return str(parsed.get("error") or "")
    return ""


def _same_origin(a: str, b: str) -> bool:
    x, y = urlsplit(a), urlsplit(b)
    return (x.scheme, x.netloc) == (y.scheme, y.netloc)


def classify(response: FetchResponse, url: str, *, polling: bool) -> Attempt:
    """Read one response of a revocation endpoint or of its pending URL."""
    status = response.status
    retry_after = _retry_after(response.headers)
    if status == 200:
        downstream: tuple[Mapping[str, Any], ...] = ()
        try:
            body = json.loads(response.body) if response.body else {}
        except (ValueError, UnicodeDecodeError):
            body = {}
        if isinstance(body, dict) and isinstance(body.get("downstream"), list):
            downstream = tuple(d for d in body["downstream"] if isinstance(d, dict))
        return Attempt(REVOKED, "revoked", status, downstream=downstream)
    if status == 202:
        location = response.headers.get("location")
        if not location:
            return Attempt(RETRY, "202 without Location", status, retry_after)
        target = urljoin(url, location)
        if not _same_origin(target, url):
            return Attempt(RETRY, "202 with a pending URL on another origin", status, retry_after)
        wait = DEFAULT_RETRY_AFTER if retry_after is None else retry_after
        return Attempt(PENDING, "accepted, cascade in progress", status, wait, target)
    error = _error(response.body)
    if status == 429:
        wait = DEFAULT_RETRY_AFTER if retry_after is None else retry_after
        return Attempt(RETRY, error or "rate_limited", status, wait)
    if status in (400, 403) or (400 <= status < 500 and status not in (401, 404, 408)):
        return Attempt(REFUSED, error or f"refused ({status})", status)
    if status == 404 and polling:
        return Attempt(RETRY, "the pending URL is gone; start over", status, retry_after)
    return Attempt(RETRY, error or f"answered {status}", status, retry_after)


def attempt_steps(
    endpoint: str, jti: str, exp: float, poll_url: str | None = None
) -> Steps[Attempt]:
    """One exchange: ``POST {jti, exp}`` to ``endpoint``, or a signed ``GET`` of ``poll_url``."""
    polling = poll_url is not None
    url = poll_url if poll_url is not None else endpoint
    send = Send("GET", url) if polling else Send("POST", url, {"jti": jti, "exp": int(exp)})
    try:
        response: FetchResponse = yield send
    except FetchError as exc:
        return Attempt(RETRY, exc.reason)
    attempt = classify(response, url, polling=polling)
    if attempt.outcome == RETRY and attempt.status == 404 and polling:
        return Attempt(RETRY, attempt.detail, 404)  # next attempt POSTs again
    return attempt


def backoff(attempts: int, *, base: float = 1.0, cap: float = 300.0) -> float:
    """Seconds to wait after the ``attempts``-th failure: 1, 2, 4, ... up to ``cap``."""
    return float(min(cap, base * 2.0 ** max(0, attempts - 1)))


def revoke_steps(
    endpoint: str, jti: str, exp: float, *, attempts: int = 8, now: Callable[[], float]
) -> Steps[Result]:
    """Revoke until a terminal outcome; gives up (``unavailable``) after ``attempts``
    failures or once the token has expired (nothing left to revoke)."""
    poll_url: str | None = None
    failures = 0
    tries = 0
    while True:
        tries += 1
        attempt = yield from attempt_steps(endpoint, jti, exp, poll_url)
        if attempt.outcome == REVOKED:
            return Result(REVOKED, attempt.detail, tries, attempt.downstream)
        if attempt.outcome == REFUSED:
            return Result(UNSUPPORTED, attempt.detail, tries)
        if attempt.outcome == PENDING:
            poll_url = attempt.poll_url
            wait = attempt.retry_after or DEFAULT_RETRY_AFTER
        else:
            failures += 1
            if attempt.status == 404:
                poll_url = None
            if failures >= attempts:
                return Result(UNAVAILABLE, attempt.detail, tries)
            wait = attempt.retry_after if attempt.retry_after is not None else backoff(failures)
        if now() + wait >= exp:
            return Result(UNAVAILABLE, f"{attempt.detail}; the token expires first", tries)
        yield Pause(wait)


class RevocationClient:
    """Runs the revocation steps over an :class:`~aauth_server.outbound.OutboundClient`
    (sync) and/or an :class:`~aauth_server.outbound.AsyncOutboundClient`, both signing as
    this server."""

    def __init__(
        self,
        client: OutboundClient | None = None,
        async_client: AsyncOutboundClient | None = None,
        *,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        asleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.client = client
        self.async_client = async_client
        self.now = now
        self.sleep = sleep
        self.asleep = asleep

    def run(self, steps: Steps[T]) -> T:
        assert self.client is not None, "a sync OutboundClient is needed"
        try:
            need = next(steps)
            while True:
                if isinstance(need, Pause):
                    self.sleep(need.seconds)
                    need = steps.send(None)
                    continue
                try:
                    answer = self.client.request(need.method, need.url, json=need.json)
                except FetchError as exc:
                    need = steps.throw(exc)
                    continue
                need = steps.send(answer)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def arun(self, steps: Steps[T]) -> T:
        assert self.async_client is not None, "an AsyncOutboundClient is needed"
        try:
            need = next(steps)
            while True:
                if isinstance(need, Pause):
                    await self.asleep(need.seconds)
                    need = steps.send(None)
                    continue
                try:
                    answer = await self.async_client.request(need.method, need.url, json=need.json)
                except FetchError as exc:
                    need = steps.throw(exc)
                    continue
                need = steps.send(answer)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def attempt(self, endpoint: str, jti: str, exp: float, poll_url: str | None = None) -> Attempt:
        return self.run(attempt_steps(endpoint, jti, exp, poll_url))

    async def aattempt(
        self, endpoint: str, jti: str, exp: float, poll_url: str | None = None
    ) -> Attempt:
        return await self.arun(attempt_steps(endpoint, jti, exp, poll_url))

    def revoke(self, endpoint: str, jti: str, exp: float, *, attempts: int = 8) -> Result:
        return self.run(revoke_steps(endpoint, jti, exp, attempts=attempts, now=self.now))

    async def arevoke(self, endpoint: str, jti: str, exp: float, *, attempts: int = 8) -> Result:
        return await self.arun(revoke_steps(endpoint, jti, exp, attempts=attempts, now=self.now))


__all__ = [
    "PENDING",
    "REFUSED",
    "RETRY",
    "REVOKED",
    "UNAVAILABLE",
    "UNSUPPORTED",
    "Attempt",
    "Pause",
    "Result",
    "RevocationClient",
    "Send",
    "attempt_steps",
    "backoff",
    "classify",
    "revoke_steps",
]
