"""Pending requests at the PS (digest 5.5, 7): the record, its transitions, the pending URL.

Every state change goes through :func:`fire_steps`, i.e. through the lifecycle table
(:mod:`.lifecycle`), as a compare-and-set on the stored record: of two workers firing
events on one request, one wins and the other re-reads and re-decides.  That is what makes
delivery exactly-once: the poll that hands out an outcome must first win ``delivered``.

Time-driven events (``timed_out``) and dependency events (``revoked``: the agent token the
request was made with was revoked) are applied lazily, whenever a poll or the consent
page reads the record.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import Deferred, Forbidden
from ..http import HttpRequest, HttpResponse, prefer_wait
from ..polling import pace_steps, park_steps
from ..records import IssuedToken
from ..resource.state import digest_id
from ..revocation import json_body, problem, slow_down
from ..steps import Steps, StoreOp
from ..storage.base import Record, RecordExists, RecordNotFound, VersionConflict
from ..verifier import VerifiedRequest
from .chained import bound_key
from .lifecycle import OPEN, TERMINAL, Event, LifecycleError, State, body_status, next_state
from .lifecycle import poll_answer as lifecycle_answer
from .policy import AUTH
from .tokens import FIXED_CLAIMS, Minted, TokenPair

if TYPE_CHECKING:
    from .config import PersonServerConfig
    from .server import PersonServer

KIND_PENDING = "ps-pending"
KIND_CODE = "ps-code"
KIND_INBOX = "ps-inbox"
#: The open request ids of one agent (the per-agent cap).
KIND_AGENT_OPEN = "ps-agent-open"
#: Seconds a finished request stays readable, so late polls answer 408/410, not 404.
RETENTION = 300
_PENDING_ID = re.compile(r"[A-Za-z0-9_\-]{16,64}")


def _inbox_until(record: Record) -> list[int]:
    """When each request on a consent list expires (its ``expires_at``, rounded up).  A list
    written before those were kept gives each id the list's own expiry: every id on it was
    added at or before the list's last write, which set that expiry past the request's."""
    until = record.data.get("until")
    if isinstance(until, list) and len(until) == len(record.data["ids"]):
        return until
    return [math.ceil(record.expires_at)] * len(record.data["ids"])


class Refused(Exception):
    """The lifecycle refused the event; ``record`` is the request as it now stands."""

    def __init__(self, record: Record, error: LifecycleError) -> None:
        super().__init__(str(error))
        self.record = record


def state_of(record: Record) -> State:
    return State(record.data["state"])


def fire_steps(
    record: Record, event: Event, update: Callable[[dict[str, Any]], None] | None = None
) -> Steps[Record]:
    """Apply ``event`` (and ``update`` to the data) atomically; re-decide after a lost race."""
    while True:
        try:
            target = next_state(state_of(record), event)
        except LifecycleError as exc:
            raise Refused(record, exc) from None
        data = {**record.data, "state": target.value}
        if update is not None:
            update(data)
        try:
            stored: Record = yield StoreOp(
                "compare_and_set", (KIND_PENDING, record.id, record.version, data)
            )
            return stored
        except VersionConflict:
            fresh = yield StoreOp("get", (KIND_PENDING, record.id))
        except RecordNotFound:
            fresh = None
        if fresh is None:
            raise problem(404, "not_found", "no such pending request")
        record = fresh


def update_steps(record: Record, update: Callable[[dict[str, Any]], None]) -> Steps[None]:
    """Change the data but not the state (a counter); a lost race re-applies to the winner's."""
    while True:
        data = dict(record.data)
        update(data)
        try:
            yield StoreOp("compare_and_set", (KIND_PENDING, record.id, record.version, data))
            return
        except VersionConflict:
            fresh = yield StoreOp("get", (KIND_PENDING, record.id))
        except RecordNotFound:
            return
        if fresh is None:
            return
        record = fresh


def get_steps(pending_id: str) -> Steps[Record]:
    record: Record | None = None
    if _PENDING_ID.fullmatch(pending_id):
        record = yield StoreOp("get", (KIND_PENDING, pending_id))
    if record is None:
        raise problem(404, "not_found", "no such pending request")
    return record


class KindHandler(Protocol):
    """Delivers the outcome of pending requests of a kind other than person/auth tokens
    (the mission endpoints register theirs)."""

    def deliver_steps(
        self, data: Mapping[str, Any], verified: VerifiedRequest
    ) -> Steps[HttpResponse]: ...

    def refusal(self, data: Mapping[str, Any], state: str) -> HttpResponse | None: ...


class PendingRequests:
    def __init__(self, server: PersonServer) -> None:
        self.server = server
        #: ``kind`` -> who delivers an approved request of that kind.
        self.kinds: dict[str, KindHandler] = {}

    @property
    def _cfg(self) -> PersonServerConfig:
        return self.server.config

    def location(self, pending_id: str) -> str:
        return self._cfg.url_for(self._cfg.pending_prefix + pending_id)

    # -- creation -----------------------------------------------------------------------------

    def create_steps(self, data: dict[str, Any], code_id: str | None) -> Steps[Record]:
        from ..resource.state import new_id

        cfg = self._cfg
        now = cfg.clock.now()
        pending_id = new_id()
        yield from self._track_open_steps(str(data["agent_iss"]), str(data["agent"]), pending_id)
        data = {
            **data,
            "state": State.PENDING.value,
            "created_at": now,
            "expires_at": now + cfg.pending_lifetime,
            "code_id": code_id,
            "code_failures": 0,
            "clarifications": [],
        }
        record: Record = yield StoreOp(
            "create", (KIND_PENDING, pending_id, data, cfg.pending_lifetime + RETENTION)
        )
        if code_id is not None:
            yield StoreOp(
                "create", (KIND_CODE, code_id, {"pending": pending_id}, cfg.pending_lifetime)
            )
        # The first 202 counts as an answer: the agent waits Retry-After before its first poll.
        yield StoreOp("remember_once", ("ps-poll:" + pending_id, cfg.poll_interval))
        if data.get("person"):
            yield from self.add_to_inbox_steps(
                str(data["person"]), pending_id, float(data["expires_at"])
            )
        return record

    def _track_open_steps(self, agent_iss: str, agent: str, pending_id: str) -> Steps[None]:
        """Admit one more open request of this agent, or ``429 slow_down`` at the cap.

        The agent's open request ids are one record, changed by compare-and-set, so
        parallel requests cannot both take the last place; ids of requests that were
        decided or expired are dropped when the list is full.
        """
        cfg = self._cfg
        cap = cfg.max_pending_per_agent
        ttl = cfg.pending_lifetime + RETENTION
        track_id = digest_id(agent_iss, agent)
        for _ in range(8):
            record = yield StoreOp("get", (KIND_AGENT_OPEN, track_id))
            ids = [] if record is None else list(record.data["ids"])
            if len(ids) >= cap:
                ids = yield from self._still_open_steps(ids)
            if len(ids) >= cap:
                break
            ids.append(pending_id)
            try:
                if record is None:
                    yield StoreOp("create", (KIND_AGENT_OPEN, track_id, {"ids": ids}, ttl))
                else:
                    args = (KIND_AGENT_OPEN, track_id, record.version, {"ids": ids}, ttl)
                    yield StoreOp("compare_and_set", args)
                return
            except (RecordExists, VersionConflict, RecordNotFound):
                continue
        raise slow_down(
            f"this agent already has {cap} open requests; wait for the person to decide",
            cfg.poll_interval,
        )

    def _still_open_steps(self, ids: list[str]) -> Steps[list[str]]:
        now = self._cfg.clock.now()
        kept: list[str] = []
        for pending_id in ids:
            record = yield StoreOp("get", (KIND_PENDING, pending_id))
            if (
                record is not None
                and state_of(record) in OPEN
                and float(record.data["expires_at"]) > now
            ):
                kept.append(pending_id)
        return kept

    def add_to_inbox_steps(
        self, person: str, pending_id: str, expires_at: float | None = None
    ) -> Steps[None]:
        """Put ``pending_id`` on ``person``'s consent list with its request's ``expires_at``
        (by default now + ``pending_lifetime``, past that of any request made until now).

        Each rewrite drops the ids whose request record is gone (``RETENTION`` past its
        ``expires_at``; already past its deadline, it could not have been open either), so the
        list holds the requests of the last ``pending_lifetime + RETENTION`` seconds, not every
        request the person was ever asked: each new request and each read of the list would
        otherwise cost O(all of them), and the list would grow as long as requests keep coming.
        """
        cfg = self._cfg
        ttl = cfg.pending_lifetime + RETENTION
        inbox_id = digest_id(person)
        for _ in range(8):
            now = cfg.clock.now()
            deadline = math.ceil(now + cfg.pending_lifetime if expires_at is None else expires_at)
            record = yield StoreOp("get", (KIND_INBOX, inbox_id))
            ids: list[str] = [] if record is None else record.data["ids"]
            if pending_id in ids:
                return
            untils = [] if record is None else _inbox_until(record)
            keep = [k for k, u in enumerate(untils) if u + RETENTION > now]
            data = {
                "ids": [ids[k] for k in keep] + [pending_id],
                "until": [untils[k] for k in keep] + [deadline],
            }
            try:
                if record is None:
                    yield StoreOp("create", (KIND_INBOX, inbox_id, data, ttl))
                else:
                    args = (KIND_INBOX, inbox_id, record.version, data, ttl)
                    yield StoreOp("compare_and_set", args)
                return
            except (RecordExists, VersionConflict, RecordNotFound):
                continue

    # -- lazy events --------------------------------------------------------------------------

    def settle_steps(self, record: Record) -> Steps[Record]:
        """Apply what happened meanwhile: a revoked agent token, an elapsed deadline."""
        state = state_of(record)
        if state not in OPEN and state is not State.APPROVED:
            return record
        data = record.data
        event: Event | None = None
        update: Callable[[dict[str, Any]], None] | None = None
        if (yield from self.agent_revoked_steps(data)):
            event = Event.REVOKED
        elif (
            data.get("mission_s256") is not None
            and not (data["kind"] == "completion" and state is State.APPROVED)
            and (yield from self._mission_ended_steps(str(data["mission_s256"])))
        ):
            # Digest 8.5: a mission that ended takes its open requests with it.
            event, update = Event.REVOKED, _revoked_by("the mission this request names ended")
        else:
            now = self._cfg.clock.now()
            deadline = float(data["expires_at"])
            for cap in ("upstream_exp", "subagent_exp"):
                # A chained request ends when its upstream token does (digest 9).
                if data.get(cap) is not None:
                    deadline = min(deadline, float(data[cap]))
            question = self.open_question(data) if state in _ASKING else None
            if question is not None and question.get("timeout") is not None:
                deadline = min(deadline, float(question["asked_at"]) + int(question["timeout"]))
            if now >= deadline:
                event = Event.TIMED_OUT
        if event is None:
            return record
        try:
            return (yield from fire_steps(record, event, update))
        except Refused as refused:
            return refused.record

    def _mission_ended_steps(self, s256: str) -> Steps[bool]:
        mission = yield from self.server.missions.current_steps(s256)
        return mission is None or mission.state == "terminated"

    def suspended_steps(self, record: Record) -> Steps[bool]:
        """Is the request's mission suspended?  Its requests then wait (no outcome leaves)."""
        s256 = record.data.get("mission_s256")
        if s256 is None:
            return False
        mission = yield from self.server.missions.current_steps(str(s256))
        return mission is not None and mission.suspended

    def agent_revoked_steps(self, data: Any) -> Steps[bool]:
        server = self.server
        revoked = yield server.rop(server.rec.is_revoked(data["agent_iss"], data["agent_jti"]))
        if revoked:
            return True
        return (
            yield from self.server.params.cut_off_steps(
                data["agent_iss"], data["agent"], float(data["created_at"])
            )
        )

    @staticmethod
    def open_question(data: Any) -> dict[str, Any] | None:
        history = data["clarifications"]
        if history and history[-1]["answer"] is None and data["state"] in _ASKING:
            return dict(history[-1])
        return None

    # -- answers ------------------------------------------------------------------------------

    def deferred(self, record: Record) -> Deferred:
        cfg = self._cfg
        status = body_status(state_of(record)) or "pending"
        question = self.open_question(record.data)
        if question is None:
            return Deferred(
                self.location(record.id), retry_after=cfg.poll_interval, body_status=status
            )
        extra: dict[str, object] = {"clarification": question["question"]}
        if question.get("timeout") is not None:
            left = float(question["asked_at"]) + int(question["timeout"]) - cfg.clock.now()
            extra["timeout"] = max(0, math.ceil(left))
        if question.get("options"):
            extra["options"] = list(question["options"])
        return Deferred(
            self.location(record.id),
            requirement="clarification",
            retry_after=cfg.poll_interval,
            body_status=status,
            extra=extra,
        )

    def answer_steps(self, record: Record, verified: VerifiedRequest) -> Steps[HttpResponse]:
        """What a poll answers; the poll that hands out an outcome fires ``delivered`` first."""
        while True:
            state = state_of(record)
            if state is State.APPROVED and record.data.get("federation") is not None:
                return (yield from self.server.federation.poll_steps(record, verified))
            status, error = lifecycle_answer(state)
            if status == 202:
                raise self.deferred(record)
            if state in TERMINAL:
                raise problem(410, "gone", "this pending request is finished")
            try:
                delivered = yield from fire_steps(record, Event.DELIVERED)
            except Refused as refused:
                record = refused.record  # another poll took it (or it changed): decide again
                continue
            handler = self.kinds.get(str(delivered.data["kind"]))
            if status != 200 and handler is not None:
                answer = handler.refusal(delivered.data, state.value)
                if answer is not None:
                    return answer
            if status != 200:
                detail = delivered.data.get("revoked_detail") or _DETAILS.get(state, state.value)
                raise problem(status, error or "server_error", detail)
            return (yield from self.issue_steps(delivered.data, verified))

    def issue_steps(
        self, data: Mapping[str, Any], verified: VerifiedRequest
    ) -> Steps[HttpResponse]:
        """Mint the approved token for the agent that asked (``data`` as a pending record holds)."""
        if data.get("federation") is not None:  # four-party: the AS issues (federation.py)
            return (yield from self.server.federation.first_steps(dict(data), verified))
        handler = self.kinds.get(str(data["kind"]))
        if handler is not None:
            yield from self.server.remember_agent_steps(verified)
            return (yield from handler.deliver_steps(data, verified))
        params = self.server.params
        if data["kind"] == AUTH:
            issued = params.auth_token(verified, data)
            field = "auth_token"
        else:
            issued = params.person_token(verified, str(data["person"]), data)
            field = "person_token"
        if issued is None:
            decided = data.get("decision_entry")
            if data.get("mission_s256") is not None and isinstance(decided, Mapping):
                yield from self.server.missions.log_steps(str(data["mission_s256"]), decided)
            raise problem(408, "expired", "a token this request depends on has expired")
        yield from self.server.remember_agent_steps(verified)
        yield from self.record_issued_steps(data, verified, issued)
        return HttpResponse.json(
            200,
            {field: issued.token, "expires_in": issued.lifetime},
            headers=[("Cache-Control", "no-store")],
        )

    def record_issued_steps(
        self, data: Mapping[str, Any], verified: VerifiedRequest, issued: Minted
    ) -> Steps[None]:
        """Keep the issued token's record (digest 5.2, 5.7) and, within a mission, log it."""
        server = self.server
        claims = verified.claims
        kind = str(data["kind"])
        mission = data.get("mission_s256")
        granted = list(data.get("granted", []))
        record = IssuedToken(
            jti=issued.jti,
            type=kind,
            aud=str(data["resource"]),
            iat=issued.iat,
            exp=issued.exp,
            agent_issuer=str(claims["iss"]),
            # A sub-agent's token is the sub-agent's (its key, its AP's revocation); its
            # parent asked for it.  The sub-agent's id names the parent: aauth:<parent>+<x>.
            agent=str(data.get("subagent") or claims["sub"]),
            agent_jti=str(data.get("subagent_jti") or claims["jti"]),
            person=None if data.get("person") is None else str(data["person"]),
            sub=issued.sub,
            mission=None if mission is None else str(mission),
            scope=" ".join(granted) or None,
            upstream_iss=data.get("upstream_iss"),
            upstream_jti=data.get("upstream_jti"),
        )
        entries: list[Mapping[str, Any]] = []
        if mission is not None:
            # The decision that granted it (when it was made just now), then the token.
            decided = data.get("decision_entry")
            if isinstance(decided, Mapping):
                entries.append(decided)
            entries.append(
                {
                    "event": "token_issued",
                    "kind": kind,
                    "agent": str(claims["sub"]),
                    "resource": data["resource"],
                    "scope": granted,
                    "jti": issued.jti,
                    "exp": issued.exp,
                    "expires_in": issued.lifetime,
                }
            )
        now = server.config.clock.now()
        yield server.rop(server.rec.record_issued(record, log=entries, now=now))

    # -- the pending URL ----------------------------------------------------------------------

    def handle_steps(self, request: HttpRequest, pending_id: str) -> Steps[HttpResponse]:
        record = yield from get_steps(pending_id)
        verified = yield from self.server.verify_agent_steps(request)
        data = record.data
        claims = verified.claims
        same = (claims["iss"], claims["sub"], verified.jkt) == (
            data["agent_iss"],
            data["agent"],
            data["agent_jkt"],
        )
        if not same:
            raise Forbidden("this pending request belongs to another agent")
        record = yield from self.settle_steps(record)
        if request.method == "DELETE":
            try:
                yield from fire_steps(record, Event.CANCELLED)
            except Refused:
                raise problem(410, "gone", "this pending request is finished") from None
            yield from self.server.federation.cancelled_steps(record)
            return HttpResponse(204, [("Cache-Control", "no-store")], b"")
        if request.method == "POST":
            return (yield from self._action_steps(request, record, verified))
        wait = prefer_wait(request)
        paced = True  # a poll that did not wait is paced by Retry-After
        # An open question is the answer the agent waits for: it goes out at once (paced
        # like a plain poll), never held until the wait ends.
        asking = self.open_question(record.data) is not None
        if wait is not None and wait > 0 and state_of(record) in OPEN and not asking:
            changed, paced = yield from park_steps(
                KIND_PENDING, record, min(wait, self._cfg.max_wait)
            )
            record = yield from self.settle_steps(changed)
        elif wait is not None and wait > 0 and not asking:
            paced = False  # settled already: the answer goes out at once
        if paced:
            # Plain polls, `Prefer: wait=0`, and unparked long polls wait Retry-After.
            yield from pace_steps("ps-poll:" + record.id, self._cfg.poll_interval)
        if state_of(record) not in TERMINAL and (yield from self.suspended_steps(record)):
            raise self.deferred(record)  # our extension: a suspended mission's requests wait
        return (yield from self.answer_steps(record, verified))

    def _action_steps(
        self, request: HttpRequest, record: Record, verified: VerifiedRequest
    ) -> Steps[HttpResponse]:
        body = json_body(request)
        if state_of(record) is State.APPROVED and record.data.get("federation") is not None:
            return (yield from self.server.federation.action_steps(record, verified, body))
        action = body.get("action")
        limit = self._cfg.max_text
        if action == "clarification_response":
            answer = body.get("clarification_response")
            if not isinstance(answer, str) or not answer.strip():
                raise problem(400, "invalid_request", "clarification_response must be a string")
            if len(answer) > limit:
                raise problem(
                    400, "invalid_request", f"clarification_response is over {limit} characters"
                )
            update = _answer(answer)
            event = Event.CLARIFICATION_ANSWERED
        elif action == "updated_request":
            if record.data["kind"] != AUTH:
                raise problem(400, "invalid_request", "only auth-token requests can be updated")
            pair = yield from self.server.params.verify_pair_steps(
                verified, body, key=bound_key(verified, record.data)
            )
            if pair.fixed() != {k: record.data["fixed"][k] for k in FIXED_CLAIMS}:
                raise problem(
                    400, "invalid_resource_token", "the new resource token changes fixed claims"
                )
            justification = body.get("justification")
            if isinstance(justification, str) and len(justification) > limit:
                raise problem(400, "invalid_request", f"justification is over {limit} characters")
            update = _updated(pair, justification if isinstance(justification, str) else None)
            event = Event.REQUEST_UPDATED
        else:
            raise problem(
                400, "invalid_request", "action must be clarification_response or updated_request"
            )
        try:
            record = yield from fire_steps(record, event, update)
        except Refused as refused:
            if state_of(refused.record) in TERMINAL:
                raise problem(410, "gone", "this pending request is finished") from None
            raise problem(
                400, "invalid_request", "there is no open clarification question"
            ) from None
        mission = record.data.get("mission_s256")
        if mission is not None:
            answer = record.data["clarifications"][-1]["answer"]
            entry = {
                "event": f"agent_{action}",
                "agent": record.data["agent"],
                "pending": record.id,
                "answer": answer,
            }
            yield from self.server.missions.log_steps(str(mission), entry)
        if state_of(record) is State.PENDING:
            # questioned -> pending: the question was the policy's, which decides again.
            return (yield from self.server.questions.redecide_steps(record, verified))
        raise self.deferred(record)


#: Open states with a question the agent must answer (the person's, or the policy's).
_ASKING = (State.CLARIFYING, State.QUESTIONED)


def _revoked_by(detail: str) -> Callable[[dict[str, Any]], None]:
    def update(data: dict[str, Any]) -> None:
        data["revoked_detail"] = detail

    return update


def _answer(answer: str) -> Callable[[dict[str, Any]], None]:
    def update(data: dict[str, Any]) -> None:
        history = [dict(entry) for entry in data["clarifications"]]
        history[-1]["answer"] = answer
        data["clarifications"] = history

    return update


def _updated(pair: TokenPair, justification: str | None) -> Callable[[dict[str, Any]], None]:
    def update(data: dict[str, Any]) -> None:
        history = [dict(entry) for entry in data["clarifications"]]
        history[-1]["answer"] = justification
        history[-1]["updated"] = True
        data["clarifications"] = history
        data["scope"] = sorted(pair.scopes)
        data["presented_exp"] = pair.presented["exp"]
        if justification is not None:
            data["justification"] = justification

    return update


_DETAILS = {
    State.DENIED: "the person declined this request",
    State.ABANDONED: "the interaction was started but never completed",
    State.REVOKED: "the agent token this request was made with has been revoked",
    State.EXPIRED: "this pending request expired",
    State.CODE_LOCKED: "too many wrong interaction codes",
    State.FAILED: "the request failed",
    State.AS_UNREACHABLE: "the access server could not be reached",
}

__all__ = [
    "KIND_CODE",
    "KIND_INBOX",
    "KIND_PENDING",
    "PendingRequests",
    "Refused",
    "fire_steps",
    "get_steps",
    "state_of",
    "update_steps",
]
