"""The Person Server's consent pages: server-rendered HTML over the PS consent API.

Framework-neutral like the rest of the core (``HttpRequest -> HttpResponse``, sync and
async).  The application authenticates the person through a hook; :class:`DemoLogin` is a
small password form for the examples and tests.

Routes under the PS ``consent_path`` (``/consent`` by default):

- ``GET /consent?code=...[&callback=...]`` redeems the interaction code and redirects to
  ``GET /consent?request=ID[&callback=...]`` (so a reload never re-presents a used code);
  without either parameter it lists the person's open requests.
- ``POST /consent/decide``: ``approve`` | ``deny`` | ``ask`` with a CSRF token.
- ``GET /consent/events``: JSON the open page polls every 2 s (the built-in relay channel):
  the open requests, the shown request's fragments and the person's open interaction relays.
- ``POST /consent/relay``: ``engage`` | ``answer`` | ``decline`` one relay, with a CSRF token.
- ``GET /consent/static/consent.js|consent.css``: the page's only script and style (CSP).

Decisions the digest leaves open, made here: the CSRF token is an HMAC over a per-browser
cookie nonce, the person, the pending id and the callback; a ``callback`` must match the
agent provider's ``callback_endpoint`` in scheme, host, port and path (any query), or be a
loopback ``http(s)`` URL when the provider allows ``localhost_callback_allowed``; a refused
callback answers ``400`` without redeeming anything further and leaves the request in the
person's open list.  A relay's CSRF token is the same HMAC with ``relay:{id}`` in place of the
pending id and no callback.  A relay form posted by the page's script (``Accept:
application/json``) gets JSON back (for ``engage``, the ``target`` the script then opens in a
new tab); a plain form post gets a page with the link (``engage``) or a redirect back to the
page it came from.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, urlencode, urlsplit

from markupsafe import Markup

from ..clock import SYSTEM_CLOCK, Clock
from ..errors import AAuthError
from ..http import Headers, HttpRequest, HttpResponse, json_bytes
from ..pagekit import (
    CSP,
    SECURITY_HEADERS,
    Authenticate,
    Renderer,
    SessionCodec,
    check_csrf,
    check_secret,
    csp,
    csrf_token,
    new_nonce,
    read_cookie,
    redirect,
    safe_next,
    same_origin_post,
    secured,
    with_query,
)
from ..pagekit import form_fields as _form
from ..pagekit import is_loopback as _is_loopback
from ..pagekit import origin_of as _origin
from ..pagekit import query_params as _query
from ..pagekit import set_cookie as cookie_header
from ..pagekit.markdown import render_markdown
from ..tokens.aauth import DWK_AGENT
from .lifecycle import OPEN, State

if TYPE_CHECKING:
    from .channels import RelayView
    from .consent import ConsentView
    from .server import PersonServer

__all__ = [
    "CSP",
    "SECURITY_HEADERS",
    "Authenticate",
    "ConsentPages",
    "DemoLogin",
    "callback_allowed",
    "csp",
]

#: This family's templates and its only script and style (``base.html`` links them).
TEMPLATES: Final = Path(__file__).with_name("templates")
#: The mission consent page (a proposal, an update, a completion, a permission) lives with
#: the missions package; it is a consent page like the others.
MISSION_TEMPLATES: Final = Path(__file__).parent.parent / "missions" / "templates"
MISSION_KINDS: Final = ("mission", "mission_update", "completion", "permission")
ASSETS: Final = ("consent.css", "consent.js")
NONCE_COOKIE: Final = "aauth_consent"
MAX_QUESTION: Final = 2000
#: The demo login's CSRF token: the consent HMAC over the pre-session nonce and this label.
_LOGIN_CSRF: Final = "login"
_LOGIN_NONCE: Final = re.compile(r"[A-Za-z0-9_-]{22}")


def _renderer(templates_dir: str | Path | None, server_name: str, static: str) -> Renderer:
    return Renderer(
        templates_dir,
        TEMPLATES,
        MISSION_TEMPLATES,
        server_name=server_name,
        static=static,
        assets=ASSETS,
    )


# --- callback validation (digest 6.3) -------------------------------------------------------


def callback_allowed(callback: str, agent_metadata: Mapping[str, object]) -> bool:
    """Whether the agent provider's metadata admits ``callback`` as a redirect target."""
    try:
        parts = urlsplit(callback)
        port = parts.port
    except ValueError:
        return False
    if parts.fragment or parts.username or parts.password or not parts.hostname:
        return False
    if any(ord(c) < 0x21 for c in callback):
        return False
    registered = agent_metadata.get("callback_endpoint")
    if isinstance(registered, str):
        reg = urlsplit(registered)
        try:
            reg_port = reg.port
        except ValueError:
            reg_port = None
        if (
            reg.scheme in ("https", "http")
            and parts.scheme == reg.scheme
            and (parts.hostname or "") == (reg.hostname or "").lower()
            and port == reg_port
            and parts.path == reg.path
        ):
            return True
    if agent_metadata.get("localhost_callback_allowed") is True:
        return parts.scheme in ("http", "https") and _is_loopback(callback)
    return False


# Consent-API failures mapped onto the callback error vocabulary of digest 6.3.
_CALLBACK_ERRORS: Final = {"expired": "interaction_expired", "denied": "access_denied"}


# --- the view the templates see --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScopeItem:
    name: str
    description: Markup


@dataclass(frozen=True, slots=True)
class Round:
    question: Markup
    answer: Markup | None


@dataclass(frozen=True, slots=True)
class PageRequest:
    """A ``ConsentView`` with every agent- and resource-supplied string sanitised."""

    id: str
    kind: str
    state: str
    open: bool
    agent: str
    agent_issuer: str
    resource: str
    resource_name: Markup
    resource_description: Markup
    scopes: tuple[ScopeItem, ...]
    justification: Markup
    platform: Markup
    device: Markup
    clarifications: tuple[Round, ...]
    rounds_left: int
    can_ask: bool
    awaiting_answer: bool
    expires_iso: str
    binds_agent: bool
    #: The mission the request belongs to: its description (sanitised Markdown), digest and
    #: approval time; None when the request names no mission.
    mission: Markup | None = None
    mission_s256: str | None = None
    mission_approved: str | None = None
    mission_status: str | None = None
    #: The mission's accepted updates (sanitised Markdown), oldest first.
    mission_updates: tuple[Markup, ...] = ()
    #: A proposed update (``mission_update`` only): how many accepted updates the mission
    #: may hold (``max_mission_updates``), so the page says how much room is left.
    mission_update_limit: int | None = None
    #: What the agent proposes (mission kinds only; all agent-asserted, sanitised).
    proposal_description: Markup | None = None
    #: The proposed description as text, for the person to edit before approving.
    proposal_description_raw: str = ""
    proposal_tools: tuple[ScopeItem, ...] = ()
    proposal_resources: tuple[str, ...] = ()
    summary: Markup | None = None
    permission_action: str = ""
    permission_parameters: str = ""


def _page_proposal(view: ConsentView) -> dict[str, Any]:
    proposal = view.proposal
    if not proposal:
        return {}
    out: dict[str, Any] = {}
    description = proposal.get("description")
    if isinstance(description, str):
        out["proposal_description"] = render_markdown(description)
        out["proposal_description_raw"] = description
    tools = proposal.get("tools")
    if isinstance(tools, list):
        out["proposal_tools"] = tuple(
            ScopeItem(str(t.get("name", "")), render_markdown(t.get("description")))
            for t in tools
            if isinstance(t, dict)
        )
    resources = proposal.get("resources")
    if isinstance(resources, list):
        out["proposal_resources"] = tuple(str(r) for r in resources)
    summary = proposal.get("summary")
    if isinstance(summary, str):
        out["summary"] = render_markdown(summary)
    action = proposal.get("action")
    if isinstance(action, str):
        out["permission_action"] = action
        parameters = proposal.get("parameters")
        if parameters:
            out["permission_parameters"] = json.dumps(parameters, indent=2, sort_keys=True)
    return out


def _page_request(view: ConsentView, update_limit: int | None = None) -> PageRequest:
    """``update_limit``: the PS's ``max_mission_updates``, shown on an update's page."""
    state = str(view.state)
    is_open = state in {s.value for s in OPEN}
    rounds = tuple(
        Round(render_markdown(q), None if a is None else render_markdown(a))
        for q, a in view.clarifications
    )
    scopes = tuple(ScopeItem(name, render_markdown(text)) for name, text in view.scopes)
    rounds_left = int(view.rounds_left)
    return PageRequest(
        id=str(view.pending_id),
        kind=str(view.kind),
        state=state,
        open=is_open,
        agent=str(view.agent),
        agent_issuer=str(view.agent_issuer),
        resource=str(view.resource),
        resource_name=render_markdown(view.resource_name),
        resource_description=render_markdown(view.resource_description),
        scopes=scopes,
        justification=render_markdown(view.justification),
        platform=render_markdown(view.platform),
        device=render_markdown(view.device),
        clarifications=rounds,
        rounds_left=rounds_left,
        can_ask=view.can_ask and rounds_left > 0,
        awaiting_answer=state == State.CLARIFYING,
        expires_iso=datetime.fromtimestamp(float(view.expires_at), UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        ),
        binds_agent=view.binds_agent,
        mission_update_limit=update_limit if view.kind == "mission_update" else None,
        **_page_mission(view),
        **_page_proposal(view),
    )


def _page_mission(view: ConsentView) -> dict[str, Any]:
    mission = view.mission
    if mission is None:
        return {}
    approved = mission.document.get("approved_at")
    return {
        "mission": render_markdown(mission.description),
        "mission_s256": mission.s256,
        "mission_approved": approved if isinstance(approved, str) else None,
        "mission_status": mission.state,
        "mission_updates": tuple(render_markdown(u.description) for u in mission.updates),
    }


@dataclass(frozen=True, slots=True)
class PageRelay:
    """A ``RelayView`` as the page shows it: agent-asserted texts sanitised, a form token."""

    id: str
    type: str
    state: str
    agent: str
    agent_provider: str
    description: Markup
    question: Markup
    target: str | None
    expires_iso: str
    csrf: str


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _relay_token(secret: bytes, session: str, relay_id: str) -> str:
    # The consent form's HMAC, bound to the relay instead of a pending request.
    return csrf_token(secret, session, "relay:" + relay_id, "")


def _page_relay(relay: RelayView, secret: bytes, session: str) -> PageRelay:
    return PageRelay(
        id=relay.id,
        type=relay.type,
        state=relay.state,
        agent=relay.agent,
        agent_provider=relay.agent_provider,
        description=render_markdown(relay.description or ""),
        question=render_markdown(relay.question or ""),
        target=relay.target,
        expires_iso=_iso(relay.deadline),
        csrf=_relay_token(secret, session, relay.id),
    )


# --- the step machinery: one flow, run by a sync or an async driver ---------------------------


@dataclass(frozen=True, slots=True)
class _Call:
    """A call into the PS (``consent``/``presence`` API) or discovery the flow needs."""

    target: str
    method: str
    args: tuple[Any, ...]


_Flow = Generator[_Call, Any, HttpResponse]
#: What a pending request id looks like (``pending.new_id``): anything else is no request.
_PENDING_ID = re.compile(r"[A-Za-z0-9_\-]{16,64}")


class ConsentPages:
    """The consent pages of one :class:`~aauth_server.person.PersonServer`."""

    def __init__(
        self,
        ps: PersonServer,
        *,
        authenticate: Authenticate,
        secret: bytes,
        templates_dir: str | Path | None = None,
        login_path: str = "/login",
        discovery: Any = None,
        server_name: str | None = None,
    ) -> None:
        self.ps = ps
        self.authenticate = authenticate
        self.secret = check_secret(secret)
        config = ps.config
        self.path = str(config.consent_path).rstrip("/") or "/"
        self.login_path = login_path
        self.discovery = discovery or ps.discovery
        self.static = self.path + "/static"
        name = server_name or config.name or "Person Server"
        self.renderer = _renderer(templates_dir, name, self.static)
        self._routes: dict[tuple[str, str], Callable[[HttpRequest], _Flow]] = {
            ("GET", self.path): self._consent,
            ("POST", self.path + "/decide"): self._decide,
            ("GET", self.path + "/events"): self._events,
            ("POST", self.path + "/relay"): self._relay,
        }
        for name in ASSETS:
            self._routes[("GET", f"{self.static}/{name}")] = self._static(name)
        #: ``GET {path}/request/{id}?code=...``: the interaction URL that names its request
        #: (``consent_url_names_request``), so wrong codes count against that request.
        self.request_prefix = self.path.rstrip("/") + "/request/"

    def routes(self) -> list[tuple[str, str]]:
        return [*self._routes, ("GET", self.request_prefix)]

    def _route(self, request: HttpRequest) -> Callable[[HttpRequest], _Flow] | None:
        route = self._routes.get((request.method, request.path))
        if route is None and request.method == "GET":
            if request.path.startswith(self.request_prefix):
                return self._consent
        return route

    def handle(self, request: HttpRequest) -> HttpResponse | None:
        route = self._route(request)
        if route is None:
            return None
        flow = route(request)
        try:
            call = next(flow)
            while True:
                try:
                    value = self._call(call)
                except AAuthError as error:
                    call = flow.throw(error)
                else:
                    call = flow.send(value)
        except StopIteration as stop:
            return secured(stop.value)
        except AAuthError as error:
            return self._failure(error)

    async def ahandle(self, request: HttpRequest) -> HttpResponse | None:
        route = self._route(request)
        if route is None:
            return None
        flow = route(request)
        try:
            call = next(flow)
            while True:
                try:
                    value = await self._acall(call)
                except AAuthError as error:
                    call = flow.throw(error)
                else:
                    call = flow.send(value)
        except StopIteration as stop:
            return secured(stop.value)
        except AAuthError as error:
            return self._failure(error)

    def _call(self, call: _Call) -> Any:
        if call.target == "discovery":
            return self.discovery.metadata(*call.args)
        return getattr(getattr(self.ps, call.target), call.method)(*call.args)

    async def _acall(self, call: _Call) -> Any:
        if call.target == "discovery":
            return await self.discovery.ametadata(*call.args)
        return await getattr(getattr(self.ps, call.target), "a" + call.method)(*call.args)

    def _failure(self, error: AAuthError) -> HttpResponse:
        response = self.renderer.problem(
            error.status if error.status >= 400 else 500,
            "Something went wrong",
            "The request could not be completed. Try again in a moment.",
        )
        response.headers.extend(h for h in error.response_headers() if h[0] == "Retry-After")
        return response

    # --- routes -------------------------------------------------------------------------

    def _static(self, name: str) -> Callable[[HttpRequest], _Flow]:
        def flow(request: HttpRequest) -> _Flow:
            response = self.renderer.static_file(name)
            assert response is not None  # routes exist only for ASSETS
            return response
            yield  # a generator like every route; never reached

        return flow

    def _login_redirect(self, request: HttpRequest) -> HttpResponse:
        parts = urlsplit(request.url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        return redirect(f"{self.login_path}?{urlencode({'next': target})}")

    def _consent(self, request: HttpRequest) -> _Flow:
        person = self.authenticate(request)
        if person is None:
            return self._login_redirect(request)
        query = _query(request)
        callback = query.get("callback", "")
        named: str | None = None
        if request.path.startswith(self.request_prefix):
            named = request.path[len(self.request_prefix) :]
            if not _PENDING_ID.fullmatch(named):
                return self._gone(person)
            if "code" not in query:
                params = {"request": named, **({"callback": callback} if callback else {})}
                return redirect(f"{self.path}?{urlencode(params)}")
        if "code" in query:
            try:
                view = yield _Call("consent", "open", (query["code"], person, named))
            except AAuthError as error:
                if error.status == 403:
                    return self.renderer.problem(
                        403,
                        "This request is for someone else",
                        "Another person already opened this request.",
                        person=person,
                    )
                if error.status in (404, 410) or error.error == "invalid_code":
                    return self.renderer.problem(
                        410,
                        "This link can no longer be used",
                        "The code was already used, has expired or is not valid. "
                        "Ask the agent to start again.",
                        person=person,
                    )
                raise
            params = {"request": str(view.pending_id)}
            if callback:
                params["callback"] = callback
            return redirect(f"{self.path}?{urlencode(params)}")
        pending_id = query.get("request")
        if not pending_id:
            return (yield from self._index(request, person))
        view = yield from self._view_or_none(pending_id, person)
        if view is None:
            return self._gone(person)
        if callback and not (yield from self._callback_ok(callback, view)):
            return self.renderer.problem(
                400,
                "Unknown return address",
                "The agent asked to be sent back to an address its provider has not "
                "registered, so this page will not redirect there. You can still decide.",
                link=f"{self.path}?{urlencode({'request': pending_id})}",
                link_text="Review the request",
                person=person,
            )
        req = _page_request(view, self.ps.config.max_mission_updates)
        nonce, set_nonce = self._nonce(request)
        headers = list(set_nonce)
        relays = yield _Call("relay", "pending_for", (person,))
        if callback:
            # Browsers apply form-action to the redirect that follows a form post too, so
            # the validated callback's origin must be admitted on this page.
            headers.append(("Content-Security-Policy", csp(form_action=(_origin(callback),))))
        template = "mission_consent.html" if req.kind in MISSION_KINDS else "consent.html"
        return self.renderer.page(
            template,
            headers=headers,
            **self._consent_context(req, person, nonce, callback),
            **self._relay_context(relays, person, nonce, self._back(req.id, callback)),
        )

    def _consent_context(
        self, req: PageRequest, person: str, nonce: str, callback: str
    ) -> dict[str, Any]:
        return {
            "req": req,
            "person": person,
            "callback": callback,
            "csrf": csrf_token(self.secret, f"{nonce}\0{person}", req.id, callback),
            "decide_path": self.path + "/decide",
            "events_path": self.path + "/events",
        }

    def _relay_context(
        self, relays: Sequence[RelayView], person: str, nonce: str, back: str
    ) -> dict[str, Any]:
        session = f"{nonce}\0{person}"
        return {
            "relays": [_page_relay(r, self.secret, session) for r in relays],
            "relay_path": self.path + "/relay",
            "relay_next": back,
            "max_answer": self.ps.limits.text,
        }

    def _back(self, pending_id: str | None, callback: str) -> str:
        """The page a plain relay form returns to: the one it was shown on."""
        if not pending_id:
            return self.path
        params = {"request": pending_id, **({"callback": callback} if callback else {})}
        return f"{self.path}?{urlencode(params)}"

    def _index(self, request: HttpRequest, person: str) -> _Flow:
        yield _Call("presence", "touch", (person,))
        views = yield _Call("consent", "pending_for", (person,))
        relays = yield _Call("relay", "pending_for", (person,))
        nonce, set_nonce = self._nonce(request)
        return self.renderer.page(
            "index.html",
            headers=set_nonce,
            person=person,
            requests=self._summaries(views),
            events_path=self.path + "/events",
            **self._relay_context(relays, person, nonce, self.path),
        )

    def _summaries(self, views: Sequence[Any]) -> list[dict[str, str]]:
        return [
            {
                "id": str(v.pending_id),
                "agent": str(v.agent),
                "resource": str(v.resource),
                "kind": str(v.kind),
                "state": str(v.state),
                "url": f"{self.path}?{urlencode({'request': str(v.pending_id)})}",
            }
            for v in views
        ]

    def _view_or_none(self, pending_id: str, person: str) -> Generator[_Call, Any, Any]:
        try:
            return (yield _Call("consent", "view", (pending_id, person)))
        except AAuthError as error:
            if error.status in (403, 404, 410):
                return None
            raise

    def _gone(self, person: str | None) -> HttpResponse:
        return self.renderer.problem(
            410,
            "This request is gone",
            "It was completed, cancelled or has expired, or it is not yours.",
            person=person,
        )

    def _callback_ok(self, callback: str, view: ConsentView) -> Generator[_Call, Any, bool]:
        try:
            metadata = yield _Call("discovery", "metadata", (view.agent_issuer, DWK_AGENT))
        except AAuthError:
            return False
        return callback_allowed(callback, metadata)

    def _nonce(self, request: HttpRequest) -> tuple[str, Headers]:
        nonce = read_cookie(request, NONCE_COOKIE)
        if nonce and len(nonce) <= 64:
            return nonce, []
        nonce = new_nonce()
        secure = not _is_loopback(request.url)
        return nonce, [cookie_header(NONCE_COOKIE, nonce, secure=secure, same_site="Strict")]

    def _forbidden(self, person: str | None) -> HttpResponse:
        return self.renderer.problem(
            403,
            "This form has expired",
            "The page was not submitted from this server, or your session changed. "
            "Open the request again and decide there.",
            person=person,
        )

    def _decide(self, request: HttpRequest) -> _Flow:
        person = self.authenticate(request)
        if person is None:
            return self.renderer.problem(
                403,
                "Please sign in again",
                "Your session ended before the decision was sent.",
                link=self.login_path,
                link_text="Sign in",
            )
        if not same_origin_post(request):
            return self._forbidden(person)
        form = _form(request)
        pending_id = form.get("request", "")
        callback = form.get("callback", "")
        nonce = read_cookie(request, NONCE_COOKIE)
        session = f"{nonce}\0{person}" if nonce else None
        if not pending_id or not check_csrf(
            self.secret, form.get("csrf"), session, pending_id, callback
        ):
            return self._forbidden(person)
        action = {"accept": "approve", "followup": "ask"}.get(form.get("action", ""), "")
        action = action or form.get("action", "")
        back = {"request": pending_id, **({"callback": callback} if callback else {})}
        if action == "ask":
            question = form.get("question", "").strip()
            if not question or len(question) > MAX_QUESTION:
                return self.renderer.problem(
                    400, "Empty question", "Write a question for the agent.", person=person
                )
            try:
                yield _Call("consent", "ask", (pending_id, person, question))
            except AAuthError as error:
                if error.status >= 500:
                    raise
                return self.renderer.problem(
                    409,
                    "The agent cannot be asked now",
                    "The request is no longer waiting for you, the agent does not take "
                    "questions, or no questions are left.",
                    link=f"{self.path}?{urlencode(back)}",
                    link_text="Back to the request",
                    person=person,
                )
            return redirect(f"{self.path}?{urlencode(back)}")
        if action not in ("approve", "deny"):
            return self.renderer.problem(
                400, "Unknown action", "Choose Approve or Deny.", person=person
            )
        args: tuple[Any, ...] = (pending_id, person)
        if action == "approve" and "description" in form:
            # The person's edit of a proposed mission's description (only read for proposals).
            args = (pending_id, person, {"description": form["description"].replace("\r\n", "\n")})
        try:
            yield _Call("consent", action, args)
        except AAuthError as error:
            if error.status >= 500 and not callback:
                raise
            if callback:
                code = _CALLBACK_ERRORS.get(error.error, "server_error")
                return redirect(with_query(callback, {"error": code}))
            return self._gone(person)
        if callback:
            if action == "deny":
                return redirect(with_query(callback, {"error": "access_denied"}))
            return redirect(callback)
        outcome = "approved" if action == "approve" else "denied"
        return self.renderer.page("done.html", person=person, outcome=outcome)

    def _events(self, request: HttpRequest) -> _Flow:
        person = self.authenticate(request)
        if person is None:
            return secured(HttpResponse.json(401, {"error": "login_required"}))
        yield _Call("presence", "touch", (person,))
        views = yield _Call("consent", "pending_for", (person,))
        relays = yield _Call("relay", "pending_for", (person,))
        query = _query(request)
        pending_id = query.get("request")
        callback = query.get("callback", "")
        nonce, set_nonce = self._nonce(request)
        relay_context = self._relay_context(relays, person, nonce, self._back(pending_id, callback))
        payload: dict[str, Any] = {
            "requests": self._summaries(views),
            "relays": [
                {
                    "id": relay.id,
                    "type": relay.type,
                    "state": relay.state,
                    "html": self.renderer.fragment("_relay.html", relay=relay, **relay_context),
                }
                for relay in relay_context["relays"]
            ],
            "view": None,
        }
        if pending_id:
            view = yield from self._view_or_none(pending_id, person)
            if view is not None:
                req = _page_request(view, self.ps.config.max_mission_updates)
                context = self._consent_context(req, person, nonce, callback)
                payload["view"] = {
                    "id": req.id,
                    "state": req.state,
                    "open": req.open,
                    "agent_html": self.renderer.fragment("_agent.html", **context),
                    "ask_html": self.renderer.fragment(
                        "_mission_ask.html" if req.kind in MISSION_KINDS else "_ask.html",
                        **context,
                    ),
                }
            else:
                payload["view"] = {"id": pending_id, "state": "gone", "open": False}
        headers: Headers = [("Content-Type", "application/json"), *set_nonce]
        return HttpResponse(200, headers, json_bytes(payload))

    def _relay(self, request: HttpRequest) -> _Flow:
        wants_json = "application/json" in (request.header("accept") or "")
        person = self.authenticate(request)
        if person is None:
            if wants_json:
                return HttpResponse.json(401, {"error": "login_required"})
            return self.renderer.problem(
                403,
                "Please sign in again",
                "Your session ended before your answer was sent.",
                link=self.login_path,
                link_text="Sign in",
            )
        form = _form(request)
        relay_id = form.get("relay", "")
        nonce = read_cookie(request, NONCE_COOKIE)
        session = f"{nonce}\0{person}" if nonce else None
        if (
            not same_origin_post(request)
            or not relay_id
            or not check_csrf(self.secret, form.get("csrf"), session, "relay:" + relay_id, "")
        ):
            if wants_json:
                return HttpResponse.json(403, {"error": "csrf"})
            return self._forbidden(person)
        action = form.get("action", "")
        args: tuple[str, ...] = (relay_id, person)
        if action == "answer":
            answer = form.get("answer", "").strip()
            if not answer or len(answer) > self.ps.limits.text:
                if wants_json:
                    return HttpResponse.json(400, {"error": "invalid_answer"})
                return self.renderer.problem(
                    400, "Empty answer", "Write an answer for the agent.", person=person
                )
            args = (relay_id, person, answer)
        elif action not in ("engage", "decline"):
            if wants_json:
                return HttpResponse.json(400, {"error": "invalid_action"})
            return self.renderer.problem(
                400, "Unknown action", "Choose Open, Answer or Dismiss.", person=person
            )
        try:
            relay = yield _Call("relay", action, args)
        except AAuthError as error:
            if error.status >= 500:
                raise
            if wants_json:
                return HttpResponse.json(409, {"error": error.error or "relay_closed"})
            return self.renderer.problem(
                409,
                "This item is no longer open",
                "The agent withdrew it, it expired, or you already answered it.",
                link=self.path,
                link_text="Back to your requests",
                person=person,
            )
        if wants_json:
            result = {"id": relay.id, "state": relay.state}
            return HttpResponse.json(200, {**result, "target": relay.target})
        if action == "engage" and relay.target is not None:
            # Form-action would block a redirect to another origin, so a page carries the link.
            return self.renderer.page("relay_open.html", person=person, target=relay.target)
        back = safe_next(form.get("next"), self.path)
        return redirect(back if back.startswith(self.path) else self.path)


# --- a demo login -----------------------------------------------------------------------------


class DemoLogin:
    """A password form for examples and tests; real deployments plug in their own login.

    The session cookie is ``HttpOnly``, ``SameSite=Lax`` and ``Secure`` unless the page is
    served from a loopback address (plain-HTTP development).

    The form carries a CSRF token although nobody is signed in yet (login CSRF: a foreign
    page must not sign the browser in as someone else).  With no session to bind it to, the
    token is bound to a pre-session cookie: ``GET`` sets ``aauth_login``, a random nonce
    (``HttpOnly``, ``SameSite=Lax``, ``Path`` the login path, ``Secure`` as above), and the
    form's ``csrf`` field is the consent pages' HMAC (keyed by ``secret``) over that nonce
    with ``login`` in place of the pending id.  A ``POST`` needs both, matching, and no
    cross-site ``Origin``/``Sec-Fetch-Site``, else ``403`` and nothing is checked or set.  A
    nonce is 22 base64url symbols (never a ``NUL``), so a login token can never pass as a
    consent token, whose session part is ``nonce NUL person``; a token is worth nothing
    without the cookie it was made for, which another site can neither read nor send.  A
    ``login.html`` override must post the ``csrf`` field it is given.  ``next`` (where a
    successful sign-in goes) is kept only as a same-site absolute path (``/...``, never
    ``//host`` or a backslash), else ``default_next``.
    """

    def __init__(
        self,
        users: Mapping[str, str],
        secret: bytes,
        *,
        login_path: str = "/login",
        default_next: str = "/consent",
        cookie_name: str = "aauth_session",
        nonce_cookie: str = "aauth_login",
        max_age: int = 8 * 3600,
        clock: Clock = SYSTEM_CLOCK,
        templates_dir: str | Path | None = None,
        server_name: str = "Person Server",
        static: str = "/consent/static",
    ) -> None:
        self.users = dict(users)
        self.secret = check_secret(secret)
        self.codec = SessionCodec(secret, max_age=max_age, clock=clock)
        self.login_path = login_path
        self.default_next = default_next
        self.cookie_name = cookie_name
        self.nonce_cookie = nonce_cookie
        self.max_age = max_age
        self.renderer = _renderer(templates_dir, server_name, static)

    def routes(self) -> list[tuple[str, str]]:
        return [("GET", self.login_path), ("POST", self.login_path)]

    def authenticate(self, request: HttpRequest) -> str | None:
        person = self.codec.read(read_cookie(request, self.cookie_name))
        return person if person in self.users else None

    def handle(self, request: HttpRequest) -> HttpResponse | None:
        if request.path != self.login_path or request.method not in ("GET", "POST"):
            return None
        if request.method == "GET":
            target = safe_next(_query(request).get("next"), self.default_next)
            nonce = self._nonce(request)
            headers: Headers = []
            if nonce is None:
                nonce = new_nonce()
                headers.append(
                    cookie_header(
                        self.nonce_cookie,
                        nonce,
                        secure=not _is_loopback(request.url),
                        path=self.login_path,
                    )
                )
            return self._form(target, nonce, headers=headers)
        form = _form(request)
        target = safe_next(form.get("next"), self.default_next)
        nonce = self._nonce(request)
        if (
            nonce is None
            or not same_origin_post(request)
            or not check_csrf(self.secret, form.get("csrf"), nonce, _LOGIN_CSRF, "")
        ):
            return self._expired(target)
        username = form.get("username", "")
        if not self._check(username, form.get("password", "")):
            return self._form(target, nonce, failed=True, username=username)
        cookie = cookie_header(
            self.cookie_name,
            self.codec.issue(username),
            secure=not _is_loopback(request.url),
            max_age=self.max_age,
        )
        return redirect(quote(target, safe="/?&=%:@-._~+,;!$'()*"), [cookie])

    async def ahandle(self, request: HttpRequest) -> HttpResponse | None:
        return self.handle(request)

    def _nonce(self, request: HttpRequest) -> str | None:
        """The browser's pre-session nonce, when it has a well-formed one."""
        nonce = read_cookie(request, self.nonce_cookie)
        return nonce if nonce is not None and _LOGIN_NONCE.fullmatch(nonce) else None

    def _check(self, username: str, password: str) -> bool:
        # Unknown users cost the same comparison, so timing does not reveal who exists.
        expected = self.users.get(username)
        candidate = (expected if expected is not None else "\0unknown").encode()
        matched = hmac.compare_digest(candidate, password.encode("utf-8", "replace"))
        return matched and expected is not None

    def _expired(self, target: str) -> HttpResponse:
        return self.renderer.problem(
            403,
            "This sign-in form has expired",
            "It was not sent from this server's sign-in page, or your browser did not keep "
            "the page's cookie. Open the sign-in page again.",
            link=f"{self.login_path}?{urlencode({'next': target})}",
            link_text="Sign in",
        )

    def _form(
        self,
        target: str,
        nonce: str,
        *,
        failed: bool = False,
        username: str = "",
        headers: Headers | None = None,
    ) -> HttpResponse:
        return self.renderer.page(
            "login.html",
            headers=headers,
            failed=failed,
            username=username,
            next=target,
            login_path=self.login_path,
            csrf=csrf_token(self.secret, nonce, _LOGIN_CSRF, ""),
        )
