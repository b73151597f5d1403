"""A resource acting as an agent downstream: call chaining (digest 9) and interaction
chaining (digest 6.5).

An intermediary serves a request that carried a person or auth token (the *upstream token*)
and, to answer it, calls another resource as an agent.  :class:`Intermediary` gives a
resource what that takes:

* it is its **own agent provider**: ``/.well-known/aauth-agent.json`` on its origin with
  ``issuer`` = its resource issuer and its own JWKS (:meth:`Intermediary.handle` serves both),
  and it signs downstream requests with a self-issued agent token (``iss`` = its resource
  id, ``sub`` = ``aauth:<local>@<its host>``, ``cnf`` = its agent key);
* it asks for person and auth tokens with ``upstream_token`` at the PS the upstream token
  names (a person token's ``iss``, an auth token's ``ps``), never at a PS of its own, and
  sends no ``mission_s256`` (the PS copies the upstream's);
* **interaction chaining**: when the downstream PS or resource answers ``202
  requirement=interaction``, the intermediary answers the original request with its own
  ``202 requirement=interaction``, its own ``code`` and its own ``Location``; its interaction
  page (:attr:`interaction_path`) sends the person on to the downstream ``url`` with the
  downstream ``code``; a background thread keeps following the downstream request and, when
  the token arrives, completes the original request, whose answer the caller then gets at the
  intermediary's pending URL.  A downstream that only asks the caller to wait (``approval``)
  is held for ``hold`` seconds, then answered ``202 requirement=approval`` the same way.

Pending state lives in this process (one intermediary worker, or sticky routing); the
pending URL answers only the caller whose key made the original request (others ``404``) and
``410`` once its answer was delivered.  Every outbound request passes the egress policy.

Usage in a protected endpoint (framework-neutral: ``work`` gets a :class:`ChainedCall`)::

    def summary(request):
        who = identity(request, PersonIdentity)
        return intermediary.run(who, lambda call: answer(call.request("GET", DOWNSTREAM)))
"""

from __future__ import annotations

import heapq
import logging
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from .agent.client import Agent
from .agent.flow import AgentFlow, FlowError, Interaction
from .agent.provider import METADATA_PATH, AgentProvider
from .clock import SYSTEM_CLOCK, Clock
from .errors import Deferred
from .http import HttpRequest, HttpResponse, json_bytes
from .identifiers import is_server_identifier, normalize_interaction_code
from .keys.egress import EgressDenied, EgressPolicy
from .keys.jwk import PrivateKey
from .resource.identity import PersonIdentity
from .resource.sessions import new_code
from .revocation import problem
from .tokens.aauth import TYP_PERSON

log = logging.getLogger("aauth_server.intermediary")

INTERACTION_PATH = "/aauth/chain/interact"
PENDING_PREFIX = "/aauth/chain/pending/"
#: Polling errors a downstream PS may end with, relayed to the caller as they are.
_RELAYED = frozenset({"denied", "abandoned", "revoked", "expired"})


@dataclass
class _Pending:
    """One original request the intermediary answered ``202`` and will complete."""

    id: str
    jkt: str
    expires_at: float
    requirement: str
    code: str | None = None
    downstream: Interaction | None = None
    status: str = "pending"
    response: HttpResponse | None = None
    delivered: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    pruned: bool = False  # expired and dropped from the pending table


class ChainedCall:
    """What a protected endpoint's ``work`` uses to call downstream as the intermediary."""

    def __init__(self, flow: AgentFlow) -> None:
        self.flow = flow

    def request(
        self, method: str, url: str, *, json_body: Mapping[str, Any] | None = None
    ) -> httpx.Response:
        """Call a downstream resource, satisfying its requirements with ``upstream_token``."""
        return self.flow.request(method, url, json_body=json_body)


class _ChainedFlow(AgentFlow):
    """An intermediary's flow: every interaction is chained back to the caller (digest 6.5),
    never relayed to a PS of its own (it has none)."""

    def direct(self, interaction: Interaction) -> None:
        self.interact(interaction)


class Intermediary:
    def __init__(
        self,
        issuer: str,
        *,
        provider_key: PrivateKey | None = None,
        agent_key: PrivateKey | None = None,
        local: str = "intermediary",
        dev_loopback: bool = False,
        clock: Clock = SYSTEM_CLOCK,
        client: httpx.Client | None = None,
        interaction_path: str = INTERACTION_PATH,
        pending_prefix: str = PENDING_PREFIX,
        hold: float = 20.0,
        pending_lifetime: int = 600,
        poll_interval: int = 1,
        wait: int | None = 10,
        agent_token_lifetime: int = 3600,
    ) -> None:
        if not is_server_identifier(issuer, dev_loopback=dev_loopback):
            raise ValueError(f"{issuer!r} is not a server identifier")
        self.issuer = issuer
        self.provider = AgentProvider(
            issuer,
            provider_key or PrivateKey.generate("Ed25519", kid="intermediary-ap-1"),
            clock=clock,
            dev_loopback=dev_loopback,
        )
        self.agent_key = agent_key or PrivateKey.generate("Ed25519")
        self.agent_id = self.provider.agent_id(local)
        self.local = local
        self.dev_loopback = dev_loopback
        self.clock = clock
        self.egress = EgressPolicy(dev_loopback=dev_loopback, timeout=30.0)
        self.client = client or httpx.Client(
            timeout=40, trust_env=False, event_hooks={"request": [self._admit]}
        )
        self._owns_client = client is None
        self.interaction_path = interaction_path
        self.pending_prefix = pending_prefix
        self.hold = hold
        self.pending_lifetime = pending_lifetime
        self.poll_interval = poll_interval
        self.wait = wait
        self.agent_token_lifetime = agent_token_lifetime
        self.jwks_path = str(self.provider.metadata()["jwks_uri"])[len(issuer) :]
        self._pending: dict[str, _Pending] = {}
        self._codes: dict[str, str] = {}
        #: ``(expires_at, id)`` of each entry in ``_pending``, soonest first: what ``_prune``
        #: drops, without a scan of every entry (and code) on each new pending request.
        self._expiry: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def _admit(self, request: httpx.Request) -> None:
        self.egress.admit(str(request.url))  # EgressDenied aborts the send

    # -- its own agent provider --------------------------------------------------------------

    def agent_token(self) -> str:
        """A self-issued agent token for the intermediary's agent key (no ``ps``: it asks
        the PS each upstream token names)."""
        return self.provider.issue(
            self.agent_key.public, self.local, lifetime=self.agent_token_lifetime
        )

    def agent(self) -> Agent:
        return Agent(self.agent_key, self.agent_token(), self.agent_id)

    def routes(self) -> list[tuple[str, str]]:
        """``(method, path)`` pairs :meth:`handle` answers (a path ending in ``/`` is a
        prefix).  The pending URL is *not* here: serve it from an endpoint protected like
        the original one, and call :meth:`poll` with the verified identity."""
        return [
            ("GET", METADATA_PATH),
            ("GET", self.jwks_path),
            ("GET", self.interaction_path),
        ]

    def handle(self, request: HttpRequest) -> HttpResponse | None:
        """The agent-provider documents and the interaction page; None for other paths."""
        if request.method == "GET" and request.path == self.interaction_path:
            return self._interaction_page(request)
        if request.method == "GET" and request.path in (METADATA_PATH, self.jwks_path):
            return self.provider.handle(request)
        return None

    # -- serving a chained request -----------------------------------------------------------

    def flow_for(
        self, upstream: PersonIdentity, interact: Callable[[Interaction], None]
    ) -> AgentFlow:
        """A flow that signs as the intermediary and sends ``upstream``'s token as
        ``upstream_token`` to the PS it names."""
        ps = upstream.issuer if upstream.typ == TYP_PERSON else upstream.ps
        return _ChainedFlow(
            self.agent(),
            self.client,
            interact=interact,
            ps=ps,
            capabilities=("interaction",),
            upstream_token=upstream.token,
            wait=self.wait,
            clock=self.clock,
        )

    def run(
        self, upstream: PersonIdentity, work: Callable[[ChainedCall], HttpResponse]
    ) -> HttpResponse:
        """Answer the original request: ``work``'s response when the downstream calls finish
        within the hold, else a ``202`` the caller polls at :meth:`poll`."""
        entry = _Pending(
            id=secrets.token_urlsafe(24),
            jkt=upstream.jkt,
            expires_at=self.clock.now() + self.pending_lifetime,
            requirement="approval",
        )
        asked = threading.Event()

        def interact(interaction: Interaction) -> None:
            with self._lock:
                if entry.code is not None:
                    # A second downstream interaction: the caller's person follows the
                    # intermediary's page again, which now leads to the new one.
                    entry.downstream = interaction
                    entry.status = "pending"
                    asked.set()
                    return
                entry.requirement = "interaction"
                entry.downstream = interaction
                entry.code = new_code()
                if not entry.pruned:  # else its code could only lead to a 410
                    self._codes[normalize_interaction_code(entry.code)] = entry.id
            asked.set()

        def chain() -> None:
            flow = self.flow_for(upstream, interact)
            try:
                answer = work(ChainedCall(flow))
            except FlowError as exc:
                answer = _failure(exc)
            except EgressDenied as exc:
                answer = problem(500, "server_error", f"egress refused: {exc}").to_response()
            except Exception:  # the pending caller must get an answer, whatever failed
                log.exception("chained request failed")
                answer = problem(500, "server_error", "the chained request failed").to_response()
            with self._lock:
                entry.response = answer
            entry.done.set()
            asked.set()

        threading.Thread(target=chain, name=f"chain-{entry.id[:8]}", daemon=True).start()
        asked.wait(self.hold)  # set by the first interaction or by the end of the work
        with self._lock:
            if entry.response is not None and entry.code is None:
                return entry.response  # finished within the hold: no pending URL needed
            self._pending[entry.id] = entry
            heapq.heappush(self._expiry, (entry.expires_at, entry.id))
            self._prune()
            return self._deferred(entry).to_response()

    def poll(self, pending_id: str, caller: PersonIdentity) -> HttpResponse:
        """The pending URL, polled by the original caller (the same key) with a signed GET."""
        with self._lock:
            entry = self._pending.get(pending_id)
            if entry is None or entry.jkt != caller.jkt or entry.expires_at <= self.clock.now():
                return problem(404, "not_found", "no such pending request").to_response()
            if entry.delivered:
                return problem(410, "gone", "this pending request is finished").to_response()
            if entry.response is None:
                return self._deferred(entry).to_response()
            entry.delivered = True
            return entry.response

    def pending_url(self, pending_id: str) -> str:
        return f"{self.issuer}{self.pending_prefix}{pending_id}"

    def _deferred(self, entry: _Pending) -> Deferred:
        params = {}
        requirement: str | None = entry.requirement
        if entry.code is not None:
            if entry.status == "interacting":
                requirement = None  # the person is at it: no need to prompt again
            else:
                params = {"url": self.issuer + self.interaction_path, "code": entry.code}
        return Deferred(
            self.pending_url(entry.id),
            requirement=requirement,
            params=params,
            retry_after=self.poll_interval,
            body_status=entry.status,
        )

    def _prune(self) -> None:
        """Drop the expired entries and their codes (with the lock held)."""
        now = self.clock.now()
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            _, pending_id = heapq.heappop(expiry)
            entry = self._pending.pop(pending_id, None)
            if entry is None:
                continue
            entry.pruned = True
            if entry.code is not None:
                code = normalize_interaction_code(entry.code)
                if self._codes.get(code) == pending_id:
                    del self._codes[code]

    # -- the interaction page ------------------------------------------------------------------

    def _interaction_page(self, request: HttpRequest) -> HttpResponse:
        """Send the person on to the downstream interaction (digest 6.5); the code is used
        once (later: ``410 invalid_code``)."""
        query = parse_qs(urlsplit(request.url).query)
        codes = query.get("code", [])
        try:
            code = normalize_interaction_code(codes[0]) if len(codes) == 1 else ""
        except ValueError:
            code = ""
        with self._lock:
            pending_id = self._codes.get(code)
            entry = None if pending_id is None else self._pending.get(pending_id)
            if entry is None or entry.downstream is None or entry.status == "interacting":
                return _page(410, "This interaction code is unknown or was already used.")
            entry.status = "interacting"
            downstream = entry.downstream
        if not _interaction_url_ok(downstream.url, self.dev_loopback):
            return _page(502, "The downstream service gave an interaction address we refuse.")
        target = f"{downstream.url}?{urlencode({'code': downstream.code})}"
        return HttpResponse(303, [("Location", target), ("Cache-Control", "no-store")], b"")


def _interaction_url_ok(url: str, dev_loopback: bool) -> bool:
    """``https``, no query or fragment (digest 4.1); loopback ``http`` only in development."""
    parts = urlsplit(url)
    if parts.query or parts.fragment or not parts.netloc:
        return False
    if parts.scheme == "https":
        return True
    return dev_loopback and parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost")


def _failure(exc: FlowError) -> HttpResponse:
    """The caller's answer when the downstream refused: a downstream ``400``/``403``/``408``
    (the PS's token and polling errors: ``revoked_upstream_token``, ``denied``, ``expired``
    ...) is relayed with its code; anything else is our ``500 server_error``."""
    response, code = exc.response, exc.error
    if response is not None and code is not None and response.status_code in (400, 403, 408):
        return problem(response.status_code, code, str(exc)).to_response()
    return problem(500, "server_error", f"the downstream request failed: {exc}").to_response()


def _page(status: int, text: str) -> HttpResponse:
    body = f"<!doctype html><title>Interaction</title><p>{text}</p>".encode()
    return HttpResponse(
        status,
        [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")],
        body,
    )


def json_response(payload: Any, status: int = 200) -> HttpResponse:
    """A JSON answer for ``work`` to return."""
    return HttpResponse(status, [("Content-Type", "application/json")], json_bytes(payload))


__all__ = [
    "INTERACTION_PATH",
    "PENDING_PREFIX",
    "ChainedCall",
    "Intermediary",
    "json_response",
]
