"""Mission Control: the person's view of their missions, as pages and as a JSON API.

Mounted at a base path (``/missions`` in the example PS), behind the application's
``authenticate`` hook, with the consent pages' rules: every page carries the toolkit's CSP
(``default-src 'none'``, ``frame-ancestors 'none'``), every form a CSRF token (an HMAC over a
per-browser cookie nonce, the person and the mission), POSTs from another site are refused,
and every agent-supplied text is rendered as sanitised Markdown.

Pages:

- ``GET {base}``: the person's missions, newest first, with their status.
- ``GET {base}/{s256}[?before=N]``: one mission: description and accepted updates, tools,
  resources, the agent (agent-asserted), the buttons "Suspend", "Resume" and "Revoke",
  completion proposals with "Accept" and "Ask a follow-up", which resources confirmed the
  revocation of the mission's tokens (or honour them "until <exp>"), and the audit timeline,
  newest first, 50 lines a page.
- ``POST {base}/{s256}/status`` (``action`` = ``suspend`` | ``resume`` | ``revoke``) and
  ``POST {base}/{s256}/completion`` (``request``, ``action`` = ``accept`` | ``followup``).

JSON API (for applications; JSON bodies only, so a cross-site form cannot post one):
``GET {base}/api/missions``, ``GET {base}/api/missions/{s256}``,
``GET {base}/api/missions/{s256}/log?before=N&limit=M`` and
``POST {base}/api/missions/{s256}/{suspend|resume|revoke}``.

Suspend and resume are our extension over -11: a suspended mission answers ``403
mission_suspended`` at every PS endpoint and its pending requests wait; its tokens are
revoked at the resources as on revoke (:mod:`.halt`); resume makes it active again (the
agent then needs fresh tokens).  Revoke ends it for good (``revoked``).
"""

from __future__ import annotations

import re
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import urlencode, urlsplit

from markupsafe import Markup

from ..errors import AAuthError
from ..http import Headers, HttpRequest, HttpResponse, json_bytes, small_uint
from ..pagekit import (
    Authenticate,
    Renderer,
    check_csrf,
    check_secret,
    csrf_token,
    form_fields,
    is_loopback,
    new_nonce,
    query_params,
    read_cookie,
    redirect,
    same_origin_post,
    secured,
    set_cookie,
)
from ..pagekit.markdown import render_markdown
from ..records import LogEntry, OutboxItem, RecordOps, RecordStore, Txn
from ..steps import Steps
from ..storage.base import Record
from .model import SUSPENDED, TERMINATED, Mission, valid_s256
from .registry import Missions

TEMPLATES: Final = Path(__file__).with_name("templates")
ASSETS: Final = ("missions.css",)
NONCE_COOKIE: Final = "aauth_missions"
PAGE: Final = 50
#: The most log lines one API page returns; a larger ``limit`` gets this many.
MAX_LIMIT: Final = 200
#: A log line number (an SQL INTEGER): a larger ``before`` means "from the newest".
MAX_SEQ: Final = 2**31 - 1
MAX_QUESTION: Final = 2000
ACTIONS: Final = ("suspend", "resume", "revoke")
_S256_TAIL = re.compile(r"^/([A-Za-z0-9_-]{43})(/[a-z]+)?$")


class ControlHost(Protocol):
    """What Mission Control uses of the Person Server."""

    missions: Missions
    records: RecordStore
    rec: RecordOps

    @property
    def consent(self) -> Any: ...

    def run(self, steps: Steps[Any]) -> Any: ...

    async def arun(self, steps: Steps[Any]) -> Any: ...


def _iso(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Line:
    """One line of the audit timeline: time, agent -> resource, what, outcome and why."""

    seq: int
    at: str
    who: str
    target: str
    what: str
    outcome: str
    why: Markup
    css: str


def timeline_line(entry: LogEntry) -> Line:
    d = entry.detail
    scope = " ".join(entry.scope or ())
    who = entry.agent or entry.actor or ""
    target = entry.resource or str(d.get("action") or "")
    outcome = entry.decision or ""
    why = render_markdown(entry.reason) if entry.reason else Markup("")
    what = entry.event.replace("_", " ")
    if entry.event == "decision":
        kind = str(d.get("kind") or "")
        label = {"person": "person token", "auth": "auth token"}.get(kind, kind.replace("_", " "))
        what = f"{label}, scope: {scope}" if scope else label
        outcome = f"{entry.decision} ({entry.actor})" if entry.actor else outcome
    elif entry.event == "token_issued":
        what = f"{d.get('kind')} token issued" + (f", scope: {scope}" if scope else "")
        outcome = f"until {_iso(_float(d.get('exp')))}" if d.get("exp") else "issued"
    elif entry.event == "permission":
        what = f"tool {d.get('action')}"
    elif entry.event == "audit":
        what = f"did {d.get('action')}"
        why = render_markdown(str(d.get("description") or ""))
    elif entry.event == "revocation":
        who = "PS"
        what = f"revoke {d.get('kind') or ''} token".replace("  ", " ")
        if entry.decision in ("unsupported", "expired", "unavailable"):
            outcome = f"{entry.decision}: honoured until {_iso(_float(d.get('exp')))}"
    elif entry.event in ("approved", "suspended", "resumed", "terminated"):
        who = entry.actor or ""
        target = "mission"
        outcome = entry.event + (f" ({entry.reason})" if entry.reason else "")
        why = Markup("")
        what = "status"
    elif entry.event == "revocations_queued":
        who, target = "PS", ", ".join(d.get("resources") or [])
        what = f"revoke {d.get('tokens')} token(s) after {entry.reason}"
        why = Markup("")
    elif entry.event in ("completion_proposed", "update_proposed"):
        what = "proposes completion" if entry.event == "completion_proposed" else "proposes update"
        why = render_markdown(str(d.get("summary") or d.get("description") or ""))
    elif entry.event == "update_accepted":
        who, what, outcome = entry.actor or "", "update", "accepted"
    css = {"granted": "granted", "denied": "denied", "revoked": "granted"}.get(
        entry.decision or "", "neutral"
    )
    return Line(entry.seq, _iso(entry.at), who, target, what, outcome, why, css)


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


@dataclass(frozen=True, slots=True)
class Halted:
    """Where the mission's tokens stand at one resource after a suspend or revoke."""

    resource: str
    state: str  # confirmed | pending | until <exp> | gave up
    detail: str


def halted(items: Sequence[OutboxItem]) -> list[Halted]:
    by_resource: dict[str, list[OutboxItem]] = {}
    for item in items:
        by_resource.setdefault(item.recipient, []).append(item)
    out = []
    for resource, group in sorted(by_resource.items()):
        statuses = {i.status for i in group}
        latest = max(i.exp for i in group)
        if statuses == {"revoked"}:
            state = "confirmed"
        elif "pending" in statuses:
            state = "pending"
        else:
            state = f"until {_iso(latest)}"
        details = "; ".join(sorted({i.detail for i in group if i.detail}))
        out.append(Halted(resource, state, details))
    return out


def mission_json(mission: Mission) -> dict[str, Any]:
    doc = mission.document
    return {
        "s256": mission.s256,
        "status": mission.state,
        "termination_reason": mission.termination_reason,
        "agent": mission.agent,
        "agent_issuer": mission.agent_issuer,
        "approved_at": doc.get("approved_at"),
        "expires_at": doc.get("expires_at"),
        "description": mission.description,
        "updates": [
            {"s256": u.s256, "description": u.description, "accepted_by": u.accepted_by}
            for u in mission.updates
        ],
        "approved_tools": list(mission.approved_tools),
        "approved_resources": list(mission.approved_resources or ()),
    }


Flow = Generator[Any, Any, HttpResponse]


class MissionControl:
    """Mission Control of one Person Server, mounted at ``base`` (``/missions``)."""

    def __init__(
        self,
        ps: ControlHost,
        *,
        authenticate: Authenticate,
        secret: bytes,
        base: str = "/missions",
        login_path: str = "/login",
        consent_path: str = "/consent",
        templates_dir: str | Path | None = None,
        server_name: str = "Person Server",
    ) -> None:
        if not base.startswith("/") or base.endswith("/"):
            raise ValueError("base must be an absolute path without a final '/'")
        self.ps = ps
        self.authenticate = authenticate
        self.secret = check_secret(secret)
        self.base = base
        self.login_path = login_path
        self.consent_path = consent_path
        config = getattr(ps, "config", None)
        self.rounds = int(getattr(config, "clarification_rounds", 5))
        self.renderer = Renderer(
            templates_dir,
            TEMPLATES,
            server_name=server_name,
            static=base + "/static",
            assets=ASSETS,
        )

    def routes(self) -> list[tuple[str, str]]:
        return [
            ("GET", self.base),
            ("GET", self.base + "/"),
            ("POST", self.base + "/"),
        ]

    # -- drivers --------------------------------------------------------------------------------

    def handle(self, request: HttpRequest) -> HttpResponse | None:
        flow = self._route(request)
        if flow is None:
            return None
        try:
            return secured(self.ps.run(flow))
        except AAuthError as error:
            return self._failure(request, error)

    async def ahandle(self, request: HttpRequest) -> HttpResponse | None:
        flow = self._route(request)
        if flow is None:
            return None
        try:
            return secured(await self.ps.arun(flow))
        except AAuthError as error:
            return self._failure(request, error)

    def _route(self, request: HttpRequest) -> Flow | None:
        path, method = request.path, request.method
        if path == self.base or path == self.base + "/":
            return self._index(request) if method == "GET" else None
        if not path.startswith(self.base + "/"):
            return None
        rest = path[len(self.base) :]
        if rest == "/static/missions.css" and method == "GET":
            return self._static()
        if rest.startswith("/api/"):
            return self._api(request, rest[len("/api") :])
        match = _S256_TAIL.match(rest)
        if match is None:
            return self._not_found(request)
        s256, action = match.group(1), match.group(2)
        if action is None and method == "GET":
            return self._mission_page(request, s256)
        if action == "/status" and method == "POST":
            return self._status_form(request, s256)
        if action == "/completion" and method == "POST":
            return self._completion_form(request, s256)
        return self._not_found(request)

    def _failure(self, request: HttpRequest, error: AAuthError) -> HttpResponse:
        if "/api/" in request.path:
            return secured(error.to_response())
        status = error.status if error.status >= 400 else 500
        return self.renderer.problem(
            status, "Something went wrong", "Mission Control could not do that. Try again."
        )

    # -- helpers --------------------------------------------------------------------------------

    def _static(self) -> Flow:
        response = self.renderer.static_file("missions.css")
        assert response is not None
        return response
        yield

    def _not_found(self, request: HttpRequest) -> Flow:
        if "/api/" in request.path:
            return _json(404, {"error": "not_found", "detail": "no such mission"})
        return self.renderer.problem(404, "No such mission", "It does not exist or is not yours.")
        yield

    def _login(self, request: HttpRequest) -> HttpResponse:
        parts = urlsplit(request.url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        return redirect(f"{self.login_path}?{urlencode({'next': target})}")

    def _nonce(self, request: HttpRequest) -> tuple[str, Headers]:
        nonce = read_cookie(request, NONCE_COOKIE)
        if nonce and len(nonce) <= 64:
            return nonce, []
        nonce = new_nonce()
        cookie = set_cookie(
            NONCE_COOKIE, nonce, secure=not is_loopback(request.url), same_site="Strict"
        )
        return nonce, [cookie]

    def _csrf(self, nonce: str, person: str, s256: str) -> str:
        return csrf_token(self.secret, f"{nonce}\0{person}", "mission:" + s256, "")

    def _csrf_ok(self, request: HttpRequest, person: str, s256: str, token: str | None) -> bool:
        nonce = read_cookie(request, NONCE_COOKIE)
        session = f"{nonce}\0{person}" if nonce else None
        return same_origin_post(request) and check_csrf(
            self.secret, token, session, "mission:" + s256, ""
        )

    def _owned_steps(self, s256: str, person: str) -> Steps[Mission | None]:
        if not valid_s256(s256):
            return None
        mission = yield from self.ps.missions.current_steps(s256)
        # Another person's mission and no mission look the same.
        return mission if mission is not None and mission.person == person else None

    def _op(self, txn: Txn[Any]) -> Any:
        return self.ps.records.op(txn)

    def _completions_steps(self, s256: str, person: str) -> Steps[list[Record]]:
        records: list[Record] = yield from self.ps.consent.open_records_steps(person)
        return [
            r
            for r in records
            if r.data.get("mission_s256") == s256 and r.data.get("kind") == "completion"
        ]

    def _act_steps(self, s256: str, person: str, action: str) -> Steps[Mission]:
        missions = self.ps.missions
        if action == "suspend":
            return (yield from missions.suspend_steps(s256, person))
        if action == "resume":
            return (yield from missions.resume_steps(s256, person))
        return (yield from missions.terminate_steps(s256, "revoked", actor=person))

    # -- pages ----------------------------------------------------------------------------------

    def _index(self, request: HttpRequest) -> Flow:
        person = self.authenticate(request)
        if person is None:
            return self._login(request)
        missions = yield from self.ps.missions.of_person_steps(person, limit=200)
        rows = [
            {
                "s256": m.s256,
                "url": f"{self.base}/{m.s256}",
                "status": m.state,
                "reason": m.termination_reason,
                "agent": m.agent,
                "approved_at": m.document.get("approved_at", ""),
                "title": render_markdown(m.description.strip().splitlines()[0]),
            }
            for m in missions
        ]
        return self.renderer.page("control_index.html", person=person, missions=rows)

    def _mission_page(self, request: HttpRequest, s256: str) -> Flow:
        person = self.authenticate(request)
        if person is None:
            return self._login(request)
        mission = yield from self._owned_steps(s256, person)
        if mission is None:
            return (yield from self._not_found(request))
        before = small_uint(query_params(request).get("before"), MAX_SEQ)
        entries: list[LogEntry] = yield from self.ps.missions.page_steps(
            s256, before=before, limit=PAGE + 1
        )
        older = entries[PAGE - 1].seq if len(entries) > PAGE else None
        lines = [timeline_line(e) for e in entries[:PAGE]]
        items = yield self._op(self.ps.rec.outbox_items(mission=s256))
        completions = yield from self._completions_steps(s256, person)
        nonce, headers = self._nonce(request)
        csrf = self._csrf(nonce, person, s256)
        doc = mission.document
        context = {
            "person": person,
            "mission": mission,
            "description": render_markdown(mission.description),
            "updates": [
                {
                    "text": render_markdown(u.description),
                    "by": u.accepted_by,
                    "at": _iso(u.accepted_at),
                }
                for u in mission.updates
            ],
            "tools": [
                {
                    "name": str(t.get("name", "")),
                    "description": render_markdown(t.get("description")),
                }
                for t in mission.approved_tools
            ],
            "resources": list(mission.approved_resources or ()),
            "approved_at": doc.get("approved_at", ""),
            "expires_at": doc.get("expires_at"),
            "halted": halted(items),
            "lines": lines,
            "older": f"{self.base}/{s256}?before={older}" if older is not None else None,
            "newest": f"{self.base}/{s256}" if before is not None else None,
            "completions": [
                {
                    "id": r.id,
                    "summary": render_markdown(str((r.data.get("proposal") or {}).get("summary"))),
                    "state": r.data["state"],
                    "questions": [
                        {
                            "question": render_markdown(c["question"]),
                            "answer": None if c["answer"] is None else render_markdown(c["answer"]),
                        }
                        for c in r.data.get("clarifications", [])
                    ],
                    "can_ask": "clarification" in r.data.get("capabilities", [])
                    and r.data["state"] in ("pending", "interacting")
                    and len(r.data.get("clarifications", [])) < self.rounds,
                    "consent_url": f"{self.consent_path}?{urlencode({'request': r.id})}",
                }
                for r in completions
            ],
            "csrf": csrf,
            "status_path": f"{self.base}/{s256}/status",
            "completion_path": f"{self.base}/{s256}/completion",
            "base": self.base,
            "suspended": mission.state == SUSPENDED,
            "terminated": mission.state == TERMINATED,
        }
        return self.renderer.page("control_mission.html", headers=headers, **context)

    def _status_form(self, request: HttpRequest, s256: str) -> Flow:
        person = self.authenticate(request)
        if person is None:
            return self._login(request)
        form = form_fields(request)
        if not self._csrf_ok(request, person, s256, form.get("csrf")):
            return self._expired(person)
        action = form.get("action", "")
        if action not in ACTIONS:
            return self.renderer.problem(400, "Unknown action", "Choose Suspend, Resume or Revoke.")
        mission = yield from self._owned_steps(s256, person)
        if mission is None:
            return (yield from self._not_found(request))
        yield from self._act_steps(s256, person, action)
        return redirect(f"{self.base}/{s256}")

    def _completion_form(self, request: HttpRequest, s256: str) -> Flow:
        person = self.authenticate(request)
        if person is None:
            return self._login(request)
        form = form_fields(request)
        if not self._csrf_ok(request, person, s256, form.get("csrf")):
            return self._expired(person)
        mission = yield from self._owned_steps(s256, person)
        pending_id = form.get("request", "")
        completions = yield from self._completions_steps(s256, person)
        if mission is None or pending_id not in {r.id for r in completions}:
            return (yield from self._not_found(request))
        action = form.get("action", "")
        if action == "accept":
            yield from self.ps.consent.approve_steps(pending_id, person)
        elif action == "followup":
            question = form.get("question", "").strip()
            if not question or len(question) > MAX_QUESTION:
                return self.renderer.problem(
                    400, "Empty question", "Write your follow-up question."
                )
            yield from self.ps.consent.engage_steps(pending_id, person)
            yield from self.ps.consent.ask_steps(pending_id, person, question)
        else:
            return self.renderer.problem(400, "Unknown action", "Choose Accept or Ask a follow-up.")
        return redirect(f"{self.base}/{s256}")

    def _expired(self, person: str) -> HttpResponse:
        return self.renderer.problem(
            403,
            "This form has expired",
            "The page was not submitted from this server, or your session changed. "
            "Open the mission again.",
            person=person,
        )

    # -- JSON API -------------------------------------------------------------------------------

    def _api(self, request: HttpRequest, rest: str) -> Flow:
        person = self.authenticate(request)
        if person is None:
            return _json(401, {"error": "login_required", "detail": "sign in first"})
        method = request.method
        if rest == "/missions" and method == "GET":
            missions = yield from self.ps.missions.of_person_steps(person, limit=200)
            return _json(200, {"missions": [mission_json(m) for m in missions]})
        parts = rest.split("/")
        # ["", "missions", s256, (log | action)?]
        if len(parts) < 3 or parts[1] != "missions" or not valid_s256(parts[2]):
            return (yield from self._not_found(request))
        s256 = parts[2]
        tail = parts[3] if len(parts) > 3 else None
        mission = yield from self._owned_steps(s256, person)
        if mission is None or len(parts) > 4:
            return (yield from self._not_found(request))
        if tail is None and method == "GET":
            items = yield self._op(self.ps.rec.outbox_items(mission=s256))
            body = mission_json(mission)
            body["revocations"] = [
                {"resource": h.resource, "state": h.state, "detail": h.detail}
                for h in halted(items)
            ]
            completions = yield from self._completions_steps(s256, person)
            body["completion_proposals"] = [
                {"request": r.id, "summary": (r.data.get("proposal") or {}).get("summary")}
                for r in completions
            ]
            return _json(200, body)
        if tail == "log" and method == "GET":
            query = query_params(request)
            before = small_uint(query.get("before"), MAX_SEQ)
            limit = small_uint(query.get("limit"), MAX_LIMIT)
            limit = PAGE if limit is None else limit
            entries = yield from self.ps.missions.page_steps(s256, before=before, limit=limit + 1)
            more = len(entries) > limit
            entries = entries[:limit]
            return _json(
                200,
                {
                    "entries": [e.as_dict() for e in entries],
                    "next_before": entries[-1].seq if more and entries else None,
                },
            )
        if tail in ACTIONS and method == "POST":
            media = (request.header("content-type") or "").split(";")[0].strip().lower()
            if media != "application/json" or not same_origin_post(request):
                return _json(403, {"error": "forbidden", "detail": "JSON from this origin only"})
            moved = yield from self._act_steps(s256, person, tail)
            return _json(200, mission_json(moved))
        return (yield from self._not_found(request))


def _json(status: int, body: Mapping[str, Any]) -> HttpResponse:
    return HttpResponse(
        status,
        [("Content-Type", "application/json"), ("Cache-Control", "no-store")],
        json_bytes(dict(body)),
    )


__all__ = ["Halted", "Line", "MissionControl", "halted", "mission_json", "timeline_line"]
