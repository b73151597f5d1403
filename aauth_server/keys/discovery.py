"""Metadata and JWKS discovery with a bounded, rate-limited cache (digest §1.3, §2.8).

The cache policy is written once, as generators ("plans") that yield each URL they need and
receive the fetch outcome back; :meth:`KeyDiscovery._run` drives a plan with the sync fetcher
and :meth:`KeyDiscovery._arun` with the async one.  Resolved keys also land in a flat
``(issuer, dwk, kid)`` table so the per-request hit is one dict lookup and one comparison.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import TypeVar, cast
from urllib.parse import urlsplit

import anyio

from .. import safejson
from ..clock import SYSTEM_CLOCK, Clock
from ..errors import SignatureFailure
from ..identifiers import is_server_identifier
from .egress import EgressDenied, EgressPolicy
from .fetcher import (
    AsyncFetcher,
    AsyncHttpxFetcher,
    Fetcher,
    FetchError,
    FetchResponse,
    HttpxFetcher,
)
from .jwk import SUPPORTED_ALGS, PublicKey

T = TypeVar("T")
FetchResult = FetchResponse | FetchError
Plan = Generator[str, FetchResult, T]
Document = Mapping[str, object]

DEFAULT_LIFETIME = 3600.0
#: Nesting a metadata document or JWKS may have (a JWKS is three levels deep).
MAX_DOCUMENT_DEPTH = 16

log = logging.getLogger("aauth_server.keys")

# dwk is attacker-supplied and spliced into a path: one plain segment only.
_DWK = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _invalid(detail: str) -> SignatureFailure:
    return SignatureFailure("invalid_key", detail)


@dataclass(slots=True)
class _Entry:
    doc: Document | None  # None: nothing usable, only a failure to remember
    fresh_until: float
    discard_at: float
    retry_at: float  # no fetch of this URL before then (min_interval and backoff)
    failures: int = 0
    error: str = ""
    index: dict[str, list[Mapping[str, object]]] | None = None  # JWKS by kid, built lazily


class _Flight:
    """One in-progress async fetch that concurrent callers of the same URL wait on."""

    __slots__ = ("done", "result")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.result: FetchResult = FetchError("fetch abandoned")


class KeyDiscovery:
    def __init__(
        self,
        fetcher: Fetcher | None = None,
        async_fetcher: AsyncFetcher | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        max_entries: int = 1024,
        max_age: float = 86400,
        min_interval: float = 60,
        backoff_base: float = 1,
        backoff_max: float = 300,
        accept_algs: Sequence[str] = SUPPORTED_ALGS,
        allow_eddsa: bool = False,
        dev_loopback: bool = False,
        allow_cross_origin_jwks: bool = False,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self._fetcher = fetcher
        self._async_fetcher = async_fetcher
        self._clock = clock
        self.max_entries = max_entries
        self.max_age = max_age
        self.min_interval = min_interval
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.accept_algs = tuple(accept_algs)
        self.allow_eddsa = allow_eddsa
        self.dev_loopback = dev_loopback
        #: Admit a metadata ``jwks_uri`` on another origin than the issuer (digest 2.8:
        #: cross-origin ``jwks_uri`` needs explicit admission).  Off by default.
        self.allow_cross_origin_jwks = allow_cross_origin_jwks
        self._docs: dict[str, _Entry] = {}
        self._hot: dict[tuple[str, str, str], tuple[PublicKey, float]] = {}
        self._flights: dict[str, _Flight] = {}
        self._lock = threading.Lock()

    # -- public API ---------------------------------------------------------------------------

    def metadata(self, issuer: str, dwk: str) -> Document:
        return self._run(self._metadata_plan(issuer, dwk))[0]

    async def ametadata(self, issuer: str, dwk: str) -> Document:
        return (await self._arun(self._metadata_plan(issuer, dwk)))[0]

    def hot_key(self, issuer: str, dwk: str, kid: str) -> PublicKey | None:
        """What :meth:`key` answers when it can answer at once (the key found and fresh in
        this cache); None when it would need to look further (and perhaps fetch)."""
        hit = self._hot.get((issuer, dwk, kid))
        if hit is not None and self._clock.now() < hit[1]:
            return hit[0]
        return None

    def key(self, issuer: str, dwk: str, kid: str) -> PublicKey:
        hit = self.hot_key(issuer, dwk, kid)
        if hit is not None:
            return hit
        return self._run(self._key_plan(issuer, dwk, kid))

    async def akey(self, issuer: str, dwk: str, kid: str) -> PublicKey:
        hit = self.hot_key(issuer, dwk, kid)
        if hit is not None:
            return hit
        return await self._arun(self._key_plan(issuer, dwk, kid))

    def jwks_key(self, url: str, kid: str) -> PublicKey:
        hit = self._hot.get(("", url, kid))
        if hit is not None and self._clock.now() < hit[1]:
            return hit[0]
        return self._run(self._jwks_plan(url, kid))

    async def ajwks_key(self, url: str, kid: str) -> PublicKey:
        hit = self._hot.get(("", url, kid))
        if hit is not None and self._clock.now() < hit[1]:
            return hit[0]
        return await self._arun(self._jwks_plan(url, kid))

    def seed(self, metadata_url: str, document: Mapping[str, object]) -> None:
        """Pre-load any cached URL (metadata or JWKS) as if fetched now, fresh for max_age."""
        now = self._clock.now()
        doc = MappingProxyType(dict(document))
        self._store(metadata_url, _Entry(doc, now + self.max_age, now + self.max_age, now))

    # -- plans: the cache policy, independent of sync/async I/O ------------------------------

    def _metadata_plan(self, issuer: str, dwk: str) -> Plan[tuple[Document, _Entry]]:
        if not is_server_identifier(issuer, dev_loopback=self.dev_loopback):
            raise _invalid("issuer is not a server identifier")
        if not _DWK.fullmatch(dwk):
            raise _invalid("dwk is not a plain document name")
        entry = yield from self._load(f"{issuer}/.well-known/{dwk}")
        doc = cast(Document, entry.doc)
        if "issuer" not in doc:
            raise SignatureFailure("issuer_missing", f"{issuer} metadata ({dwk}) has no issuer")
        if doc["issuer"] != issuer:
            raise SignatureFailure("issuer_mismatch", f"{issuer} metadata ({dwk}) names another")
        return doc, entry

    def _key_plan(self, issuer: str, dwk: str, kid: str) -> Plan[PublicKey]:
        doc, meta = yield from self._metadata_plan(issuer, dwk)
        jwks_uri = doc.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not self._fetchable(jwks_uri):
            raise _invalid(f"{issuer} metadata ({dwk}) has no usable jwks_uri")
        if not self.allow_cross_origin_jwks and _origin(jwks_uri) != _origin(issuer):
            raise _invalid(
                f"{issuer} metadata ({dwk}) names a jwks_uri on another origin "
                "(not admitted: allow_cross_origin_jwks)"
            )
        key, jwks = yield from self._select(jwks_uri, kid)
        self._remember((issuer, dwk, kid), key, min(meta.fresh_until, jwks.fresh_until))
        return key

    def _jwks_plan(self, url: str, kid: str) -> Plan[PublicKey]:
        if not self._fetchable(url):
            raise _invalid("jwks url is not an https URL")
        key, jwks = yield from self._select(url, kid)
        self._remember(("", url, kid), key, jwks.fresh_until)
        return key

    def _select(self, url: str, kid: str) -> Plan[tuple[PublicKey, _Entry]]:
        entry = yield from self._load(url)
        members = self._index(entry, url).get(kid)
        if members is None and self._clock.now() >= entry.retry_at:
            entry = yield from self._load(url, force=True)
            members = self._index(entry, url).get(kid)
        if members is None:
            raise SignatureFailure("unknown_key", f"no key {kid!r} in {url}")
        if len(members) > 1:
            raise _invalid(f"{url} lists kid {kid!r} more than once")
        try:
            key = PublicKey.from_jwk(
                members[0], accept_algs=self.accept_algs, allow_eddsa=self.allow_eddsa
            )
        except SignatureFailure:
            raise
        except Exception as exc:  # a member no key parser accepts: the key is unusable
            log.info("key %r in %s is unusable: %r", kid, url, exc)
            raise _invalid(f"key {kid!r} in {url} is not a usable JWK") from exc
        return key, entry

    def _load(self, url: str, *, force: bool = False) -> Plan[_Entry]:
        now = self._clock.now()
        entry = self._docs.get(url)
        if entry is not None:
            usable = entry.doc is not None and now < entry.discard_at
            if usable and not force and now < entry.fresh_until:
                return entry
            if now < entry.retry_at:
                return self._settled(entry, url)
        result = yield url
        current = self._docs.get(url)
        if current is not None and current is not entry:
            # A concurrent caller fetched this URL meanwhile and recorded the outcome.
            return self._settled(current, url)
        now = self._clock.now()
        try:
            doc, lifetime = self._parse(result, now)
        except FetchError as exc:
            return self._failed(url, entry, exc.reason, now, getattr(exc, "log_detail", None))
        except Exception as exc:  # whatever the document does to a parser, never a 500
            log.warning("key document %s could not be read: %r", url, exc)
            return self._failed(url, entry, "the document could not be read", now)
        fresh = _Entry(doc, now + lifetime, now + self.max_age, now + self.min_interval)
        self._store(url, fresh)
        return fresh

    def _settled(self, entry: _Entry, url: str) -> _Entry:
        if entry.doc is not None and self._clock.now() < entry.discard_at:
            return entry
        raise _invalid(f"{url}: {entry.error} (not retried until backoff ends)")

    def _failed(
        self,
        url: str,
        entry: _Entry | None,
        reason: str,
        now: float,
        log_detail: str | None = None,
    ) -> _Entry:
        # The full reason (which may name DNS answers or addresses) is for the log only.
        log.info("fetching %s failed: %s", url, log_detail or reason)
        reason = public_reason(reason)
        failures = (entry.failures if entry is not None else 0) + 1
        delay = min(self.backoff_max, self.backoff_base * 2 ** (failures - 1))
        retry_at = now + max(self.min_interval, delay)
        if entry is not None and entry.doc is not None and now < entry.discard_at:
            kept = _Entry(
                entry.doc, entry.fresh_until, entry.discard_at, retry_at, failures, reason
            )
            kept.index = entry.index
            self._store(url, kept)
            return kept
        self._store(url, _Entry(None, now, now, retry_at, failures, reason))
        raise _invalid(f"{url}: {reason}")

    def _parse(self, result: FetchResult, now: float) -> tuple[Document, float]:
        if isinstance(result, FetchError):
            raise result
        if result.status != 200:
            raise FetchError(f"HTTP status {result.status}")
        try:
            doc = safejson.loads(result.body, max_depth=MAX_DOCUMENT_DEPTH)
        except ValueError as exc:  # includes UnicodeDecodeError and too deep a nesting
            raise FetchError("response is not JSON") from exc
        if not isinstance(doc, dict):
            raise FetchError("response is not a JSON object")
        return MappingProxyType(doc), self._lifetime(result.headers, now)

    def _lifetime(self, headers: Mapping[str, str], now: float) -> float:
        directives: dict[str, str] = {}
        for part in headers.get("cache-control", "").split(","):
            name, _, value = part.strip().partition("=")
            directives[name.strip().lower()] = value.strip().strip('"')
        lifetime: float = DEFAULT_LIFETIME
        if "no-store" in directives or "no-cache" in directives:
            lifetime = 0
        elif "max-age" in directives:
            value = directives["max-age"]
            # Any number of digits is a valid delta-seconds: past ours it is just "long".
            if not value.isdigit() or not value.isascii():
                lifetime = 0
            else:
                lifetime = self.max_age if len(value) > 9 else int(value)
        elif "expires" in headers:
            lifetime = _expires_lifetime(headers, now)
        return max(0.0, min(lifetime, self.max_age))

    def _index(self, entry: _Entry, url: str) -> dict[str, list[Mapping[str, object]]]:
        if entry.index is None:
            keys = cast(Document, entry.doc).get("keys")
            if not isinstance(keys, list):
                raise _invalid(f"{url} is not a JWKS (no keys array)")
            index: dict[str, list[Mapping[str, object]]] = {}
            for member in keys:
                # Members we cannot read are skipped: only the selected one must be usable.
                if isinstance(member, Mapping) and isinstance(member.get("kid"), str):
                    index.setdefault(member["kid"], []).append(member)
            entry.index = index
        return entry.index

    def _fetchable(self, url: str) -> bool:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return False
        if parts.scheme == "https" and parts.hostname:
            return True
        return (
            self.dev_loopback
            and parts.scheme == "http"
            and parts.hostname in ("127.0.0.1", "localhost")
            and port is not None
        )

    def _remember(self, slot: tuple[str, str, str], key: PublicKey, until: float) -> None:
        if self._clock.now() < until:
            with self._lock:
                _bounded_put(self._hot, slot, (key, until), self.max_entries)

    def _store(self, url: str, entry: _Entry) -> None:
        with self._lock:
            _bounded_put(self._docs, url, entry, self.max_entries)

    # -- drivers ----------------------------------------------------------------------------------

    def _run(self, plan: Plan[T]) -> T:
        try:
            url = next(plan)
            while True:
                url = plan.send(self._fetch(url))
        except StopIteration as done:
            return cast(T, done.value)

    async def _arun(self, plan: Plan[T]) -> T:
        try:
            url = next(plan)
            while True:
                url = plan.send(await self._afetch(url))
        except StopIteration as done:
            return cast(T, done.value)

    def _fetch(self, url: str) -> FetchResult:
        if self._fetcher is None:
            self._fetcher = HttpxFetcher(EgressPolicy(dev_loopback=self.dev_loopback))
        try:
            return self._fetcher.get(url)
        except FetchError as exc:
            return exc
        except EgressDenied as exc:
            return FetchError("egress refused", f"egress refused: {exc.reason}")
        except Exception as exc:  # any failure of the fetch is a failed fetch, never a 500
            return FetchError("fetch failed", f"fetch failed: {exc!r}")

    async def _afetch(self, url: str) -> FetchResult:
        flight = self._flights.get(url)
        if flight is not None:
            await flight.done.wait()
            return flight.result
        flight = self._flights[url] = _Flight()
        try:
            flight.result = await self._afetch_once(url)
        finally:
            flight.done.set()
            del self._flights[url]
        return flight.result

    async def _afetch_once(self, url: str) -> FetchResult:
        if self._async_fetcher is None:
            self._async_fetcher = AsyncHttpxFetcher(EgressPolicy(dev_loopback=self.dev_loopback))
        try:
            return await self._async_fetcher.get(url)
        except FetchError as exc:
            return exc
        except EgressDenied as exc:
            return FetchError("egress refused", f"egress refused: {exc.reason}")
        except Exception as exc:  # any failure of the fetch is a failed fetch, never a 500
            return FetchError("fetch failed", f"fetch failed: {exc!r}")


_DEFAULT_PORTS = {"https": 443, "http": 80}


def _origin(url: str) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` of an URL ``_fetchable`` accepted (default port filled in)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)


def _expires_lifetime(headers: Mapping[str, str], now: float) -> float:
    # An unparseable Expires means "already stale" (RFC 9111 §5.3); so does one no clock
    # can hold (a year past 9999 raises OverflowError or ValueError, depending on where).
    try:
        expires = parsedate_to_datetime(headers["expires"]).timestamp()
        base = parsedate_to_datetime(headers["date"]).timestamp() if "date" in headers else now
    except (TypeError, ValueError, IndexError, OverflowError):
        return 0
    return expires - base


#: What a client is told about a failed fetch: never a DNS answer, an address or a
#: transport detail (those go to the log), only the kind of failure.
_SAFE_REASONS = (
    "redirect",
    "too large",
    "timeout",
    "response is not JSON",
    "response is not a JSON object",
    "the document could not be read",
    "stacked content codings are refused",
    "content coding",
    "body does not decode",
    "the URL is not ASCII",
)


def public_reason(reason: str) -> str:
    """The client-facing form of a fetch failure ``reason`` (the full one is logged)."""
    if reason.startswith("egress refused"):
        return "egress refused: the URL is not admitted by the egress policy"
    if reason.startswith("HTTP status "):
        status = reason[len("HTTP status ") :]
        return reason if status.isdigit() else "HTTP status"
    for safe in _SAFE_REASONS:
        if reason.startswith(safe):
            return reason[:200]  # what the document's server did, never where it resolved
    return "the document could not be fetched"


K = TypeVar("K")
V = TypeVar("V")


def _bounded_put(table: dict[K, V], key: K, value: V, limit: int) -> None:
    """Insert as newest; evict the oldest insertions beyond ``limit``."""
    table.pop(key, None)
    while len(table) >= limit:
        del table[next(iter(table))]
    table[key] = value
