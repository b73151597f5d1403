"""The Person Server core: framework-neutral, sync and async (issue 4 items 2-4 and 6).

Adapters route :meth:`PersonServer.routes` to :meth:`PersonServer.handle` (sync) or
:meth:`PersonServer.ahandle` (async); the consent pages call :attr:`PersonServer.consent`
and :attr:`PersonServer.presence`.  As on the resource side, the protocol logic is
written once as generators (:mod:`aauth_server.steps`) and driven either way.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from ..http import HttpRequest, HttpResponse
from ..resource.config import discovery_for
from ..resource.state import REVOCATION_GRACE, ResourceState, digest_id
from ..revocation import problem, server_verifier
from ..steps import Driver, Steps, StoreOp
from ..storage.base import RecordExists
from ..tokens.aauth import TYP_AGENT
from ..verifier import RequestVerifier, VerifiedRequest, VerifierConfig
from .config import WELL_KNOWN_PATH, PersonServerConfig
from .consent import Consent
from .endpoints import TokenEndpoints
from .missions import Missions
from .pending import PendingRequests
from .questions import AgentQuestions
from .subjects import Presence, directed_sub
from .tokens import KIND_SEEN, ParamTokens

T = TypeVar("T")
log = logging.getLogger("aauth_server.person")
# Agent tokens whose KIND_SEEN record this worker has stored; cleared whole when full.
_REMEMBERED_MAX = 4096


class PersonServer:
    def __init__(self, config: PersonServerConfig) -> None:
        self.config = config
        discovery = discovery_for(config)
        self.discovery = discovery
        self.store, self.async_store = config.stores()
        # Revocations are keyed (iss, jti) in the shared store, as at the resource.
        self.state = ResourceState(self.store, self.async_store)
        self.verifier = RequestVerifier(
            discovery,
            VerifierConfig(
                accept_schemes=("jwt",),
                accept_algs=config.accept_algs,
                # Only the agent token signs at a PS (digest 5); a person or auth token in
                # Signature-Key is refused as invalid_jwt by its typ.
                token_types=(TYP_AGENT,),
                window=config.signature_window,
                require_body_coverage=True,
                allow_eddsa=config.allow_eddsa,
                dev_loopback=config.dev_loopback,
                revocable_types=(TYP_AGENT,),
            ),
            clock=config.clock,
            state=self.state,
        )
        #: The agent-token verifier under the name the interaction relay uses.
        self.agent_verifier = self.verifier
        self.server_verifier = server_verifier(discovery, self.verifier.config, config.clock)
        self.driver = Driver(
            self.verifier, self.store, self.async_store, subject="the person server"
        )
        self._remembered: dict[tuple[str, str], float] = {}
        self._subs: dict[tuple[str, str], str] = {}
        self.params = ParamTokens(self)
        self.missions = Missions(self)
        self.pending = PendingRequests(self)
        self.endpoints = TokenEndpoints(self)
        self.questions = AgentQuestions(self)
        self.consent = Consent(self)
        self.presence = Presence(self)
        from .relay import InteractionRelay  # the relay builds on the PS it serves

        self.relay = InteractionRelay(self)

    # -- drivers ------------------------------------------------------------------------------

    def run(self, steps: Steps[T]) -> T:
        return self.driver.run(steps)

    async def arun(self, steps: Steps[T]) -> T:
        return await self.driver.arun(steps)

    def handle(self, request: HttpRequest) -> HttpResponse | None:
        """Answer a request to one of the PS endpoints; None when the path is not ours."""
        return self.driver.respond(self.handle_steps(request))

    async def ahandle(self, request: HttpRequest) -> HttpResponse | None:
        return await self.driver.arespond(self.handle_steps(request))

    def handle_steps(self, request: HttpRequest) -> Steps[HttpResponse | None]:
        cfg = self.config
        path, method = request.path, request.method
        if path == WELL_KNOWN_PATH and method in ("GET", "HEAD"):
            return HttpResponse.json(
                200, self.metadata(), headers=[("Cache-Control", "public, max-age=3600")]
            )
        if path == cfg.jwks_path and method == "GET":
            return HttpResponse.json(200, {"keys": [cfg.signing_key.public_jwk()]})
        if path == cfg.person_token_path and method == "POST":
            return (yield from self.endpoints.person_token_steps(request))
        if path == cfg.auth_token_path and method == "POST":
            return (yield from self.endpoints.auth_token_steps(request))
        if path == cfg.revocation_path and method == "POST":
            return (yield from self.endpoints.revoke_steps(request))
        if path.startswith(cfg.pending_prefix) and method in ("GET", "POST", "DELETE"):
            pending_id = path[len(cfg.pending_prefix) :]
            return (yield from self.pending.handle_steps(request, pending_id))
        return (yield from self.relay.dispatch_steps(request))

    def routes(self) -> list[tuple[str, str]]:
        """``(method, path)`` pairs to route to :meth:`handle`; a path ending in ``/`` is a
        prefix.  Includes the interaction endpoint and relay URLs; the consent pages are
        served by :class:`~aauth_server.person.pages.ConsentPages`."""
        cfg = self.config
        prefix = cfg.pending_prefix
        return [
            ("GET", WELL_KNOWN_PATH),
            ("GET", cfg.jwks_path),
            ("POST", cfg.person_token_path),
            ("POST", cfg.auth_token_path),
            ("POST", cfg.revocation_path),
            ("GET", prefix),
            ("POST", prefix),
            ("DELETE", prefix),
            *self.relay.routes(),
        ]

    def metadata(self) -> dict[str, Any]:
        cfg = self.config
        doc: dict[str, Any] = {
            "issuer": cfg.issuer,
            "jwks_uri": cfg.url_for(cfg.jwks_path),
            "person_token_endpoint": cfg.url_for(cfg.person_token_path),
            "auth_token_endpoint": cfg.url_for(cfg.auth_token_path),
            "interaction_endpoint": cfg.url_for(cfg.interaction_path),
            "revocation_endpoint": cfg.url_for(cfg.revocation_path),
            "scopes_supported": list(cfg.scopes_supported),
            "claims_supported": list(cfg.claims_supported),
            "accept_signature_algs": list(cfg.accept_algs),
        }
        for key in ("name", "description"):
            value = getattr(cfg, key)
            if value:
                doc[key] = value
        return doc

    # -- shared by the endpoints ----------------------------------------------------------------

    def directed_sub(self, person: str, resource: str) -> str:
        # One HMAC per (person, resource) while the pair stays in this bounded table.
        pair = (person, resource)
        sub = self._subs.get(pair)
        if sub is None:
            sub = directed_sub(self.config.subject_secret, person, resource)
            if len(self._subs) >= _REMEMBERED_MAX:
                self._subs.clear()
            self._subs[pair] = sub
        return sub

    def verify_agent_steps(
        self, request: HttpRequest, *, token_request: bool = False
    ) -> Steps[VerifiedRequest]:
        verified = yield from self.verifier.steps(request)
        if token_request and "parent_agent" in verified.claims:
            raise problem(400, "invalid_request", "a PS refuses token requests from sub-agents")
        return verified

    def remember_agent_steps(self, verified: VerifiedRequest) -> Steps[None]:
        """Record which agent an agent-token ``jti`` names, for a later revocation's cascade."""
        claims = verified.claims
        now = self.config.clock.now()
        # An agent sends many requests with one agent token: after the first, this worker
        # knows the record is stored until then and skips the create that would fail (and
        # the digest that names it).
        token = (str(claims["iss"]), str(claims["jti"]))
        if self._remembered.get(token, 0.0) > now:
            return
        until = float(str(claims["exp"])) + REVOCATION_GRACE
        seen_id = digest_id(*token)
        try:
            yield StoreOp("create", (KIND_SEEN, seen_id, {"sub": claims["sub"]}, until - now))
        except RecordExists:
            pass
        if len(self._remembered) >= _REMEMBERED_MAX:
            self._remembered.clear()
        self._remembered[token] = until


__all__ = ["PersonServer"]
