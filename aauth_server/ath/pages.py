"""The browser side of ATH: the native consent page, the gateway's redirect hop, the
callback, the "you can close this tab" page and the admin review page.

Built on :mod:`aauth_server.pagekit` as the Person Server's pages are: autoescaped templates
beside this module, the shared CSP and security headers, CSRF tokens bound to a browser
cookie, same-origin checks on every form post.  Agent-supplied text (name, developer,
purpose) is only ever rendered escaped.

The session is bound to the first browser that opens the authorization URL: an HttpOnly
``ath_browser`` cookie (``SameSite=Lax``, so it rides on the provider's redirect back;
``Secure`` unless served from loopback) whose digest the session keeps.  Another browser
opening the same URL, or reaching the callback, gets ``400 STATE_MISMATCH``.  Browser
failures render a page with the ATH status and its code (``data-code``), never JSON.
"""

from __future__ import annotations

import secrets
from collections.abc import Generator
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

from ..http import Headers, HttpRequest, HttpResponse
from ..pagekit import (
    Renderer,
    check_csrf,
    csp,
    csrf_token,
    form_fields,
    is_loopback,
    origin_of,
    query_params,
    read_cookie,
    redirect,
    same_origin_post,
    set_cookie,
    with_query,
)
from ..steps import StoreOp
from ..storage.base import Record, RecordNotFound, VersionConflict
from . import agents, native, registration, tokens
from .authorize import expired, s256, session_for_state
from .context import KIND_SESSION, Context
from .driver import ExchangeOp, Op, UpstreamFailure
from .errors import STATUS, ATHError
from .wire import digest

TEMPLATES: Final = Path(__file__).with_name("templates")
ASSETS: Final = ("ath.css",)
BROWSER_COOKIE: Final = "ath_browser"
ADMIN_COOKIE: Final = "ath_admin"
_NONCE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

Flow = Generator[Op, Any, HttpResponse]


def renderer(ctx: Context, templates_dir: str | Path | None = None) -> Renderer:
    return Renderer(
        templates_dir,
        TEMPLATES,
        server_name=ctx.config.name,
        static=ctx.config.prefix + "/ath/static",
        assets=ASSETS,
    )


class Pages:
    def __init__(self, ctx: Context, templates_dir: str | Path | None = None) -> None:
        self.ctx = ctx
        self.config = ctx.config
        self.renderer = renderer(ctx, templates_dir)
        self.secret = self.config.page_secret or secrets.token_bytes(32)

    # -- helpers -----------------------------------------------------------------------------

    def problem(
        self, code: str, heading: str, message: str, headers: Headers | None = None
    ) -> HttpResponse:
        response = self.renderer.page(
            "ath_error.html",
            STATUS[code],
            headers=headers,
            status=STATUS[code],
            error_code=code,
            heading=heading,
            message=message,
        )
        return response

    def _browser(self, request: HttpRequest) -> tuple[str, Headers]:
        value = read_cookie(request, BROWSER_COOKIE)
        if value and 22 <= len(value) <= 64 and set(value) <= _NONCE_CHARS:
            return value, []
        value = secrets.token_urlsafe(32)
        cookie = set_cookie(
            BROWSER_COOKIE,
            value,
            secure=not is_loopback(request.url),
            path=self.config.prefix + "/ath/" if self.config.prefix else "/ath/",
        )
        return value, [cookie]

    def _bind(self, session: Record, browser: str) -> Generator[Op, Any, Record | None]:
        """The session bound to this browser, or None when another browser holds it."""
        mine = digest(browser)
        for _ in range(8):
            bound = session.data.get("browser")
            if bound == mine:
                return session
            if bound is not None:
                return None
            try:
                session = yield StoreOp(
                    "compare_and_set",
                    (
                        KIND_SESSION,
                        self.ctx.key(str(session.data["session_id"])),
                        session.version,
                        {**session.data, "browser": mine},
                        None,
                    ),
                )
                return session
            except VersionConflict:
                fresh: Record | None = yield StoreOp(
                    "get", (KIND_SESSION, self.ctx.key(str(session.data["session_id"])))
                )
                if fresh is None:
                    return None
                session = fresh
            except RecordNotFound:
                return None
        return None

    def _session_problem(
        self, session: Record | None, *, pending: bool = True
    ) -> HttpResponse | None:
        if session is None:
            return self.problem(
                "STATE_MISMATCH",
                "This link is not valid",
                "The authorization request is unknown or has ended. Ask the agent to start again.",
            )
        if expired(self.ctx, session):
            return self.problem(
                "SESSION_EXPIRED",
                "This link has expired",
                "Authorization links last ten minutes. Ask the agent to start again.",
            )
        if pending and session.data.get("status") != "pending":
            return self.problem(
                "SESSION_NOT_FOUND",
                "This link was already used",
                "The request was already decided. Ask the agent to start again if you need to.",
            )
        return None

    def _set_status(self, session: Record, **changes: Any) -> Generator[Op, Any, bool]:
        """Move ``session`` on (single use: loses when another request moved it first)."""
        try:
            yield StoreOp(
                "compare_and_set",
                (
                    KIND_SESSION,
                    self.ctx.key(str(session.data["session_id"])),
                    session.version,
                    {**session.data, **changes},
                    None,
                ),
            )
        except (VersionConflict, RecordNotFound):
            return False
        return True

    # -- native consent ----------------------------------------------------------------------

    def consent(self, request: HttpRequest) -> Flow:
        config = self.config
        query = query_params(request)
        wanted = {
            "response_type": "code",
            "client_id": config.native_client_id,
            "redirect_uri": config.callback_url,
            "code_challenge_method": "S256",
        }
        if any(query.get(k) != v for k, v in wanted.items()) or not query.get("code_challenge"):
            return self.problem(
                "INVALID_REQUEST",
                "This authorization request is malformed",
                "It does not come from this service's own authorization flow.",
            )
        session = yield from session_for_state(self.ctx, query.get("state", ""))
        failed = self._session_problem(session)
        if failed is not None:
            return failed
        assert session is not None
        data = session.data
        if query["code_challenge"] != s256(str(data["code_verifier"])) or query.get(
            "scope"
        ) != " ".join(data["scopes"]):
            return self.problem(
                "STATE_MISMATCH",
                "This link was altered",
                "The authorization link does not match the request the agent made.",
            )
        browser, set_browser = self._browser(request)
        bound = yield from self._bind(session, browser)
        if bound is None:
            return self.problem(
                "STATE_MISMATCH",
                "This link was opened elsewhere",
                "The authorization link belongs to another browser.",
                set_browser,
            )
        assert config.authenticate is not None
        user = config.authenticate(request)
        if user is None:
            parts = urlsplit(request.url)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            return redirect(f"{config.login_path}?{urlencode({'next': target})}", set_browser)
        record = yield from agents.load(self.ctx, str(data["client_id"]))
        if record is None:
            return self.problem(
                "AGENT_NOT_REGISTERED",
                "This agent is no longer registered",
                "Ask the agent to register again.",
            )
        provider = config.providers[0]
        headers = list(set_browser)
        redirect_to = data.get("user_redirect_uri")
        if redirect_to:
            # Browsers apply form-action to the redirects after a form post as well.
            headers.append(
                ("Content-Security-Policy", csp(form_action=(origin_of(str(redirect_to)),)))
            )
        return self.renderer.page(
            "consent.html",
            headers=headers,
            person=user,
            agent_name=record.data.get("name") or record.data["agent_id"],
            agent_id=record.data["agent_id"],
            developer=record.data.get("developer") or {},
            purpose=record.data.get("purpose") or "",
            service=config.name,
            scopes=[(s, provider.scopes.get(s, "")) for s in data["scopes"]],
            state=query["state"],
            csrf=csrf_token(self.secret, f"{browser}\0{user}", str(data["session_id"]), "consent"),
            decide_path=config.prefix + "/ath/consent/decide",
        )

    def decide(self, request: HttpRequest) -> Flow:
        config = self.config
        assert config.authenticate is not None
        user = config.authenticate(request)
        if user is None:
            return self.problem(
                "AUTH_REQUIRED",
                "Please sign in again",
                "Your session ended before the decision was sent.",
            )
        form = form_fields(request)
        browser = read_cookie(request, BROWSER_COOKIE)
        session = yield from session_for_state(self.ctx, form.get("state", ""))
        if (
            not same_origin_post(request)
            or session is None
            or not browser
            or session.data.get("browser") != digest(browser)
            or not check_csrf(
                self.secret,
                form.get("csrf"),
                f"{browser}\0{user}",
                str(session.data["session_id"]),
                "consent",
            )
        ):
            return self.problem(
                "FORBIDDEN",
                "This form has expired",
                "The page was not submitted from this service, or your session changed. "
                "Open the link again.",
            )
        failed = self._session_problem(session)
        if failed is not None:
            return failed
        action = form.get("action")
        if action not in ("authorize", "deny"):
            return self.problem("INVALID_REQUEST", "Unknown action", "Choose Authorize or Deny.")
        state = form["state"]
        if not (yield from self._set_status(session, status="decided", user_id=user)):
            return self.problem(
                "SESSION_NOT_FOUND",
                "This link was already used",
                "The request was already decided.",
            )
        if action == "deny":
            return redirect(
                with_query(config.callback_url, {"error": "access_denied", "state": state})
            )
        code = yield from native.issue(self.ctx, session, user, list(session.data["scopes"]))
        return redirect(with_query(config.callback_url, {"code": code, "state": state}))

    # -- gateway redirect hop ----------------------------------------------------------------

    def start(self, request: HttpRequest) -> Flow:
        session = yield from session_for_state(self.ctx, query_params(request).get("state", ""))
        failed = self._session_problem(session)
        if failed is not None:
            return failed
        assert session is not None
        browser, set_browser = self._browser(request)
        bound = yield from self._bind(session, browser)
        if bound is None:
            return self.problem(
                "STATE_MISMATCH",
                "This link was opened elsewhere",
                "The authorization link belongs to another browser.",
                set_browser,
            )
        return redirect(str(session.data["upstream_url"]), set_browser)

    # -- the callback ------------------------------------------------------------------------

    def callback(self, request: HttpRequest) -> Flow:
        config = self.config
        query = query_params(request)
        state = query.get("state")
        if not state:
            if "session_id" in query or "ath_session_id" in query:
                # The SDKs' default user_redirect_uri is this very callback.
                success = query.get("success") == "true" and "error" not in query
                return self.renderer.page(
                    "closed.html", outcome="granted" if success else "not granted"
                )
            return self.problem(
                "STATE_MISMATCH", "This link is not valid", "The callback carries no state."
            )
        session = yield from session_for_state(self.ctx, state)
        if session is None:
            return self.problem(
                "STATE_MISMATCH",
                "This link is not valid",
                "The authorization request is unknown or has ended.",
            )
        browser = read_cookie(request, BROWSER_COOKIE)
        if not browser or session.data.get("browser") != digest(browser):
            return self.problem(
                "STATE_MISMATCH",
                "This browser did not start the request",
                "Open the authorization link in the browser the agent gave it to.",
            )
        data = session.data
        awaiting = "decided" if config.mode == "native" else "pending"
        if expired(self.ctx, session):
            yield from self._set_status(session, status="failed", error_code="SESSION_EXPIRED")
            return self.problem(
                "SESSION_EXPIRED",
                "This link has expired",
                "Authorization links last ten minutes. Ask the agent to start again.",
            )
        if data.get("status") != awaiting:
            return self.problem(
                "SESSION_NOT_FOUND",
                "This link was already used",
                "The request was already completed.",
            )
        if "error" in query or "code" not in query:
            error = query.get("error", "invalid_request")
            code = "USER_DENIED" if error == "access_denied" else "OAUTH_ERROR"
            if not (yield from self._set_status(session, status="failed", error_code=code)):
                return self.problem(
                    "SESSION_NOT_FOUND",
                    "This link was already used",
                    "The request was already completed.",
                )
            self.ctx.audit(
                "access_denied",
                agent_id=data["agent_id"],
                client_id=data["client_id"],
                reason=error[:64],
            )
            return self._finish(
                session, {"error": error[:64], "ath_session_id": str(data["session_id"])}, code
            )
        try:
            if config.mode == "native":
                grant = yield from native.redeem(
                    self.ctx,
                    query["code"],
                    client_id=config.native_client_id,
                    redirect_uri=config.callback_url,
                    verifier=str(data["code_verifier"]),
                )
                user_id = str(grant["user_id"])
                consented = list(grant["scopes"])
                upstream = None
            else:
                answer = yield ExchangeOp(
                    str(data["provider_id"]),
                    query["code"],
                    str(data["code_verifier"]),
                    config.callback_url,
                )
                consented = _consented(answer.get("scope"), list(data["scopes"]))
                user_id = (
                    config.authenticate(request) if config.authenticate else None
                ) or "conn_" + secrets.token_hex(8)
                upstream = {
                    k: answer[k]
                    for k in ("access_token", "token_type", "expires_in", "scope")
                    if k in answer
                }
        except (native.GrantError, UpstreamFailure) as exc:
            yield from self._set_status(session, status="failed", error_code="OAUTH_ERROR")
            self.ctx.audit(
                "access_denied",
                agent_id=data["agent_id"],
                client_id=data["client_id"],
                reason=str(exc)[:120],
            )
            return self.problem(
                "OAUTH_ERROR",
                "The authorization could not be completed",
                "The provider did not accept the authorization. Ask the agent to start again.",
            )
        if not (
            yield from self._set_status(
                session,
                status="completed",
                user_id=user_id,
                consented_scopes=consented,
                upstream=upstream,
            )
        ):
            return self.problem(
                "SESSION_NOT_FOUND",
                "This link was already used",
                "The request was already completed.",
            )
        return self._finish(
            session, {"session_id": str(data["session_id"]), "success": "true"}, None
        )

    def _finish(self, session: Record, params: dict[str, str], code: str | None) -> HttpResponse:
        target = session.data.get("user_redirect_uri")
        if (
            not target
            or urlsplit(str(target))._replace(query="").geturl() == self.config.callback_url
        ):
            outcome = (
                "granted" if code is None else ("denied" if code == "USER_DENIED" else "failed")
            )
            return self.renderer.page("closed.html", outcome=outcome)
        return redirect(with_query(str(target), params))

    # -- admin review ------------------------------------------------------------------------

    def _admin(self, request: HttpRequest) -> str | None:
        hook = self.config.admin_authenticate
        return hook(request) if hook is not None else None

    def _admin_nonce(self, request: HttpRequest) -> tuple[str, Headers]:
        value = read_cookie(request, ADMIN_COOKIE)
        if value and 22 <= len(value) <= 64 and set(value) <= _NONCE_CHARS:
            return value, []
        value = secrets.token_urlsafe(24)
        return value, [
            set_cookie(ADMIN_COOKIE, value, secure=not is_loopback(request.url), same_site="Strict")
        ]

    def admin(self, request: HttpRequest) -> Flow:
        admin = self._admin(request)
        if admin is None:
            return self.problem(
                "FORBIDDEN", "Administrators only", "Sign in as an administrator of this service."
            )
        nonce, headers = self._admin_nonce(request)
        pending = yield from registration.pending_agents(self.ctx)
        notice = query_params(request).get("done", "")
        return self.renderer.page(
            "admin.html",
            headers=headers,
            person=admin,
            agents=[
                {
                    "client_id": r.data["client_id"],
                    "agent_id": r.data["agent_id"],
                    "name": r.data.get("name") or "",
                    "developer": r.data.get("developer") or {},
                    "purpose": r.data.get("purpose") or "",
                    "requested": r.data.get("requested") or {},
                }
                for r in pending
            ],
            notice=notice[:40],
            csrf=csrf_token(self.secret, f"{nonce}\0{admin}", "admin", "review"),
            decide_path=self.config.prefix + "/ath/admin/decide",
            revoke_path=self.config.prefix + "/ath/admin/revoke",
        )

    def _admin_post(self, request: HttpRequest) -> tuple[str | None, dict[str, str]]:
        admin = self._admin(request)
        form = form_fields(request)
        nonce = read_cookie(request, ADMIN_COOKIE)
        if (
            admin is None
            or not nonce
            or not same_origin_post(request)
            or not check_csrf(self.secret, form.get("csrf"), f"{nonce}\0{admin}", "admin", "review")
        ):
            return None, form
        return admin, form

    def admin_decide(self, request: HttpRequest) -> Flow:
        admin, form = self._admin_post(request)
        if admin is None:
            return self.problem("FORBIDDEN", "This form has expired", "Open the review page again.")
        action = form.get("action")
        if action not in ("approve", "deny"):
            return self.problem("INVALID_REQUEST", "Unknown action", "Choose Approve or Deny.")
        changed = yield from registration.decide_pending(
            self.ctx, form.get("client_id", ""), action == "approve", admin
        )
        done = ("approved" if action == "approve" else "denied") if changed else "unchanged"
        return redirect(f"{self.config.prefix}/ath/admin?{urlencode({'done': done})}")

    def admin_revoke(self, request: HttpRequest) -> Flow:
        admin, form = self._admin_post(request)
        if admin is None:
            return self.problem("FORBIDDEN", "This form has expired", "Open the review page again.")
        token = form.get("token", "").strip()
        found = bool(token) and (yield from tokens.revoke_as_admin(self.ctx, token, admin))
        done = "revoked" if found else "unknown token"
        return redirect(f"{self.config.prefix}/ath/admin?{urlencode({'done': done})}")

    def static(self, request: HttpRequest) -> Flow:
        name = request.path.rsplit("/", 1)[-1]
        response = self.renderer.static_file(name)
        if response is None:
            return self.problem("NOT_FOUND", "Not found", "No such file.")
        return response
        yield  # a generator like every route


def _consented(scope: object, requested: list[str]) -> list[str]:
    """The upstream token response's ``scope`` (space- or comma-separated), else the request."""
    if isinstance(scope, str) and scope.strip():
        return [s for s in scope.replace(",", " ").split() if s]
    if isinstance(scope, list) and all(isinstance(s, str) for s in scope):
        return list(scope)
    return requested


__all__ = ["ASSETS", "BROWSER_COOKIE", "TEMPLATES", "ATHError", "Pages"]
