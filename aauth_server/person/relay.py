"""The Person Server's interaction endpoint (digest 6.4, 11.3): relay to the person.

An agent told to send its user to an interaction URL, to pay, or with a question for the
user, first POSTs it here.  The PS finds the person the agent is bound to and hands the relay
to the first registered channel that can reach them now (the built-in one is the person's
open PS page).  When none can, the agent hears ``424 interaction_unavailable`` and directs
the user itself.  Only an agent that has *declared* it cannot drive an interaction hears the
terminal ``403 user_unreachable``: a ``capabilities`` member without ``interaction`` on the
relay body, or, when the body has none, on the agent's last token or relay body that had one
(:meth:`InteractionRelay.note_capabilities_steps`).  A body without ``capabilities`` from an
agent with no such record is an agent relaying a URL it can open itself, as other stacks
send it.

Relays are records of kind ``relay`` polled at ``{relay_prefix}{id}`` by the agent that
made them.  The life of one relay::

    pending --engage--> interacting --(agent saw "interacting")--> engaged
    pending|interacting --answer--> answered      (type=question)
    pending|interacting --decline--> declined
    pending|interacting --max_wait elapsed--> expired  (engaged, if it was interacting
                                                       and not a question)
    engaged|answered|declined|expired --the poll that reports it--> delivered
    any state but delivered --agent DELETE--> cancelled

A settled outcome is reported exactly once (compare-and-set), then the URL answers ``410``.
For ``interaction``/``payment`` the resource's own pending URL stays authoritative; the
relay only tells the agent whether the person engaged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from ..errors import AAuthError, Deferred, Forbidden
from ..http import HttpRequest, HttpResponse, prefer_wait
from ..identifiers import is_server_identifier, normalize_interaction_code
from ..limits import FieldLimits
from ..missions.model import valid_s256
from ..resource.state import digest_id, new_id
from ..revocation import json_body, slow_down
from ..steps import Steps, StoreOp, WaitOp
from ..storage.base import Record, RecordExists, RecordNotFound, VersionConflict
from ..verifier import VerifiedRequest
from .channels import Channel, RelayView, done
from .subjects import Presence, upsert_steps

if TYPE_CHECKING:
    from .server import PersonServer

T = TypeVar("T")
log = logging.getLogger("aauth_server.person.relay")

KIND_RELAY = "relay"
#: The open relay ids of one agent (the per-agent cap, ``max_pending_per_agent``).
KIND_AGENT_RELAYS = "relay-agent-open"
KIND_INBOX = "relay-inbox"
KIND_RELAY_LOG = "relay-log"
RELAY_LOG_TTL = 86400
TYPES = ("interaction", "payment", "question")
OPEN = frozenset({"pending", "interacting"})
SETTLED = frozenset({"engaged", "answered", "declined", "expired"})
TERMINAL = frozenset({"delivered", "cancelled"})
MAX_CODE = 64
#: How long a settled relay waits for its poll, and a finished one answers 410, after max_wait.
RETENTION = 300
_ID = re.compile(r"[A-Za-z0-9_\-]{32}")
_CONFLICT_RETRIES = 8


def _problem(status: int, error: str, detail: str) -> AAuthError:
    return AAuthError(detail, error=error, status=status)


def _bad(detail: str) -> AAuthError:
    return _problem(400, "invalid_request", detail)


def _no_store(response: HttpResponse) -> HttpResponse:
    response.headers.append(("Cache-Control", "no-store"))
    return response


def _person_key(person: str) -> str:
    # Person ids are the application's strings; a digest keeps them out of store keys.
    return digest_id("relay-inbox", person)


@dataclass(frozen=True, slots=True)
class RelayRequest:
    """A validated interaction-endpoint body."""

    type: str
    description: str | None
    url: str | None
    code: str | None
    question: str | None
    max_wait: int | None
    #: ``None`` when the body has no ``capabilities`` member (nothing declared).
    capabilities: frozenset[str] | None
    mission_s256: str | None = None


@dataclass(frozen=True, slots=True)
class Inbox:
    """The relays open for one person, and the version to long-poll for the next one."""

    version: int
    relays: tuple[RelayView, ...]


def parse_relay_body(
    body: object, *, dev_loopback: bool = False, limits: FieldLimits | None = None
) -> RelayRequest:
    """Validate an interaction-endpoint body (digest 6.4); every defect is ``invalid_request``.
    Text (description, question) and capabilities are within the PS's ``limits``."""
    limits = limits or FieldLimits()
    if not isinstance(body, dict):
        raise _bad("the body is not a JSON object")
    kind = body.get("type")
    if kind not in TYPES:
        raise _bad("type must be one of " + ", ".join(TYPES))
    mission = body.get("mission_s256")
    if mission is not None and not valid_s256(mission):
        raise _bad("mission_s256 is not a base64url SHA-256")
    caps = body.get("capabilities")
    if caps is not None:
        caps = limits.capability_list(caps)
    max_wait = body.get("max_wait")
    if max_wait is not None and (
        not isinstance(max_wait, int) or isinstance(max_wait, bool) or max_wait <= 0
    ):
        raise _bad("max_wait must be a positive integer (seconds)")
    description = limits.string(body, "description", required=False)
    url = code = question = None
    if kind == "question":
        if body.get("question") is None:
            raise _bad("question is required")
        question = limits.string(body, "question", required=True)
        if body.get("url") is not None or body.get("code") is not None:
            raise _bad("url and code belong to interaction and payment relays")
    else:
        if body.get("question") is not None:
            raise _bad("question belongs to question relays")
        url = _interaction_url(body.get("url"), dev_loopback)
        code = _interaction_code(body.get("code"), required=kind == "interaction")
    declared = None if caps is None else frozenset(caps)
    return RelayRequest(kind, description, url, code, question, max_wait, declared, mission)


def _interaction_url(value: object, dev_loopback: bool) -> str:
    if not isinstance(value, str) or not value:
        raise _bad("url is required")
    parts = urlsplit(value)
    origin = f"{parts.scheme}://{parts.netloc}"
    # The person follows this link from our page: only a server's own https origin
    # (loopback http under the development setting), never a query we would extend blindly.
    if not is_server_identifier(origin, dev_loopback=dev_loopback):
        raise _bad("url must be https://host/... (loopback http only in development)")
    if parts.query or parts.fragment or "?" in value or "#" in value:
        raise _bad("url must carry no query or fragment")
    return value


def _interaction_code(value: object, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_CODE:
        raise _bad("code is required (a Crockford base32 interaction code)")
    try:
        normalize_interaction_code(value)
    except ValueError as exc:
        raise _bad("code is not a Crockford base32 interaction code") from exc
    return value


class PageChannel:
    """The built-in channel: the person's PS page, open within the presence TTL.

    Delivery is the relay's listing in the person's inbox, which the page's events endpoint
    reads (:meth:`InteractionRelay.pending_for`) and long-polls; so delivering is done by
    the time this channel is asked.
    """

    name = "ps-page"

    def __init__(self, present: Callable[[str], Steps[bool]]) -> None:
        self._present = present

    def reachable(self, person: str) -> Steps[bool]:
        return self._present(person)

    def deliver(self, relay: RelayView) -> Steps[bool]:
        return done(True)


class InteractionRelay:
    """``POST {interaction_path}`` and the relay pending URLs ``{relay_prefix}{id}``."""

    def __init__(
        self,
        ps: PersonServer,
        *,
        relay_prefix: str | None = None,
        default_max_wait: int = 300,
        retry_after: int | None = None,
        page_channel: bool = True,
    ) -> None:
        cfg = ps.config
        relay_prefix = cfg.relay_prefix if relay_prefix is None else relay_prefix
        if not (relay_prefix.startswith("/") and relay_prefix.endswith("/")):
            raise ValueError("relay_prefix must start and end with '/'")
        self.ps = ps
        self.relay_prefix = relay_prefix
        self.interaction_path = cfg.interaction_path
        self.clock = cfg.clock
        self.dev_loopback = cfg.dev_loopback
        #: A relay is held at most as long as a pending request lives.
        self.max_hold = cfg.pending_lifetime
        self.default_max_wait = min(default_max_wait, self.max_hold)
        self.long_poll_cap = cfg.max_wait
        self.retry_after = cfg.poll_interval if retry_after is None else retry_after
        self.url_for = cfg.url_for
        self.channels: list[Channel] = []
        self._noted: dict[str, tuple[frozenset[str], float]] = {}
        if page_channel:
            self.channels.append(PageChannel(Presence.present_steps))

    # -- wiring ------------------------------------------------------------------------------

    def register(self, channel: Channel) -> None:
        """Add a channel; channels are tried in order, the built-in page channel first."""
        self.channels.append(channel)

    def routes(self) -> list[tuple[str, str]]:
        """``(method, path)`` pairs; a path ending in ``/`` is a prefix."""
        return [
            ("POST", self.interaction_path),
            ("GET", self.relay_prefix),
            ("DELETE", self.relay_prefix),
        ]

    def dispatch_steps(self, request: HttpRequest) -> Steps[HttpResponse | None]:
        """Route one request to the endpoint or a relay URL; None when it is not ours."""
        path = request.path
        if path == self.interaction_path and request.method == "POST":
            return (yield from self.handle_steps(request))
        if path.startswith(self.relay_prefix) and request.method in ("GET", "DELETE"):
            return (yield from self.poll_steps(request, path[len(self.relay_prefix) :]))
        return None

    def handle(self, request: HttpRequest) -> HttpResponse | None:
        """Answer one request synchronously (``None``: not a relay path)."""
        return self.ps.driver.respond(self.dispatch_steps(request))

    async def ahandle(self, request: HttpRequest) -> HttpResponse | None:
        return await self.ps.driver.arespond(self.dispatch_steps(request))

    def _verify_steps(self, request: HttpRequest) -> Steps[VerifiedRequest]:
        return self.ps.agent_verifier.steps(request)

    # -- the interaction endpoint ----------------------------------------------------------

    def handle_steps(self, request: HttpRequest) -> Steps[HttpResponse]:
        verified = yield from self._verify_steps(request)
        if verified.claims.get("parent_agent") is not None:
            raise _bad("a sub-agent cannot relay to the person; its parent agent can")
        body: object = json_body(request)
        if isinstance(body, dict) and body.get("type") == "completion":
            # The completion shape of before -11: the mission endpoint's completion flow.
            endpoints = self.ps.mission_endpoints
            return (yield from endpoints.legacy_completion_steps(request, verified, body))
        relay = parse_relay_body(body, dev_loopback=self.dev_loopback, limits=self.ps.limits)
        ap, agent = str(verified.issuer), str(verified.claims.get("sub"))
        if relay.capabilities is not None:
            yield from self.note_capabilities_steps(ap, agent, relay.capabilities)
        person = yield from self.ps.bindings.person_steps(ap, agent)
        if relay.mission_s256 is not None:
            # Digest 6.4: a relay within a mission that has ended is refused before anything
            # else (mission_not_found for a mission that is not this agent's).
            yield from self.ps.missions.require_steps(relay.mission_s256, ap, agent, person)
        channel: Channel | None = None
        if person is not None:
            for candidate in self.channels:
                if (yield from candidate.reachable(person)):
                    channel = candidate
                    break
        if channel is None or person is None:
            raise (yield from self._refusal_steps(ap, agent, person, relay))
        now = self.clock.now()
        hold = min(relay.max_wait or self.default_max_wait, self.max_hold)
        relay_id = new_id()
        yield from self._admit_steps(ap, agent, relay_id, now + hold)
        data: dict[str, Any] = {
            "type": relay.type,
            "state": "pending",
            "agent": agent,
            "ap": ap,
            "jkt": verified.jkt,
            "person": person,
            "description": relay.description,
            "url": relay.url,
            "code": relay.code,
            "question": relay.question,
            "created": now,
            "deadline": now + hold,
            "channel": channel.name,
            "shown": False,
            "answer": None,
            "mission_s256": relay.mission_s256,
        }
        record = yield StoreOp("create", (KIND_RELAY, relay_id, data, hold + RETENTION))
        yield from self._inbox_add_steps(person, relay_id, now + hold)
        delivered_by = yield from self._deliver_steps(_view(record), channel)
        if delivered_by is None:
            yield StoreOp("delete", (KIND_RELAY, relay_id))
            raise (yield from self._refusal_steps(ap, agent, person, relay))
        if delivered_by != channel.name:
            record = yield from self._update_steps(record, {"channel": delivered_by})
        yield from self._log_steps(record, f"relayed via {delivered_by}")
        return (yield from self._answer_steps(request, record))

    def _deliver_steps(self, view: RelayView, first: Channel) -> Steps[str | None]:
        # The first reachable channel normally takes it; if it fails after all, any later
        # channel that can reach the person gets its turn.
        if (yield from first.deliver(view)):
            return first.name
        later = self.channels[self.channels.index(first) + 1 :]
        for channel in later:
            if (yield from channel.reachable(view.person)) and (yield from channel.deliver(view)):
                return channel.name
        return None

    def _refusal_steps(
        self, ap: str, agent: str, person: str | None, relay: RelayRequest
    ) -> Steps[AAuthError]:
        declared = relay.capabilities
        if declared is None:
            declared = yield from self.declared_capabilities_steps(ap, agent)
        if declared is None or "interaction" in declared:
            error = _problem(
                424,
                "interaction_unavailable",
                "the person server cannot reach the person now; direct the user yourself",
            )
        else:
            error = _problem(
                403,
                "user_unreachable",
                "the person server cannot reach the person and the agent cannot interact",
            )
        log.info(
            "relay agent=%s person=%s type=%s outcome=%s", agent, person, relay.type, error.error
        )
        entry = {"agent": agent, "person": person, "type": relay.type, "outcome": error.error}
        yield from self._log_record_steps(entry, relay.mission_s256)
        return error

    # -- what an agent declared it can do (digest 4.2: the capabilities member) -----------------

    def note_capabilities_steps(
        self, ap: str, agent: str, capabilities: frozenset[str]
    ) -> Steps[None]:
        """Remember the ``capabilities`` member of a token or relay body.

        Only a declaration without ``interaction`` needs keeping (it makes a later relay
        without ``capabilities`` terminal); one with ``interaction`` clears it.
        """
        key = _capabilities_key(ap, agent)
        now = self.clock.now()
        cached = self._noted.get(key)
        if cached is not None and cached[0] == capabilities and cached[1] > now:
            return
        if "interaction" in capabilities:
            yield StoreOp("delete", (KIND_CAPABILITIES, key))
        else:
            data = {"capabilities": sorted(capabilities)}
            yield from upsert_steps(KIND_CAPABILITIES, key, data, CAPABILITIES_TTL)
        if len(self._noted) >= _NOTED_MAX:
            self._noted.clear()
        self._noted[key] = (capabilities, now + _NOTED_FOR)

    @staticmethod
    def declared_capabilities_steps(ap: str, agent: str) -> Steps[frozenset[str] | None]:
        """The agent's last declaration without ``interaction``; None when it made none."""
        record = yield StoreOp("get", (KIND_CAPABILITIES, _capabilities_key(ap, agent)))
        return None if record is None else frozenset(record.data["capabilities"])

    # -- polling -------------------------------------------------------------------------------

    def poll_steps(self, request: HttpRequest, relay_id: str) -> Steps[HttpResponse]:
        """Signed ``GET`` (``Prefer: wait`` honoured) or ``DELETE`` by the relaying agent."""
        if not _ID.fullmatch(relay_id):
            raise _problem(404, "not_found", "no such relay")
        verified = yield from self._verify_steps(request)
        record = yield StoreOp("get", (KIND_RELAY, relay_id))
        if record is None:
            raise _problem(404, "not_found", "no such relay")
        data = record.data
        if (verified.issuer, verified.claims.get("sub"), verified.jkt) != (
            data["ap"],
            data["agent"],
            data["jkt"],
        ):
            raise Forbidden("this relay belongs to another agent")
        if request.method == "DELETE":
            return (yield from self._cancel_steps(record))
        return (yield from self._answer_steps(request, record))

    def _cancel_steps(self, record: Record) -> Steps[HttpResponse]:
        for _ in range(_CONFLICT_RETRIES):
            if record.data["state"] in TERMINAL:
                raise _problem(410, "gone", "this relay has ended")
            try:
                record = yield from self._update_steps(record, {"state": "cancelled"})
            except VersionConflict:
                record = yield from self._reload_steps(record)
                continue
            yield from self._log_steps(record, "cancelled")
            return HttpResponse(204, [("Cache-Control", "no-store")], b"")
        raise self._deferred(record, "pending")

    def _answer_steps(self, request: HttpRequest, record: Record) -> Steps[HttpResponse]:
        wait = prefer_wait(request)
        waited = False
        for _ in range(_CONFLICT_RETRIES):
            try:
                record = yield from self._settle_due_steps(record)
                state = record.data["state"]
                if state in OPEN and not (state == "interacting" and not self._is_question(record)):
                    remaining = record.data["deadline"] - self.clock.now()
                    timeout = min(wait or 0, self.long_poll_cap, remaining)
                    if waited or timeout <= 0:
                        raise self._deferred(record, state)
                    waited = True
                    changed = yield WaitOp(KIND_RELAY, record.id, record.version, timeout)
                    if changed is None:
                        raise _problem(410, "gone", "this relay has ended")
                    record = changed
                    continue
                return (yield from self._report_steps(record))
            except VersionConflict:
                record = yield from self._reload_steps(record)
        raise self._deferred(record, "pending")

    def _settle_due_steps(self, record: Record) -> Steps[Record]:
        """Past ``max_wait`` an open relay has done all it can."""
        data = record.data
        if data["state"] not in OPEN or self.clock.now() < data["deadline"]:
            return record
        engaged = data["state"] == "interacting" and not self._is_question(record)
        return (
            yield from self._update_steps(record, {"state": "engaged" if engaged else "expired"})
        )

    def _report_steps(self, record: Record) -> Steps[HttpResponse]:
        """Answer for an interacting or settled relay; the outcome goes out exactly once."""
        state = record.data["state"]
        if state in TERMINAL:
            raise _problem(410, "gone", "this relay has ended")
        if state == "interacting":
            if not record.data["shown"]:
                record = yield from self._update_steps(record, {"shown": True})
                raise self._deferred(record, "interacting")
            # The agent knows the person engaged; nothing further will happen here.
            state = "engaged"
        record = yield from self._update_steps(record, {"state": "delivered", "outcome": state})
        yield from self._log_steps(record, state)
        if state == "answered":
            return _no_store(HttpResponse.json(200, {"answer": record.data["answer"]}))
        if state == "engaged":
            return _no_store(HttpResponse.json(200, {"status": "engaged"}))
        if state == "declined":
            raise _problem(403, "denied", "the person dismissed this relay")
        raise _problem(408, "expired", "max_wait elapsed before the person responded")

    def _deferred(self, record: Record, status: str) -> Deferred:
        return Deferred(
            self.url_for(self.relay_prefix + record.id),
            retry_after=self.retry_after,
            body_status=status,
        )

    @staticmethod
    def _is_question(record: Record) -> bool:
        return bool(record.data["type"] == "question")

    # -- the person's side (the PS page calls these) -------------------------------------------

    def inbox_steps(self, person: str) -> Steps[Inbox]:
        """The relays waiting for ``person`` (open, before their ``max_wait``)."""
        inbox = yield StoreOp("get", (KIND_INBOX, _person_key(person)))
        if inbox is None:
            return Inbox(0, ())
        now = self.clock.now()
        views: list[RelayView] = []
        for relay_id, deadline in inbox.data["relays"]:
            if deadline <= now:
                continue
            record = yield StoreOp("get", (KIND_RELAY, relay_id))
            if record is not None and record.data["state"] in OPEN:
                views.append(_view(record))
        return Inbox(inbox.version, tuple(views))

    def wait_inbox_steps(self, person: str, version: int, timeout: float) -> Steps[Inbox]:
        """Long-poll for a relay newer than ``version`` (the page learns without reloading)."""
        key = _person_key(person)
        if version == 0:
            # Nothing to wait on yet: an empty inbox gives the next relay a version to move.
            try:
                empty = yield StoreOp(
                    "create", (KIND_INBOX, key, {"relays": []}, self.max_hold + RETENTION)
                )
            except RecordExists:
                return (yield from self.inbox_steps(person))
            version = empty.version
        yield WaitOp(KIND_INBOX, key, version, timeout)
        return (yield from self.inbox_steps(person))

    def pending_for_steps(self, person: str) -> Steps[list[RelayView]]:
        inbox = yield from self.inbox_steps(person)
        return list(inbox.relays)

    def engage_steps(self, relay_id: str, person: str) -> Steps[RelayView]:
        """The person opened the relay; for an interaction, send them to ``view.target``."""
        return (yield from self._person_steps(relay_id, person, "interacting", {}))

    def answer_steps(self, relay_id: str, person: str, answer: str) -> Steps[RelayView]:
        limit = self.ps.limits.text
        if not isinstance(answer, str) or not answer.strip() or len(answer) > limit:
            raise _bad(f"the answer must be a non-empty string of at most {limit} characters")
        return (yield from self._person_steps(relay_id, person, "answered", {"answer": answer}))

    def decline_steps(self, relay_id: str, person: str) -> Steps[RelayView]:
        return (yield from self._person_steps(relay_id, person, "declined", {}))

    def _person_steps(
        self, relay_id: str, person: str, target: str, extra: Mapping[str, Any]
    ) -> Steps[RelayView]:
        record = (yield StoreOp("get", (KIND_RELAY, relay_id))) if _ID.fullmatch(relay_id) else None
        # Someone else's relay and no relay at all look the same to the page.
        if record is None or record.data["person"] != person:
            raise _problem(404, "not_found", "no such relay")
        for _ in range(_CONFLICT_RETRIES):
            record = yield from self._settle_due_steps(record)
            state = record.data["state"]
            if target == "answered" and not self._is_question(record):
                raise _bad("only a question relay takes an answer")
            if state not in OPEN:
                raise _problem(409, "relay_closed", "this relay is no longer open")
            if state == target:
                return _view(record)
            try:
                record = yield from self._update_steps(record, {"state": target, **extra})
            except VersionConflict:
                record = yield from self._reload_steps(record)
                continue
            if target != "interacting":
                yield from self._log_steps(record, f"person {target}")
            return _view(record)
        raise _problem(409, "relay_closed", "this relay changed concurrently; try again")

    # sync and async twins for the page
    def pending_for(self, person: str) -> list[RelayView]:
        return self.ps.run(self.pending_for_steps(person))

    async def apending_for(self, person: str) -> list[RelayView]:
        return await self.ps.arun(self.pending_for_steps(person))

    def inbox(self, person: str) -> Inbox:
        return self.ps.run(self.inbox_steps(person))

    async def ainbox(self, person: str) -> Inbox:
        return await self.ps.arun(self.inbox_steps(person))

    async def await_inbox(self, person: str, version: int, timeout: float) -> Inbox:
        return await self.ps.arun(self.wait_inbox_steps(person, version, timeout))

    def engage(self, relay_id: str, person: str) -> RelayView:
        return self.ps.run(self.engage_steps(relay_id, person))

    async def aengage(self, relay_id: str, person: str) -> RelayView:
        return await self.ps.arun(self.engage_steps(relay_id, person))

    def answer(self, relay_id: str, person: str, answer: str) -> RelayView:
        return self.ps.run(self.answer_steps(relay_id, person, answer))

    async def aanswer(self, relay_id: str, person: str, answer: str) -> RelayView:
        return await self.ps.arun(self.answer_steps(relay_id, person, answer))

    def decline(self, relay_id: str, person: str) -> RelayView:
        return self.ps.run(self.decline_steps(relay_id, person))

    async def adecline(self, relay_id: str, person: str) -> RelayView:
        return await self.ps.arun(self.decline_steps(relay_id, person))

    # -- records ------------------------------------------------------------------------------

    def _update_steps(self, record: Record, changes: Mapping[str, Any]) -> Steps[Record]:
        """Compare-and-set; a lost race surfaces as VersionConflict, a vanished record as 410."""
        data = {**record.data, **changes}
        try:
            updated = yield StoreOp(
                "compare_and_set", (KIND_RELAY, record.id, record.version, data)
            )
        except RecordNotFound:
            raise _problem(410, "gone", "this relay has ended") from None
        assert isinstance(updated, Record)
        return updated

    def _reload_steps(self, record: Record) -> Steps[Record]:
        fresh = yield StoreOp("get", (KIND_RELAY, record.id))
        if fresh is None:
            raise _problem(410, "gone", "this relay has ended")
        assert isinstance(fresh, Record)
        return fresh

    def _admit_steps(self, ap: str, agent: str, relay_id: str, deadline: float) -> Steps[None]:
        """One more open relay of this agent, or ``429 slow_down`` at ``max_pending_per_agent``
        (the person's relay list must not be fillable).  The agent's relay ids are one record
        changed by compare-and-set; relays that ended are dropped when it is full."""
        cap = self.ps.config.max_pending_per_agent
        key = digest_id("relay-agent", ap, agent)
        for _ in range(_CONFLICT_RETRIES):
            now = self.clock.now()
            record = yield StoreOp("get", (KIND_AGENT_RELAYS, key))
            entries = [] if record is None else [e for e in record.data["relays"] if e[1] > now]
            if len(entries) >= cap:
                entries = yield from self._still_open_steps(entries)
            if len(entries) >= cap:
                break
            entries.append([relay_id, deadline])
            ttl = max(e[1] for e in entries) - now + RETENTION
            try:
                if record is None:
                    yield StoreOp("create", (KIND_AGENT_RELAYS, key, {"relays": entries}, ttl))
                else:
                    args = (KIND_AGENT_RELAYS, key, record.version, {"relays": entries}, ttl)
                    yield StoreOp("compare_and_set", args)
                return
            except (VersionConflict, RecordExists, RecordNotFound):
                continue
        raise slow_down(
            f"this agent already has {cap} open relays; wait for the person to answer",
            self.retry_after,
        )

    def _still_open_steps(self, entries: list[Any]) -> Steps[list[Any]]:
        kept = []
        for entry in entries:
            record = yield StoreOp("get", (KIND_RELAY, entry[0]))
            if record is not None and record.data["state"] in OPEN:
                kept.append(entry)
        return kept

    def _inbox_add_steps(self, person: str, relay_id: str, deadline: float) -> Steps[None]:
        key = _person_key(person)
        for _ in range(_CONFLICT_RETRIES):
            now = self.clock.now()
            inbox = yield StoreOp("get", (KIND_INBOX, key))
            entries = [] if inbox is None else [e for e in inbox.data["relays"] if e[1] > now]
            entries.append([relay_id, deadline])
            ttl = max(e[1] for e in entries) - now + RETENTION
            try:
                if inbox is None:
                    yield StoreOp("create", (KIND_INBOX, key, {"relays": entries}, ttl))
                else:
                    yield StoreOp(
                        "compare_and_set",
                        (KIND_INBOX, key, inbox.version, {"relays": entries}, ttl),
                    )
                return
            except (VersionConflict, RecordExists, RecordNotFound):
                continue
        raise _problem(503, "temporarily_unavailable", "the person's relay list is busy")

    def _log_steps(self, record: Record, outcome: str) -> Steps[None]:
        data = record.data
        log.info(
            "relay %s agent=%s person=%s type=%s outcome=%s",
            record.id,
            data["agent"],
            data["person"],
            data["type"],
            outcome,
        )
        entry = {
            "relay": record.id,
            "agent": data["agent"],
            "person": data["person"],
            "type": data["type"],
            "channel": data["channel"],
            "outcome": outcome,
        }
        yield from self._log_record_steps(entry, data.get("mission_s256"))

    def _log_record_steps(self, entry: Mapping[str, Any], mission: str | None) -> Steps[None]:
        data = {**entry, "at": self.clock.now()}
        yield StoreOp("create", (KIND_RELAY_LOG, new_id(), data, RELAY_LOG_TTL))
        if mission is not None:
            # Digest 6.4: within a mission, relays go to the mission log as well.
            yield from self.ps.missions.log_steps(mission, {"event": "relay", **entry})


KIND_CAPABILITIES = "agent-capabilities"
#: How long a declaration counts when a later body says nothing (an agent token's lifetime).
CAPABILITIES_TTL = 86400
#: A worker skips rewriting the declaration it wrote itself for this long.  Another worker
#: may have written another one meanwhile; the worst case is a 424 where 403 was due, which
#: the agent survives by directing the user itself.
_NOTED_FOR = 60.0
_NOTED_MAX = 4096


def _capabilities_key(ap: str, agent: str) -> str:
    return digest_id("capabilities", ap, agent)


def _view(record: Record) -> RelayView:
    data = record.data
    return RelayView(
        id=record.id,
        type=data["type"],
        state=data["state"],
        person=data["person"],
        agent=data["agent"],
        agent_provider=data["ap"],
        description=data["description"],
        url=data["url"],
        code=data["code"],
        question=data["question"],
        created_at=data["created"],
        deadline=data["deadline"],
        channel=data["channel"],
    )
