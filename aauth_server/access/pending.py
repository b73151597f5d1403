"""Pending requests at the Access Server (digest 5.4, 5.5, 7): the record, the policy's
verdicts, the pending URL a PS polls.

A record holds the verified request (``tokens.request_data``) plus ``state``: ``pending``
(open, with its ``requirement``: ``claims``, ``clarification``, ``interaction`` or
``approval``), ``approved`` (holding the policy's ``grant``), ``denied``, ``revoked``,
``expired``; ``delivered`` and ``cancelled`` are terminal (``410``).  Every change is a
compare-and-set on the stored record, so workers sharing one store (Redis) serialise on it,
and exactly one poll hands the token out.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ..errors import Deferred, ServerError
from ..http import HttpRequest, HttpResponse, prefer_wait
from ..identifiers import normalize_interaction_code
from ..polling import pace_steps, park_steps
from ..records import IssuedToken
from ..resource.sessions import new_code
from ..resource.state import digest_id, new_id
from ..revocation import json_body, problem
from ..steps import Steps, StoreOp
from ..storage.base import Record, RecordNotFound, VersionConflict
from .policy import (
    AccessRequest,
    Deny,
    Issue,
    RequireApproval,
    RequireClaims,
    RequireClarification,
    RequireInteraction,
    Verdict,
)
from .tokens import FIXED_CLAIMS, Minted, TokenFacts

if TYPE_CHECKING:
    from .config import AccessServerConfig
    from .server import AccessServer

log = logging.getLogger("aauth_server.access")

KIND_PENDING = "as-pending"
KIND_CODE = "as-code"
#: Seconds a finished request stays readable, so late polls answer 410, not 404.
RETENTION = 300
OPEN = "pending"
#: Settled states: an outcome the PS has not received yet, and its polling answer.
SETTLED = {
    "approved": (200, None),
    "denied": (403, "denied"),
    "revoked": (403, "revoked"),
    "expired": (408, "expired"),
    # The policy asked for the person later, and no page here reaches them.
    "unreachable": (403, "denied"),
}
TERMINAL = ("delivered", "cancelled")
UNREACHABLE = "no person can be reached: this Access Server serves no interaction page"


class Refused(Exception):
    """A change that no longer applies to the record as it now stands."""


def _copy(data: Mapping[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(json.dumps(data))
    return copied


def access_request(data: Mapping[str, Any]) -> AccessRequest:
    rt = data["rt"]
    return AccessRequest(
        ps=str(data["ps"]),
        resource=str(rt["iss"]),
        scope=tuple(data["scope"]),
        sub=str(rt["sub"]),
        agent=MappingProxyType(dict(data["agent"])),
        presented_type=str(data["presented"]["typ"]),
        mission_s256=rt.get("mission_s256"),
        tenant=rt.get("tenant"),
        account=rt.get("account"),
        subagent=None if data["subagent"] is None else MappingProxyType(dict(data["subagent"])),
        upstream=None if data["upstream"] is None else MappingProxyType(dict(data["upstream"])),
        claims=MappingProxyType(dict(data["claims"])),
        clarifications=tuple((c["question"], c.get("answer")) for c in data["clarifications"]),
        interacted=bool(data["interacted"]),
        interacted_by=data["interacted_by"],
        approved=data["approved"],
        rounds=int(data["rounds"]),
    )


class AccessPending:
    def __init__(self, server: AccessServer) -> None:
        self.server = server

    @property
    def _cfg(self) -> AccessServerConfig:
        return self.server.config

    def location(self, pending_id: str) -> str:
        return self._cfg.url_for(self._cfg.pending_prefix + pending_id)

    # -- the policy ---------------------------------------------------------------------------

    def verdict(self, data: Mapping[str, Any]) -> Verdict:
        try:
            verdict = self._cfg.policy(access_request(data))
        except Exception as exc:
            log.error("AAuth: the access server's policy failed: %s", exc, exc_info=exc)
            raise ServerError("the access server's policy failed") from exc
        if not isinstance(
            verdict,
            Issue
            | Deny
            | RequireClaims
            | RequireClarification
            | RequireInteraction
            | RequireApproval,
        ):
            log.error("AAuth: the access server's policy answered %r", verdict)
            raise ServerError("the access server's policy gave no verdict")
        if isinstance(verdict, Issue):
            try:
                json.dumps(dict(verdict.claims))
            except (TypeError, ValueError) as exc:
                log.error("AAuth: the access server's policy gave claims that are not JSON")
                raise ServerError("the access server's policy gave unusable claims") from exc
        return verdict

    def decide(self, data: dict[str, Any]) -> None:
        """Ask the policy and put its verdict into ``data`` (state, requirement, grant)."""
        cfg = self._cfg
        verdict = self.verdict(data)
        data["requirement"] = None
        data.pop("required_claims", None)
        data.pop("code", None)
        if isinstance(verdict, Issue):
            data["state"] = "approved"
            data["grant"] = {
                "scope": verdict.scopes(data["scope"]),
                "lifetime": verdict.lifetime,
                "claims": dict(verdict.claims),
            }
            return
        if isinstance(verdict, Deny):
            data["state"], data["detail"] = "denied", verdict.reason
            return
        data["state"] = OPEN
        if isinstance(verdict, RequireClaims | RequireClarification):
            if data["rounds"] >= cfg.clarification_rounds:
                data["state"] = "denied"
                data["detail"] = f"more than {cfg.clarification_rounds} rounds of questions"
                return
            data["rounds"] += 1
        if isinstance(verdict, RequireClaims):
            data["requirement"], data["required_claims"] = "claims", list(verdict.names)
        elif isinstance(verdict, RequireClarification):
            data["requirement"] = "clarification"
            data["clarifications"].append(
                {
                    "question": verdict.question,
                    "options": None if verdict.options is None else list(verdict.options),
                    "timeout": verdict.timeout,
                    "asked_at": cfg.clock.now(),
                    "answer": None,
                }
            )
        elif isinstance(verdict, RequireInteraction):
            if not self.server.pages.available:
                data["state"], data["detail"] = "unreachable", UNREACHABLE
                return
            data["requirement"], data["code"] = "interaction", new_code()
            data["interacting"] = False
        else:
            data["requirement"] = "approval"

    # -- records ------------------------------------------------------------------------------

    def create_steps(self, data: dict[str, Any]) -> Steps[Record]:
        cfg = self._cfg
        now = cfg.clock.now()
        data["created_at"] = now
        data["expires_at"] = now + cfg.pending_lifetime
        pending_id = new_id()
        record: Record = yield StoreOp(
            "create", (KIND_PENDING, pending_id, data, cfg.pending_lifetime + RETENTION)
        )
        yield from self._code_steps(record)
        return record

    def _code_steps(self, record: Record) -> Steps[None]:
        """A new interaction code of ``record`` becomes findable by the interaction page."""
        code = record.data.get("code")
        if record.data.get("requirement") == "interaction" and code:
            ttl = max(1.0, float(record.data["expires_at"]) - self._cfg.clock.now())
            code_id = digest_id(normalize_interaction_code(str(code)))
            yield StoreOp("create", (KIND_CODE, code_id, {"pending": record.id}, ttl))

    def change_steps(
        self, record: Record, mutate: Callable[[dict[str, Any]], None]
    ) -> Steps[Record]:
        """Apply ``mutate`` atomically; after a lost race, re-apply to the winner's record
        (``mutate`` raises :class:`Refused` or an AAuthError when it no longer applies)."""
        while True:
            data = _copy(record.data)
            mutate(data)
            try:
                stored: Record = yield StoreOp(
                    "compare_and_set", (KIND_PENDING, record.id, record.version, data)
                )
            except VersionConflict:
                fresh = yield StoreOp("get", (KIND_PENDING, record.id))
            except RecordNotFound:
                fresh = None
            else:
                if stored.data.get("code") != record.data.get("code"):
                    yield from self._code_steps(stored)
                return stored
            if fresh is None:
                raise problem(404, "not_found", "no such pending request")
            record = fresh

    def get_steps(self, pending_id: str) -> Steps[Record]:
        record: Record | None = None
        if 16 <= len(pending_id) <= 64 and pending_id.replace("-", "").replace("_", "").isalnum():
            record = yield StoreOp("get", (KIND_PENDING, pending_id))
        if record is None:
            raise problem(404, "not_found", "no such pending request")
        return record

    # -- lazy events --------------------------------------------------------------------------

    def settle_steps(self, record: Record) -> Steps[Record]:
        """What happened meanwhile: a deadline passed, a token the request rests on was revoked."""
        data = record.data
        if data["state"] not in (OPEN, "approved"):
            return record
        server = self.server
        rt, presented = data["rt"], data["presented"]
        (rt_revoked, pt_revoked), _ = yield server.rop(
            server.rec.revocation_facts(
                [(str(rt["iss"]), str(rt["jti"])), (str(presented["iss"]), str(presented["jti"]))],
                None,
                0,
            )
        )
        event: tuple[str, str] | None = None
        if rt_revoked or pt_revoked:
            which = "resource token" if rt_revoked else "presented token"
            event = ("revoked", f"the {which} this request rests on was revoked")
        elif data["state"] == OPEN:
            now = self._cfg.clock.now()
            deadline = float(data["expires_at"])
            question = open_question(data)
            if question is not None and question.get("timeout"):
                deadline = min(deadline, float(question["asked_at"]) + int(question["timeout"]))
            if now >= deadline:
                event = ("expired", "this pending request expired")
        if event is None:
            return record
        state, detail = event

        def settle(data: dict[str, Any]) -> None:
            if data["state"] not in (OPEN, "approved"):
                raise Refused
            data["state"], data["detail"] = state, detail

        try:
            return (yield from self.change_steps(record, settle))
        except Refused:
            fresh = yield from self.get_steps(record.id)
            return fresh

    # -- answers ------------------------------------------------------------------------------

    def deferred(self, record: Record) -> Deferred:
        cfg = self._cfg
        data = record.data
        requirement = data.get("requirement") if data["state"] == OPEN else None
        params: dict[str, str] = {}
        extra: dict[str, object] = {}
        if requirement == "claims":
            extra["required_claims"] = list(data["required_claims"])
        elif requirement == "clarification":
            question = data["clarifications"][-1]
            extra["clarification"] = question["question"]
            if question.get("timeout"):
                left = float(question["asked_at"]) + int(question["timeout"]) - cfg.clock.now()
                extra["timeout"] = max(0, math.ceil(left))
            if question.get("options"):
                extra["options"] = list(question["options"])
        elif requirement == "interaction":
            params = {"url": cfg.url_for(cfg.interact_path), "code": str(data["code"])}
        status = "interacting" if data.get("interacting") else "pending"
        # A settled outcome waits for the next GET: "resume polling" at once.
        retry = cfg.poll_interval if requirement else 0
        return Deferred(
            self.location(record.id),
            requirement=requirement,
            params=params,
            retry_after=retry,
            body_status=status,
            extra=extra,
        )

    def answer_steps(self, record: Record) -> Steps[HttpResponse]:
        """What a GET poll answers; the poll that hands out an outcome wins ``delivered``."""
        state = record.data["state"]
        if state == OPEN:
            raise self.deferred(record)
        if state in TERMINAL or state not in SETTLED:
            raise problem(410, "gone", "this pending request is finished")

        def deliver(data: dict[str, Any]) -> None:
            if data["state"] != state:
                raise Refused
            data["state"] = "delivered"

        try:
            delivered = yield from self.change_steps(record, deliver)
        except Refused:
            fresh = yield from self.get_steps(record.id)
            return (yield from self.answer_steps(fresh))
        status, error = SETTLED[state]
        if status != 200:
            raise problem(status, error or "server_error", str(delivered.data.get("detail", state)))
        return (yield from self.issue_steps(delivered.data))

    def issue_steps(self, data: Mapping[str, Any]) -> Steps[HttpResponse]:
        """Mint the granted auth token, record it, answer ``200``."""
        server = self.server
        minted = server.tokens.mint(data, data["grant"])
        if minted is None:
            raise problem(408, "expired", "a token this request depends on has expired")
        yield server.rop(server.rec.record_issued(issued_record(data, minted)))
        return HttpResponse.json(
            200,
            {"auth_token": minted.token, "expires_in": minted.lifetime},
            headers=[("Cache-Control", "no-store")],
        )

    # -- the pending URL ----------------------------------------------------------------------

    def handle_steps(self, request: HttpRequest, pending_id: str) -> Steps[HttpResponse]:
        record = yield from self.get_steps(pending_id)
        ps = yield from self.server.verify_ps_steps(request, check_trust=False)
        body = json_body(request) if request.method == "POST" else None
        return (
            yield from self.call_steps(
                ps, request.method, pending_id, body=body, wait=prefer_wait(request), record=record
            )
        )

    def call_steps(
        self,
        ps: str,
        method: str,
        pending_id: str,
        *,
        body: Mapping[str, Any] | None = None,
        wait: int | None = None,
        record: Record | None = None,
    ) -> Steps[HttpResponse]:
        """The pending URL for a caller already known to be the PS ``ps``: ``GET`` polls,
        ``POST`` answers (``body``), ``DELETE`` cancels."""
        if record is None:
            record = yield from self.get_steps(pending_id)
        if ps != record.data["ps"]:
            # Digest 5.5/5.7: only the identity that made the request polls it; others 404.
            raise problem(404, "not_found", "no such pending request")
        record = yield from self.settle_steps(record)
        if method == "DELETE":
            yield from self._cancel_steps(record)
            return HttpResponse(204, [("Cache-Control", "no-store")], b"")
        if method == "POST":
            return (yield from self._action_steps(body or {}, record))
        paced = True  # a poll that did not wait is paced by Retry-After
        if wait and record.data["state"] == OPEN:
            changed, paced = yield from park_steps(
                KIND_PENDING, record, min(wait, self._cfg.max_wait)
            )
            record = yield from self.settle_steps(changed)
        if paced and record.data["state"] == OPEN:
            # Digest 5.5 polling errors: a PS polling an open request sooner than the
            # Retry-After it was given gets 429 slow_down (and adds 5 s).  A settled outcome
            # ("resume polling at once") is never held back.
            yield from pace_steps("as-poll:" + record.id, self._cfg.poll_interval)
        return (yield from self.answer_steps(record))

    def _cancel_steps(self, record: Record) -> Steps[None]:
        def cancel(data: dict[str, Any]) -> None:
            if data["state"] in TERMINAL:
                raise problem(410, "gone", "this pending request is finished")
            data["state"] = "cancelled"

        yield from self.change_steps(record, cancel)

    def _action_steps(self, body: Mapping[str, Any], record: Record) -> Steps[HttpResponse]:
        cfg = self._cfg
        action = body.get("action")
        update: Callable[[dict[str, Any]], None]
        if action == "claims" or action is None:
            update = self._claims_answer(body, action)
        elif action == "clarification_response":
            reply = body.get("clarification_response")
            if not isinstance(reply, str) or not reply.strip():
                raise problem(400, "invalid_request", "clarification_response must be a string")
            if len(reply) > cfg.max_text:
                raise problem(
                    400,
                    "invalid_request",
                    f"clarification_response is over {cfg.max_text} characters",
                )
            update = _answered(reply)
        elif action == "updated_request":
            facts = yield from self._updated_steps(record, body)
            justification = body.get("justification")
            if justification is not None and (
                not isinstance(justification, str) or len(justification) > cfg.max_text
            ):
                raise problem(
                    400,
                    "invalid_request",
                    f"justification must be a string of at most {cfg.max_text} characters",
                )
            update = _updated(facts, justification)
        else:
            raise problem(
                400,
                "invalid_request",
                "action must be claims, clarification_response or updated_request",
            )
        wanted = "claims" if action in ("claims", None) else "clarification"

        def answer(data: dict[str, Any]) -> None:
            if data["state"] in TERMINAL:
                raise problem(410, "gone", "this pending request is finished")
            if data["state"] != OPEN or data.get("requirement") != wanted:
                raise problem(400, "invalid_request", f"this request is not waiting for {wanted}")
            update(data)
            self.decide(data)

        record = yield from self.change_steps(record, answer)
        raise self.deferred(record)

    def _claims_answer(
        self, body: Mapping[str, Any], action: object
    ) -> Callable[[dict[str, Any]], None]:
        """Our documented shape (digest 13.4): ``{"action":"claims","claims":{...}}``, or the
        flat claims object other stacks send.  ``sub`` is refused: an AS never learns it."""
        claims = body.get("claims") if action == "claims" else body
        if not isinstance(claims, Mapping) or not claims:
            raise problem(400, "invalid_request", "claims must be a non-empty JSON object")
        if "sub" in claims:
            raise problem(400, "invalid_request", "sub is never given to an Access Server")
        if len(claims) > self._cfg.max_claims:
            raise problem(400, "invalid_request", f"at most {self._cfg.max_claims} claims")
        given = dict(claims)

        def update(data: dict[str, Any]) -> None:
            data["claims"] = {**data["claims"], **given}

        return update

    def _updated_steps(self, record: Record, body: Mapping[str, Any]) -> Steps[TokenFacts]:
        """Digest 7: a new resource/presented pair for the same person, agent and mission."""
        from ..keys.jwk import PublicKey

        data = record.data
        for name in ("resource_token", "presented_token"):
            if not isinstance(body.get(name), str) or not body[name]:
                raise problem(400, "invalid_request", f"{name} is required")
        tokens = self.server.tokens
        rt = yield from tokens.resource_token_steps(body["resource_token"])
        fixed = {k: rt.get(k) for k in FIXED_CLAIMS}
        if fixed != {k: data["rt"].get(k) for k in FIXED_CLAIMS}:
            raise problem(
                400, "invalid_resource_token", "the new resource token changes fixed claims"
            )
        key = PublicKey.from_jwk(data["key"])
        chained = _stored_chain(data)
        return (
            yield from tokens.pair_steps(
                str(data["ps"]), rt, body["presented_token"], data["agent"], key, chained
            )
        )


def open_question(data: Mapping[str, Any]) -> dict[str, Any] | None:
    history = data["clarifications"]
    if data.get("requirement") == "clarification" and history and history[-1]["answer"] is None:
        return dict(history[-1])
    return None


def _answered(answer: str) -> Callable[[dict[str, Any]], None]:
    def update(data: dict[str, Any]) -> None:
        data["clarifications"][-1]["answer"] = answer

    return update


def _updated(facts: TokenFacts, justification: str | None) -> Callable[[dict[str, Any]], None]:
    def update(data: dict[str, Any]) -> None:
        rt, presented = facts.resource_token, facts.presented
        data["clarifications"][-1]["answer"] = justification
        data["clarifications"][-1]["updated"] = True
        data["rt"] = {**data["rt"], "jti": rt["jti"], "exp": rt["exp"], "scope": rt.get("scope")}
        data["scope"] = facts.scopes
        old = data["presented"]
        data["presented"] = {
            "typ": facts.presented_typ,
            "iss": presented["iss"],
            "jti": presented["jti"],
            "exp": presented["exp"],
        }
        data["caps"] = [c for c in data["caps"] if c != old["exp"]] + [presented["exp"]]

    return update


def _stored_chain(data: Mapping[str, Any]) -> Any:
    from .tokens import Chained

    return Chained(subagent=data.get("subagent"), upstream=data.get("upstream"))


def issued_record(data: Mapping[str, Any], minted: Minted) -> IssuedToken:
    """The issued-token record (digest 5.7 "records to keep" at an AS)."""
    rt, agent, presented = data["rt"], data["agent"], data["presented"]
    upstream = data.get("upstream") or {}
    return IssuedToken(
        jti=minted.jti,
        type="auth",
        aud=str(rt["iss"]),
        iat=minted.iat,
        exp=minted.exp,
        agent_issuer=str(agent["iss"]),
        agent=str(agent["sub"]),
        agent_jti=str(agent["jti"]),
        sub=str(rt["sub"]),
        mission=rt.get("mission_s256"),
        scope=minted.scope,
        upstream_iss=upstream.get("iss"),
        upstream_jti=upstream.get("jti"),
        presented_iss=str(presented["iss"]),
        presented_jti=str(presented["jti"]),
    )


__all__ = ["KIND_CODE", "KIND_PENDING", "AccessPending", "access_request", "issued_record"]
