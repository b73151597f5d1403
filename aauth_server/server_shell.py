"""What the two authorization servers (Person Server, Access Server) share around their
protocol logic: the settings every one of them checks the same way, and the shell that drives
its steps, answers its well-known metadata and JWKS, and closes its stores.

The protocol logic stays in each server; only the identical parts live here, so a fix to
(say) how a shared store is recognised or how a server closes reaches both at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from .http import HttpRequest, HttpResponse, public_url
from .resource.config import ConfigurationError
from .storage.base import AsyncPendingStore, PendingStore, issuer_prefix
from .storage.uri import open_store_pair

if TYPE_CHECKING:
    from .keys.jwk import PrivateKey
    from .records import RecordOp, RecordStore, Txn
    from .steps import Driver, Steps

T = TypeVar("T")


class ServerSettings:
    """Mixed into a server's config dataclass (which has ``issuer``, ``public_origin``,
    ``store``, ``async_store``, ``store_prefix``, ``clock``, ``records``)."""

    issuer: str
    public_origin: str | None
    store: Any
    async_store: AsyncPendingStore | None
    store_prefix: str | None
    clock: Any
    records: Any

    def check_paths(self, names: Sequence[str], prefixes: Sequence[str]) -> None:
        """Each of ``names`` an absolute path without query; each of ``prefixes`` also ends
        in ``/`` (everything below it is the server's)."""
        for name in names:
            path = getattr(self, name)
            if not path.startswith("/") or "?" in path or "#" in path:
                raise ConfigurationError(f"{name} must be an absolute path without query")
        for name in prefixes:
            value = getattr(self, name)
            if not (value.startswith("/") and value.endswith("/")):
                raise ConfigurationError(f"{name} must start and end with '/'")

    def check_records(self, kept: str) -> None:
        """Records in memory serve one process only: beside a shared store (several workers)
        they would split, so that is refused.  ``kept`` names what the records hold."""
        if self.records is None and self._shared_store():
            raise ConfigurationError(
                f"records in memory beside a shared store: every worker would keep its own "
                f"{kept}; set records to sqlite:///path or postgresql+psycopg://..."
            )
        if isinstance(self.records, str) and not self.records:
            raise ConfigurationError("records must be a database URL")

    def _shared_store(self) -> bool:
        from .storage.memory import MemoryStore

        if self.store is None:
            return False
        if isinstance(self.store, str):
            return not self.store.startswith("memory:")
        return not isinstance(self.store, MemoryStore)

    def open_stores(self, role: str) -> tuple[PendingStore, AsyncPendingStore]:
        """The pending store pair, prefixed ``aauth:<role>:<issuer host[:port]>`` unless
        ``store_prefix`` says otherwise."""
        try:
            prefix = self.store_prefix or issuer_prefix(self.issuer, role)
            return open_store_pair(self.store, self.async_store, clock=self.clock, prefix=prefix)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc

    def url_for(self, path: str) -> str:
        """An absolute URL on the public origin (metadata, ``Location``, pages)."""
        return (self.public_origin or self.issuer).rstrip("/") + path


class ServerShell:
    """Mixed into a server class that sets ``config`` (with ``signing_key``, ``jwks_path``,
    ``issuer``, ``public_origin``, ``max_body``), ``driver``, ``store``, ``async_store`` and
    ``records``, and defines ``WELL_KNOWN``, :meth:`metadata` and :meth:`handle_steps`."""

    WELL_KNOWN: str
    config: Any
    driver: Driver
    store: PendingStore
    async_store: AsyncPendingStore
    records: RecordStore

    # -- drivers --------------------------------------------------------------------------

    def run(self, steps: Steps[T]) -> T:
        return self.driver.run(steps)

    async def arun(self, steps: Steps[T]) -> T:
        return await self.driver.arun(steps)

    def rop(self, txn: Txn[T]) -> RecordOp:
        """A record transaction as a step (``result = yield server.rop(txn)``)."""
        return self.records.op(txn)

    def handle(self, request: HttpRequest) -> HttpResponse | None:
        """Answer a request to one of the server's endpoints; None when the path is not ours."""
        return self.driver.respond(self.handle_steps(request))

    async def ahandle(self, request: HttpRequest) -> HttpResponse | None:
        return await self.driver.arespond(self.handle_steps(request))

    def handle_steps(self, request: HttpRequest) -> Steps[HttpResponse | None]:
        raise NotImplementedError

    # -- what every authorization server answers the same way -----------------------------

    def metadata(self) -> dict[str, Any]:
        raise NotImplementedError

    def published(self, request: HttpRequest) -> HttpResponse | None:
        """The well-known metadata and the JWKS, or None for any other request."""
        path, method = request.path, request.method
        if path == self.WELL_KNOWN and method in ("GET", "HEAD"):
            return HttpResponse.json(
                200, self.metadata(), headers=[("Cache-Control", "public, max-age=3600")]
            )
        if path == self.config.jwks_path and method == "GET":
            key: PrivateKey = self.config.signing_key
            return HttpResponse.json(200, {"keys": [key.public_jwk()]})
        return None

    @property
    def body_limit(self) -> int:
        """Bytes of a body the adapters read at most (``413`` above)."""
        return int(self.config.max_body)

    def public_url(self, scheme: str, host: str | None, target: str) -> str:
        """The URL a request was signed for, as the adapters rebuild it: ``public_origin``
        wins over ``Host`` (``Forwarded`` is never trusted)."""
        cfg = self.config
        return public_url(
            scheme,
            host,
            target,
            public_origin=cfg.public_origin,
            default_host=urlsplit(cfg.issuer).netloc,
        )

    # -- closing ----------------------------------------------------------------------------

    def stop_workers(self) -> None:
        """Stop what the server runs beside its requests (revocation workers, clients)."""

    def close(self) -> None:
        """Stop the workers; close the sync store and the records' sync pool."""
        self.stop_workers()
        try:
            self.store.close()
        finally:
            self.records.close()

    async def aclose(self) -> None:
        """Close the async store and the records' engine of this event loop."""
        try:
            await self.async_store.aclose()
        finally:
            await self.records.aclose()


__all__ = ["ServerSettings", "ServerShell"]
