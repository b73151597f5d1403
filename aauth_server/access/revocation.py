"""The Access Server's revocation endpoint and its cascade (digest 5.7).

A Person Server revokes a person token it presented here; the AS records it (keyed
``(verified caller, jti)``), then revokes every auth token it issued against that token
(``issued_tokens.presented_iss``/``presented_jti``, and the tokens chained from those) at
their resources, through the shared cascade (:mod:`aauth_server.cascade`).  It answers
``200`` once every resource's revocation is terminal, with
``{"downstream": [{"recipient": ..., "error": ...}]}`` (an entry without ``error``: revoked),
or ``202`` and a pending URL the same PS polls with signed ``GET`` (anyone else: ``404``).
Nothing downstream (a resource revoking a resource token, a person token nothing was issued
against): ``200`` at once with an empty body.

Settings read from the AS's configuration when it has them: ``revocation_hold`` (seconds;
None = one round trip per downstream resource, at most 20 s), ``revocation_attempts`` (8),
``revocations_per_minute`` (600).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..cascade import (
    CascadeAnswer,
    CascadeWorker,
    Target,
    closure_steps,
    revocation_recorder,
)
from ..http import HttpRequest, HttpResponse
from ..keys.egress import EgressPolicy
from ..outbound import OutboundClient, ServerSigner
from ..revocation import RateLimit, revocation_steps
from ..revocation_client import RevocationClient
from ..steps import Steps
from ..tokens.aauth import DWK_ACCESS, DWK_PERSON, DWK_RESOURCE

if TYPE_CHECKING:
    from .server import AccessServer

#: Where a cascade's pending URLs live, under the revocation endpoint.
PENDING_SUFFIX = "/pending/"


class AccessRevocation:
    """Built once per :class:`~aauth_server.access.AccessServer` (:func:`revocation_for`)."""

    def __init__(self, server: AccessServer) -> None:
        self.server = server
        cfg = server.config
        signer = ServerSigner(cfg.signing_key, cfg.issuer, DWK_ACCESS, clock=cfg.clock)
        self.outbound = OutboundClient(signer, EgressPolicy(dev_loopback=cfg.dev_loopback))
        self.worker = CascadeWorker(
            records=server.records,
            ops=server.rec,
            clock=cfg.clock,
            issuer=cfg.issuer,
            metadata=server.discovery.metadata,
            client=RevocationClient(self.outbound, now=cfg.clock.now),
            attempts=int(getattr(cfg, "revocation_attempts", 8)),
        )
        self.answer = CascadeAnswer(
            self.worker,
            verifier=server.server_verifier,
            location=lambda pending_id: cfg.url_for(
                cfg.revocation_path + PENDING_SUFFIX + pending_id
            ),
            hold=getattr(cfg, "revocation_hold", None),
            report_downstream=True,  # AS -> PS: the outcome per resource
        )
        # One count per caller (shared across workers through the pending store).
        self.rate_limit = RateLimit(cfg.revocations_per_minute)
        self.worker.resume()

    def close(self) -> None:
        self.worker.stop()
        self.outbound.close()

    def handle_steps(self, request: HttpRequest) -> Steps[HttpResponse | None]:
        cfg = self.server.config
        path = request.path
        if path == cfg.revocation_path and request.method == "POST":
            return (yield from self.revoke_steps(request))
        prefix = cfg.revocation_path + PENDING_SUFFIX
        if path.startswith(prefix) and request.method == "GET":
            return (yield from self.answer.poll_steps(request, path[len(prefix) :]))
        return None

    def revoke_steps(self, request: HttpRequest) -> Steps[HttpResponse]:
        server = self.server
        cfg = server.config

        def accepts(caller: str, dwk: object) -> bool:
            # A PS revokes the person tokens it presented here; a resource the resource
            # tokens it issued for us.
            return (dwk == DWK_PERSON and cfg.trusts(caller)) or dwk == DWK_RESOURCE

        caller, dwk, jti = yield from revocation_steps(
            request,
            server.server_verifier,
            accepts=accepts,
            rate_limit=self.rate_limit,
            clock=cfg.clock,
            record=revocation_recorder(server.records, server.rec),
        )
        targets: list[Target] = []
        if dwk == DWK_PERSON:
            # Every auth token issued against it (and chained from those): revoked here
            # too, and at their resources.  Already revoked ones are queued again, so a
            # repeat re-attempts what failed.
            now = cfg.clock.now()
            tokens = yield from closure_steps(server.records, server.rec, [(caller, jti)], now=now)
            if tokens:
                targets = yield from self.worker.queue_steps(tokens, source="presented_revoked")
        return (yield from self.answer.answer_steps(request, caller, targets))


def revocation_for(server: AccessServer) -> AccessRevocation:
    """The server's :class:`AccessRevocation`, built on first use."""
    found: Any = server.__dict__.get("_revocation")
    if found is None:
        found = server.__dict__.setdefault("_revocation", AccessRevocation(server))
    return found  # type: ignore[no-any-return]


__all__ = ["PENDING_SUFFIX", "AccessRevocation", "revocation_for"]
