"""The Person Server core: framework-neutral, sync and async (issue 4 items 2-4 and 6).

Adapters route :meth:`PersonServer.routes` to :meth:`PersonServer.handle` (sync) or
:meth:`PersonServer.ahandle` (async); the consent pages call :attr:`PersonServer.consent`
and :attr:`PersonServer.presence`.  As on the resource side, the protocol logic is
written once as generators (:mod:`aauth_server.steps`) and driven either way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ..errors import SignatureFailure
from ..http import HttpRequest, HttpResponse
from ..keys.egress import EgressPolicy
from ..limits import FieldLimits
from ..missions.endpoint import KINDS as MISSION_KINDS
from ..missions.endpoint import MissionEndpoints
from ..missions.halt import HaltAtResources
from ..missions.model import Mission
from ..missions.registry import Missions
from ..outbound import OutboundClient, ServerSigner
from ..records import RecordOps, RequestFacts
from ..resource.config import discovery_for
from ..resource.state import REVOCATION_GRACE
from ..revocation import problem, server_verifier
from ..revocation_client import RevocationClient
from ..server_shell import ServerShell
from ..steps import Driver, Steps
from ..tokens.aauth import DWK_PERSON, TYP_AGENT
from ..verifier import RequestVerifier, VerifiedRequest, VerifierConfig
from .config import WELL_KNOWN_PATH, PersonServerConfig
from .consent import Consent
from .endpoints import TokenEndpoints
from .pending import PendingRequests
from .questions import AgentQuestions
from .subjects import Bindings, Presence, directed_sub
from .tokens import PairPeek, ParamTokens, RecordRevocations

log = logging.getLogger("aauth_server.person")
# Agent tokens whose KIND_SEEN record this worker has stored; cleared whole when full.
_REMEMBERED_MAX = 4096


class PersonServer(ServerShell):
    WELL_KNOWN = WELL_KNOWN_PATH
    config: PersonServerConfig

    def __init__(self, config: PersonServerConfig) -> None:
        self.config = config
        discovery = discovery_for(config)
        self.discovery = discovery
        self.store, self.async_store = config.stores()
        #: Durable records: missions, their logs, bindings, issued tokens, revocations.
        self.records = config.record_store()
        self.rec = RecordOps(config.issuer)
        # Revocations are keyed (iss, jti) in the records; the replay cache stays in the store.
        self.state = RecordRevocations(self.records, self.rec, self.store, self.async_store)
        base = VerifierConfig(
            accept_schemes=("jwt",),
            accept_algs=config.accept_algs,
            # Only the agent token signs at a PS (digest 5); a person or auth token in
            # Signature-Key is refused as invalid_jwt by its typ.
            token_types=(TYP_AGENT,),
            window=config.signature_window,
            require_body_coverage=True,
            allow_eddsa=config.allow_eddsa,
            dev_loopback=config.dev_loopback,
            # The PS's own endpoints look the agent token's revocation up together with the
            # agent's binding, in one records transaction (agent_steps).
            revocable_types=(),
        )
        self.verifier = RequestVerifier(discovery, base, clock=config.clock, state=self.state)
        #: The agent-token verifier that checks revocation itself (the interaction relay).
        self.agent_verifier = RequestVerifier(
            discovery,
            replace(base, revocable_types=(TYP_AGENT,)),
            clock=config.clock,
            state=self.state,
        )
        self.server_verifier = server_verifier(discovery, self.verifier.config, config.clock)
        self.driver = Driver(
            self.verifier, self.store, self.async_store, subject="the person server"
        )
        self._remembered: dict[tuple[str, str], float] = {}
        self._subs: dict[tuple[str, str], str] = {}
        #: The lengths of agent-supplied fields, for every endpoint of this PS.
        self.limits = FieldLimits.of(config)
        self.params = ParamTokens(self)
        self.bindings = Bindings(self)
        self.missions = Missions(
            records=self.records, ops=self.rec, clock=config.clock, run=self.run, arun=self.arun
        )
        self.pending = PendingRequests(self)
        self.endpoints = TokenEndpoints(self)
        self.questions = AgentQuestions(self)
        self.consent = Consent(self)
        self.presence = Presence(self)
        from .relay import InteractionRelay  # the relay builds on the PS it serves

        self.relay = InteractionRelay(self)
        from .federation import Federation  # four-party: calls out to Access Servers

        self.federation = Federation(self)
        self.mission_endpoints = MissionEndpoints(
            _MissionHost(self),
            mission_path=config.mission_path,
            permission_path=config.permission_path,
            audit_path=config.audit_path,
        )
        for kind in MISSION_KINDS:
            self.pending.kinds[kind] = self.mission_endpoints
            self.consent.approvers[kind] = self.mission_endpoints.approve_steps
        # Suspending or ending a mission revokes its tokens at their resources (digest 5.7),
        # signed as this PS, from the durable outbox.
        signer = ServerSigner(config.signing_key, config.issuer, DWK_PERSON, clock=config.clock)
        self.outbound = OutboundClient(signer, EgressPolicy(dev_loopback=config.dev_loopback))
        self.halt = HaltAtResources(
            records=self.records,
            ops=self.rec,
            clock=config.clock,
            issuer=config.issuer,
            metadata=discovery.metadata,
            client=RevocationClient(self.outbound, now=config.clock.now),
            attempts=config.revocation_attempts,
        )
        self.missions.on_halt(self.halt.on_halt_steps)
        self.halt.resume()

    def stop_workers(self) -> None:
        """The revocation worker and the outbound clients."""
        self.halt.stop()
        self.outbound.close()
        self.federation.close()

    def handle_steps(self, request: HttpRequest) -> Steps[HttpResponse | None]:
        cfg = self.config
        path, method = request.path, request.method
        published = self.published(request)
        if published is not None:
            return published
        if path == cfg.person_token_path and method == "POST":
            return (yield from self.endpoints.person_token_steps(request))
        if path == cfg.auth_token_path and method == "POST":
            return (yield from self.endpoints.auth_token_steps(request))
        if path == cfg.revocation_path and method == "POST":
            return (yield from self.endpoints.revoke_steps(request))
        if path.startswith(cfg.revocation_path + "/pending/") and method == "GET":
            return (yield from self.endpoints.revocation_poll_steps(request))
        if path.startswith(cfg.pending_prefix) and method in ("GET", "POST", "DELETE"):
            pending_id = path[len(cfg.pending_prefix) :]
            return (yield from self.pending.handle_steps(request, pending_id))
        answered = yield from self.mission_endpoints.dispatch_steps(request)
        if answered is not None:
            return answered
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
            ("GET", cfg.revocation_path + "/pending/"),
            ("GET", prefix),
            ("POST", prefix),
            ("DELETE", prefix),
            *self.relay.routes(),
            *self.mission_endpoints.routes(),
        ]

    def metadata(self) -> dict[str, Any]:
        cfg = self.config
        doc: dict[str, Any] = {
            "issuer": cfg.issuer,
            "jwks_uri": cfg.url_for(cfg.jwks_path),
            "person_token_endpoint": cfg.url_for(cfg.person_token_path),
            "auth_token_endpoint": cfg.url_for(cfg.auth_token_path),
            "interaction_endpoint": cfg.url_for(cfg.interaction_path),
            "mission_endpoint": cfg.url_for(cfg.mission_path),
            "permission_endpoint": cfg.url_for(cfg.permission_path),
            "audit_endpoint": cfg.url_for(cfg.audit_path),
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
        verified, _person = yield from self.agent_steps(request, token_request=token_request)
        return verified

    def agent_steps(
        self, request: HttpRequest, *, token_request: bool = False
    ) -> Steps[tuple[VerifiedRequest, str | None]]:
        """Verify the agent's request; ``(verified, the person the agent is bound to)``.

        A revoked agent token is ``401 revoked_jwt`` (digest 5.7), looked up with the
        binding in one transaction."""
        verified = yield from self.verifier.steps(request)
        person = yield from self.agent_person_steps(verified, token_request=token_request)
        return verified, person

    def agent_person_steps(
        self, verified: VerifiedRequest, *, token_request: bool = False
    ) -> Steps[str | None]:
        """:meth:`agent_steps` after the verification: the agent token's revocation and the
        agent's binding; the person."""
        claims = verified.claims
        revoked, person = yield self.rop(
            self.rec.agent_facts(
                str(claims["iss"]),
                str(claims["jti"]),
                str(claims["sub"]),
                now=self.config.clock.now(),
            )
        )
        self._check_agent(claims, revoked, token_request=token_request)
        return person  # type: ignore[no-any-return]

    def agent_facts_steps(
        self, verified: VerifiedRequest, pair: PairPeek
    ) -> Steps[tuple[str | None, RequestFacts]]:
        """What :meth:`agent_steps` reads and checks after the verification, for a token
        request that carries a resource and a presented token: the same reads, and the
        pair's revocation facts, in one records transaction.  ``(person, facts)``."""
        claims = verified.claims
        facts: RequestFacts = yield self.rop(
            self.rec.request_facts(
                str(claims["iss"]),
                str(claims["jti"]),
                str(claims["sub"]),
                now=self.config.clock.now(),
                tokens=pair.tokens,
                since=pair.since,
            )
        )
        self._check_agent(claims, facts.revoked, token_request=True)
        return facts.person, facts

    @staticmethod
    def _check_agent(claims: Mapping[str, object], revoked: bool, *, token_request: bool) -> None:
        if revoked:
            raise SignatureFailure("revoked_jwt", "token has been revoked")
        if token_request and "parent_agent" in claims:
            raise problem(400, "invalid_request", "a PS refuses token requests from sub-agents")

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
        yield self.rop(self.rec.remember_seen(*token, sub=str(claims["sub"]), exp=until))
        if len(self._remembered) >= _REMEMBERED_MAX:
            self._remembered.clear()
        self._remembered[token] = until


class _MissionHost:
    """What the mission endpoints borrow from the PS they serve."""

    def __init__(self, ps: PersonServer) -> None:
        self.ps = ps
        self.missions = ps.missions

    @property
    def issuer(self) -> str:
        return self.ps.config.issuer

    @property
    def dev_loopback(self) -> bool:
        return self.ps.config.dev_loopback

    @property
    def limits(self) -> FieldLimits:
        return self.ps.limits

    @property
    def update_policy(self) -> str:
        return self.ps.config.mission_updates

    @property
    def max_updates(self) -> int:
        return self.ps.config.max_mission_updates

    def agent_steps(
        self, request: HttpRequest, *, token_request: bool = False
    ) -> Steps[tuple[VerifiedRequest, str | None]]:
        return self.ps.agent_steps(request, token_request=token_request)

    def bound_person_steps(self, agent_issuer: str, agent: str) -> Steps[str | None]:
        return self.ps.bindings.person_steps(agent_issuer, agent)

    def ask_person_steps(
        self, verified: VerifiedRequest, data: dict[str, Any], person: str | None
    ) -> Steps[HttpResponse]:
        return self.ps.endpoints.ask_person_steps(verified, data, person)

    def person_token_steps(
        self, verified: VerifiedRequest, person: str, resource: str, mission: Mission
    ) -> Steps[str | None]:
        data: dict[str, Any] = {
            "kind": "person",
            "resource": resource,
            "person": person,
            "mission_s256": mission.s256,
            "mission_expires": mission.expires_at,
            "granted": [],
        }
        minted = self.ps.params.person_token(verified, person, data)
        if minted is None:
            return None
        yield from self.ps.pending.record_issued_steps(data, verified, minted)
        return minted.token

    def capabilities(self) -> list[str]:
        # What the PS can do for the person right now: relay interactions to them.
        return ["interaction"] if self.ps.relay.channels else []

    def decide_permission(
        self, agent: str, person: str, action: str, mission: Mission | None
    ) -> bool | None:
        decide = getattr(self.ps.config.policy, "decide_permission", None)
        if decide is None:
            return None
        answer = decide(agent=agent, person=person, action=action, mission=mission)
        return None if answer is None else bool(answer)


__all__ = ["PersonServer"]
