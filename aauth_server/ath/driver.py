"""The two drivers that run ATH protocol steps, in the manner of :mod:`aauth_server.steps`.

ATH logic is written once, as generators yielding what they need from outside: a
pending-store call (:class:`~aauth_server.steps.StoreOp`), an identity-document fetch
(:class:`FetchOp`) or an upstream OAuth code exchange (:class:`ExchangeOp`).  The sync
driver answers them with the sync store, fetcher and OAuth client (Flask, Django sync
views); the async driver with their async twins (Starlette, Django async views).
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ..http import HttpResponse
from ..keys.fetcher import AsyncFetcher, Fetcher, FetchError
from ..steps import StoreOp
from ..storage.base import AsyncPendingStore, PendingStore, StorageError, StorageUnavailable
from .errors import ATHError

T = TypeVar("T")
log = logging.getLogger("aauth_server.ath")


@dataclass(frozen=True, slots=True)
class FetchOp:
    """GET ``url`` through the egress policy: a :class:`FetchResponse`, or FetchError thrown in."""

    url: str


@dataclass(frozen=True, slots=True)
class ExchangeOp:
    """Exchange an upstream authorization code (form-encoded, with the PKCE verifier)."""

    provider_id: str
    code: str
    code_verifier: str
    redirect_uri: str


class UpstreamFailure(Exception):
    """The upstream authorization server refused the exchange or could not be reached."""

    def __init__(self, reason: str, error: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


class Upstream(Protocol):
    def exchange(self, op: ExchangeOp) -> Mapping[str, Any]: ...

    async def aexchange(self, op: ExchangeOp) -> Mapping[str, Any]: ...


Op = StoreOp | FetchOp | ExchangeOp
Steps = Generator[Op, Any, T]


def unavailable(exc: StorageUnavailable) -> ATHError:
    return ATHError(
        "SERVICE_UNAVAILABLE",
        "the service's state store is unavailable; retry shortly",
        headers=[("Retry-After", str(exc.retry_after))],
    )


def internal(exc: BaseException) -> ATHError:
    log.error("ATH: request failed: %s", exc, exc_info=exc)
    return ATHError("INTERNAL_ERROR", "the request could not be completed")


class Driver:
    def __init__(
        self,
        store: PendingStore,
        async_store: AsyncPendingStore,
        fetcher: Fetcher,
        async_fetcher: AsyncFetcher,
        upstream: Upstream | None,
    ) -> None:
        self.store = store
        self.async_store = async_store
        self.fetcher = fetcher
        self.async_fetcher = async_fetcher
        self.upstream = upstream

    def respond(self, steps: Steps[HttpResponse]) -> HttpResponse:
        try:
            return self.run(steps)
        except ATHError as error:
            return error.to_response()
        except StorageError as exc:
            return internal(exc).to_response()

    async def arespond(self, steps: Steps[HttpResponse]) -> HttpResponse:
        try:
            return await self.arun(steps)
        except ATHError as error:
            return error.to_response()
        except StorageError as exc:
            return internal(exc).to_response()

    def run(self, steps: Steps[T]) -> T:
        try:
            need = next(steps)
            while True:
                try:
                    answer = self._answer(need)
                except StorageUnavailable as exc:
                    raise unavailable(exc) from exc
                except (StorageError, FetchError, UpstreamFailure) as exc:
                    need = steps.throw(exc)
                    continue
                need = steps.send(answer)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def arun(self, steps: Steps[T]) -> T:
        try:
            need = next(steps)
            while True:
                try:
                    answer = await self._aanswer(need)
                except StorageUnavailable as exc:
                    raise unavailable(exc) from exc
                except (StorageError, FetchError, UpstreamFailure) as exc:
                    need = steps.throw(exc)
                    continue
                need = steps.send(answer)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def _answer(self, need: Op) -> object:
        if type(need) is StoreOp:
            return getattr(self.store, need.op)(*need.args)
        if isinstance(need, FetchOp):
            return self.fetcher.get(need.url)
        if isinstance(need, ExchangeOp):
            if self.upstream is None:
                raise UpstreamFailure("no upstream OAuth client is configured")
            return self.upstream.exchange(need)
        raise TypeError(f"unknown ATH step {need!r}")

    async def _aanswer(self, need: Op) -> object:
        if type(need) is StoreOp:
            return await getattr(self.async_store, need.op)(*need.args)
        if isinstance(need, FetchOp):
            return await self.async_fetcher.get(need.url)
        if isinstance(need, ExchangeOp):
            if self.upstream is None:
                raise UpstreamFailure("no upstream OAuth client is configured")
            return await self.upstream.aexchange(need)
        raise TypeError(f"unknown ATH step {need!r}")
