"""The PS token endpoints (digest 5.2, 5.3) and its revocation endpoint (5.7).

Both token endpoints run the same decision: the policy (or, for an agent the PS does not
know, always the person) approves, denies or asks; asking opens a pending request and
answers ``202`` with ``requirement=interaction`` (the agent can bring the person to the
consent page) or ``requirement=approval`` (the person has a PS page open), else
``403 user_unreachable``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..cascade import CascadeAnswer, Guarded, closure_steps, revocation_recorder
from ..errors import AAuthError, Deferred
from ..http import HttpRequest, HttpResponse
from ..identifiers import is_server_identifier, normalize_interaction_code
from ..limits import FieldLimits
from ..resource.sessions import new_code
from ..resource.state import digest_id
from ..revocation import RateLimit, json_request_body, problem, revocation_steps
from ..steps import Steps
from ..tokens.aauth import DWK_AGENT, DWK_RESOURCE
from ..verifier import VerifiedRequest
from .chained import ChainedRequests
from .policy import AUTH, PERSON, Approve, AskAgent, AskPerson, Decision, Deny, mission_rule
from .questions import policy_request
from .subjects import Presence
from .tokens import peek_pair

if TYPE_CHECKING:
    from ..missions.model import Mission
    from .config import PersonServerConfig
    from .server import PersonServer

#: How a decision reads in the mission log (digest 8.4: every request is judged and logged).
DECISION_WORDS = {
    Approve: "granted",
    Deny: "denied",
    AskPerson: "asked",
    AskAgent: "asked the agent",
}

PROMPTS = ("none", "login", "consent", "select_account")
PLATFORMS = ("web", "mobile", "desktop", "workload", "self-hosted")
_TEXT = ("justification", "login_hint", "tenant", "domain_hint", "device")


def _request_fields(
    body: Mapping[str, Any], cfg: PersonServerConfig, limits: FieldLimits | None = None
) -> dict[str, Any]:
    """The optional parameters both token endpoints share, validated (every agent-supplied
    string within its configured length: it is stored for the pending request's life)."""
    fields: dict[str, Any] = {}
    for name in _TEXT:
        value = body.get(name)
        if value is not None and not isinstance(value, str):
            raise problem(400, "invalid_request", f"{name} must be a string")
        limit = cfg.max_text if name == "justification" else cfg.max_hint
        if value is not None and len(value) > limit:
            raise problem(400, "invalid_request", f"{name} is longer than {limit} characters")
        fields[name] = value
    device = fields["device"]
    if device is not None and (len(device) > 64 or not device.isprintable()):
        raise problem(400, "invalid_request", "device is at most 64 printable characters")
    for name, allowed in (("prompt", PROMPTS), ("platform", PLATFORMS)):
        value = body.get(name)
        if value is not None and value not in allowed:
            raise problem(400, "invalid_request", f"{name} must be one of {', '.join(allowed)}")
        fields[name] = value
    limits = FieldLimits.of(cfg) if limits is None else limits
    fields["capabilities"] = limits.capability_list(body.get("capabilities", []))
    return fields


class TokenEndpoints:
    def __init__(self, server: PersonServer) -> None:
        self.server = server
        self.rate_limit = RateLimit(server.config.revocations_per_minute)
        #: upstream_token and subagent_token (call chaining, sub-agents: chained.py).
        self.chained = ChainedRequests(server)

    # -- person token endpoint (digest 5.2) ---------------------------------------------------

    def person_token_steps(self, request: HttpRequest) -> Steps[HttpResponse]:
        verified, person = yield from self.server.agent_steps(request, token_request=True)
        body = json_request_body(request)
        resource = body.get("resource")
        if not is_server_identifier(resource, dev_loopback=self.server.config.dev_loopback):
            raise problem(400, "invalid_request", "resource must be a server identifier")
        fields = _request_fields(body, self.server.config, self.server.limits)
        chain = yield from self.chained.facts_steps(verified, body, person)
        person = chain.person
        yield from self._note_capabilities_steps(verified, body)
        data = {**self._agent_data(verified), **fields, "kind": PERSON, "resource": resource}
        data.update(chain.data)
        data["tenant_hint"] = data.pop("tenant")  # a hint: person tokens carry no tenant here
        data["scope"] = []
        mission = None
        if body.get("mission_s256") is not None:
            mission = yield from self._mission_steps(verified, body["mission_s256"], person)
        return (yield from self._decide_steps(verified, data, person, mission))

    # -- auth token endpoint (digest 5.3, three-party) ------------------------------------------

    def auth_token_steps(self, request: HttpRequest) -> Steps[HttpResponse]:
        server = self.server
        verified = yield from server.verifier.steps(request)
        # The body is read once the request verified, before the agent's records: a pair
        # it carries has its revocation facts read in the agent's transaction.  Every check
        # still answers where it always did: the agent's first, then the body's.
        try:
            body: Mapping[str, Any] | None = json_request_body(request)
            refused = None
        except AAuthError as exc:
            body, refused = None, exc
        peeked = None if body is None else peek_pair(body)
        facts = None
        if peeked is None:
            person = yield from server.agent_person_steps(verified, token_request=True)
        else:
            person, facts = yield from server.agent_facts_steps(verified, peeked)
        if refused is not None:
            raise refused
        assert body is not None
        fields = _request_fields(body, self.server.config, self.server.limits)
        chain = yield from self.chained.facts_steps(verified, body, person)
        person = chain.person
        # Four-party: a resource token for an AS this PS trusts federates (federation.py).
        access = self.server.federation.access_server_for(body)
        pair = yield from self.server.params.verify_pair_steps(
            verified, body, key=chain.key(verified), audience=access, peeked=peeked, facts=facts
        )
        rt = pair.resource_token
        yield from self._note_capabilities_steps(verified, body)
        resource = str(rt["iss"])
        if person is None or self.server.directed_sub(person, resource) != rt["sub"]:
            raise problem(400, "invalid_resource_token", "the resource token names another person")
        data = {
            **self._agent_data(verified),
            **fields,
            "kind": AUTH,
            "resource": resource,
            "scope": sorted(pair.scopes),
            "rt_sub": rt["sub"],
            "presented_exp": pair.presented["exp"],
            "mission_s256": rt.get("mission_s256"),
            "tenant": rt.get("tenant"),
            "fixed": pair.fixed(),
        }
        if chain.upstream is not None and rt.get("mission_s256") != chain.upstream.mission_s256:
            raise problem(
                400, "invalid_upstream_token", "mission_s256 differs from the upstream token's"
            )
        data.update(chain.data)
        if access is not None:
            data["federation"] = self.server.federation.state(access, body, verified)
        mission = None
        if rt.get("mission_s256") is not None and chain.upstream is None:
            mission = yield from self._mission_steps(verified, rt["mission_s256"], person)
        return (yield from self._decide_steps(verified, data, person, mission))

    def _mission_steps(
        self, verified: VerifiedRequest, s256: object, person: str | None
    ) -> Steps[Mission]:
        """The named mission, active and this agent's (digest 8.6 errors otherwise)."""
        claims = verified.claims
        return (
            yield from self.server.missions.require_steps(
                s256, str(claims["iss"]), str(claims["sub"]), person
            )
        )

    # -- the shared decision ------------------------------------------------------------------

    def _note_capabilities_steps(
        self, verified: VerifiedRequest, body: Mapping[str, Any]
    ) -> Steps[None]:
        # What the agent declares here decides a later relay without capabilities (relay.py).
        if "capabilities" in body:
            claims = verified.claims
            caps = frozenset(body["capabilities"])
            yield from self.server.relay.note_capabilities_steps(
                str(claims["iss"]), str(claims["sub"]), caps
            )

    @staticmethod
    def _agent_data(verified: VerifiedRequest) -> dict[str, Any]:
        claims = verified.claims
        return {
            "agent": claims["sub"],
            "agent_iss": claims["iss"],
            "agent_jti": claims["jti"],
            "agent_jkt": verified.jkt,
        }

    def _decide_steps(
        self,
        verified: VerifiedRequest,
        data: dict[str, Any],
        person: str | None,
        mission: Mission | None = None,
    ) -> Steps[HttpResponse]:
        server = self.server
        cfg = server.config
        if mission is not None:
            data["mission_s256"] = mission.s256
            data["mission_expires"] = mission.expires_at
        requested = frozenset(data["scope"])
        prompt = data.get("prompt")
        decision: Decision = AskPerson()
        actor = "ps"  # an agent the PS does not know: the person must bind it
        if person is not None and mission is not None:
            ruled = mission_rule(
                mission,
                data["kind"],
                data["resource"],
                outside_scope=cfg.mission_outside_scope,
                grant_person_tokens=cfg.mission_grants_person_tokens,
            )
            if ruled is not None:
                decision, actor = ruled, "mission"
        if person is not None and actor == "ps":
            log = None if mission is None else server.missions.log(mission.s256)
            answer = cfg.policy.decide(policy_request(data, person, mission, log))
            decision = (yield from answer) if inspect.isgenerator(answer) else answer  # type: ignore[assignment]
            actor = "policy"
            if isinstance(decision, AskAgent) and not server.questions.can_ask(data):
                decision = AskPerson()  # an agent without the clarification capability
        # The agent asked for the person explicitly: a standing approval does not answer it.
        if isinstance(decision, Approve) and prompt in ("login", "consent"):
            decision, actor = AskPerson(), "agent"
        if mission is not None:
            entry: dict[str, Any] = {
                "event": "decision",
                "kind": data["kind"],
                "agent": data["agent"],
                "resource": data["resource"],
                "scope": sorted(requested),
                "decision": DECISION_WORDS[type(decision)],
                "actor": actor,
            }
            if isinstance(decision, Deny):
                entry["reason"] = decision.reason
            if isinstance(decision, Approve):
                # Logged with the token it grants, in the issuing transaction.
                data["decision_entry"] = entry
            else:
                yield from server.missions.log_steps(mission.s256, entry)
        if isinstance(decision, Deny):
            raise problem(403, "denied", decision.reason)
        data["person"] = person
        data["bound"] = person is not None
        if isinstance(decision, AskAgent):
            yield from server.questions.ask_steps(verified, data, decision)
        if isinstance(decision, Approve):
            granted = requested if decision.scopes is None else requested & decision.scopes
            data["granted"] = sorted(granted)
            return (yield from server.pending.issue_steps(data, verified))
        return (yield from self.ask_person_steps(verified, data, person))

    def ask_person_steps(
        self, verified: VerifiedRequest, data: dict[str, Any], person: str | None
    ) -> Steps[HttpResponse]:
        """Open a pending request the person decides on (``data`` as the pending record
        keeps it) and answer ``202``: ``requirement=interaction`` when the agent can bring
        the person to the consent page, ``requirement=approval`` when the person has a PS
        page open, else ``403 user_unreachable``."""
        server = self.server
        data.setdefault("person", person)
        data.setdefault("bound", person is not None)
        if data.get("prompt") == "none":
            raise _unreachable("the person must decide and the agent asked for no prompt")
        if "interaction" in data["capabilities"]:
            code = new_code()
            code_id = digest_id(normalize_interaction_code(code))
            record = yield from server.pending.create_steps(data, code_id)
            yield from server.remember_agent_steps(verified)
            cfg = server.config
            consent = cfg.consent_path
            if cfg.consent_url_names_request:
                # The page learns which request a code is for, and locks it after
                # code_attempts wrong ones (digest 6.2).
                consent = f"{consent.rstrip('/')}/request/{record.id}"
            raise Deferred(
                server.pending.location(record.id),
                requirement="interaction",
                params={"url": cfg.url_for(consent), "code": code},
                retry_after=cfg.poll_interval,
            )
        if person is not None and (yield from Presence.present_steps(person)):
            record = yield from server.pending.create_steps(data, None)
            yield from server.remember_agent_steps(verified)
            raise Deferred(
                server.pending.location(record.id),
                requirement="approval",
                retry_after=server.config.poll_interval,
            )
        raise _unreachable(
            "the person must decide, no PS channel reaches them, and the agent did not "
            "declare the interaction capability"
        )

    # -- revocation endpoint (digest 5.7) -------------------------------------------------------

    @property
    def cascade(self) -> CascadeAnswer:
        """How this PS answers a revocation with something downstream (built on first use)."""
        answer = getattr(self, "_cascade", None)
        if answer is None:
            server = self.server
            cfg = server.config
            answer = CascadeAnswer(
                server.halt,
                verifier=server.server_verifier,
                location=lambda pending_id: cfg.url_for(
                    f"{cfg.revocation_path}/pending/{pending_id}"
                ),
                hold=cfg.revocation_hold,
                report_downstream=False,  # PS -> AP: an empty body
            )
            self._cascade = answer
        return answer

    def revoke_steps(self, request: HttpRequest) -> Steps[HttpResponse]:
        """Record first, cascade, answer ``200`` once every downstream revocation is
        terminal (``202`` and a pending URL while it is not).  An AP revoking an agent token
        cuts the agent off and revokes every person and auth token issued to that agent
        ``sub`` (at their resources, and at the Access Servers a person token was presented
        to), and the tokens chained from them."""
        cfg = self.server.config

        def accepts(caller: str, dwk: object) -> bool:
            # APs revoke their agent tokens here; resources revoke resource tokens at their aud.
            return dwk in (DWK_AGENT, DWK_RESOURCE)

        server = self.server

        caller, dwk, jti = yield from revocation_steps(
            request,
            server.server_verifier,
            accepts=accepts,
            rate_limit=self.rate_limit,
            clock=cfg.clock,
            record=revocation_recorder(server.records, server.rec),
        )
        targets: list[Any] = []
        if dwk == DWK_AGENT:
            # Every token and request of this agent from before now is revoked.
            sub = yield Guarded(server.rop(server.rec.seen_sub(caller, jti)))
            if sub is not None:
                now = cfg.clock.now()
                keep = max(3600, cfg.pending_lifetime) + 600
                cut = server.rec.cut_off(caller, sub, at=now, expires_at=now + keep)
                yield Guarded(server.rop(cut))
                # Already revoked ones too: a repeat re-attempts what failed downstream.
                issued = yield Guarded(
                    server.rop(
                        server.rec.issued_where(agent_issuer=caller, agent=sub, unexpired_at=now)
                    )
                )
                tokens = yield from closure_steps(
                    server.records, server.rec, (), now=now, initial=issued
                )
                targets = yield from server.halt.queue_steps(tokens, source="agent_revoked")
        return (yield from self.cascade.answer_steps(request, caller, targets))

    def revocation_poll_steps(self, request: HttpRequest) -> Steps[HttpResponse]:
        """``GET {revocation_endpoint}/pending/{id}``, signed by the AP that revoked."""
        prefix = self.server.config.revocation_path + "/pending/"
        return (yield from self.cascade.poll_steps(request, request.path[len(prefix) :]))


def _unreachable(detail: str) -> Exception:
    return problem(403, "user_unreachable", detail)


__all__ = ["TokenEndpoints"]
