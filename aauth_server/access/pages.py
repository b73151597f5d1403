"""The AS interaction page (digest 5.4 ``requirement=interaction``, 6.2, 6.3): a person binds
the request's Person Server at this AS, in a browser.

``GET {interact_path}?code=...`` shows what is asked (which PS, which resource, which scope,
which agent) to the person the application's ``authenticate`` hook names; ``POST`` approves
or declines, with a CSRF token bound to the browser session, the request and the callback.
Approving records ``interacted`` and lets the policy decide again; the code is single use.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..http import HttpRequest, HttpResponse
from ..identifiers import normalize_interaction_code
from ..pagekit import (
    Renderer,
    check_csrf,
    csrf_token,
    form_fields,
    new_nonce,
    origin_of,
    query_params,
    read_cookie,
    redirect,
    same_origin_post,
    set_cookie,
    with_query,
)
from ..resource.state import digest_id
from ..steps import Steps, StoreOp
from ..storage.base import Record
from .pending import KIND_CODE, KIND_PENDING, OPEN, Refused

if TYPE_CHECKING:
    from .server import AccessServer

COOKIE = "aauth_as_session"
#: Who approved when no ``authenticate`` hook is set (dev_loopback only).
LOCAL_PERSON = "local person"


class InteractionPage:
    def __init__(self, server: AccessServer) -> None:
        self.server = server
        cfg = server.config
        self.secret = cfg.page_secret or secrets.token_bytes(32)
        self.renderer = Renderer(
            Path(__file__).with_name("templates"),
            server_name=cfg.name or "Access Server",
            static=cfg.interact_path,
        )

    @property
    def available(self) -> bool:
        """Can a person complete an interaction here?"""
        cfg = self.server.config
        return cfg.interaction_page and (cfg.authenticate is not None or cfg.dev_loopback)

    def _person(self, request: HttpRequest) -> str | None:
        authenticate = self.server.config.authenticate
        if authenticate is None:
            return LOCAL_PERSON if self.server.config.dev_loopback else None
        return authenticate(request)

    def _find_steps(self, code: str) -> Steps[Record | None]:
        try:
            code_id = digest_id(normalize_interaction_code(code))
        except ValueError:
            return None
        entry = yield StoreOp("get", (KIND_CODE, code_id))
        if entry is None:
            return None
        record: Record | None = yield StoreOp("get", (KIND_PENDING, str(entry.data["pending"])))
        if record is None or record.data["state"] != OPEN:
            return None
        if record.data.get("requirement") != "interaction":
            return None
        if normalize_interaction_code(str(record.data["code"])) != normalize_interaction_code(code):
            return None
        return record

    def _lookup_steps(self, person: str, code: str) -> Steps[Record | HttpResponse]:
        """The request ``code`` names, or the page saying why not; wrong codes count against
        the person (``code_attempts`` a minute, digest 6.2), so codes cannot be guessed."""
        key = "as-code-failures:" + digest_id(person)
        limit = self.server.config.code_attempts
        failures: int = yield StoreOp("increment", (key, 0, 60))
        if failures >= limit:
            return self.renderer.problem(
                429, "Too many codes", "Too many wrong codes: wait a minute.", person=person
            )
        record = yield from self._find_steps(code)
        if record is None:
            yield StoreOp("increment", (key, 1, 60))
            return self.renderer.problem(
                410, "Unknown code", "This code is unknown, used or expired.", person=person
            )
        return record

    def _callback(self, record: Record, value: str | None) -> str:
        """A callback is followed only to the request's Person Server (digest 6.3)."""
        if value and origin_of(value) == origin_of(str(record.data["ps"])):
            return value
        return ""

    def handle_steps(self, request: HttpRequest) -> Steps[HttpResponse]:
        if not self.available:
            return self.renderer.problem(
                403, "Not available", "This Access Server has no sign-in for interactions."
            )
        person = self._person(request)
        if person is None:
            return self.renderer.problem(
                401, "Sign in first", "Sign in at this Access Server, then open this page again."
            )
        if request.method == "POST":
            return (yield from self._post_steps(request, person))
        return (yield from self._get_steps(request, person))

    def _get_steps(self, request: HttpRequest, person: str) -> Steps[HttpResponse]:
        query = query_params(request)
        code = query.get("code", "").strip()
        session = read_cookie(request, COOKIE) or new_nonce()
        secure = request.url.startswith("https:")
        cookie = set_cookie(COOKIE, session, secure=secure, path=self.server.config.interact_path)
        if not code:
            return self.renderer.page(
                "interact.html",
                headers=[cookie],
                person=person,
                record=None,
                entered="",
                csrf="",
                callback="",
                action=self.server.config.interact_path,
            )
        record = yield from self._lookup_steps(person, code)
        if isinstance(record, HttpResponse):
            return record

        def engaged(data: dict[str, Any]) -> None:
            if data["state"] != OPEN:
                raise Refused
            data["interacting"] = True

        if not record.data.get("interacting"):
            try:
                record = yield from self.server.pending.change_steps(record, engaged)
            except Refused:
                return self.renderer.problem(
                    410, "Unknown code", "This request is finished.", person=person
                )
        callback = self._callback(record, query.get("callback"))
        data = record.data
        return self.renderer.page(
            "interact.html",
            headers=[cookie],
            person=person,
            record=record.id,
            entered=code,
            csrf=csrf_token(self.secret, session, record.id, callback),
            callback=callback,
            action=self.server.config.interact_path,
            ps=data["ps"],
            resource=data["rt"]["iss"],
            scope=data["scope"],
            agent=data["agent"].get("sub"),
        )

    def _post_steps(self, request: HttpRequest, person: str) -> Steps[HttpResponse]:
        if not same_origin_post(request):
            return self.renderer.problem(
                403, "Refused", "A cross-site form was refused.", person=person
            )
        form = form_fields(request)
        record = yield from self._lookup_steps(person, form.get("code", ""))
        if isinstance(record, HttpResponse):
            return record
        callback = self._callback(record, form.get("callback"))
        session = read_cookie(request, COOKIE)
        if not check_csrf(self.secret, form.get("csrf"), session, record.id, callback):
            return self.renderer.problem(
                403, "Refused", "The form expired; open the page again.", person=person
            )
        decision = form.get("decision")
        if decision not in ("approve", "deny"):
            return self.renderer.problem(400, "Choose", "Approve or decline.", person=person)
        pending = self.server.pending

        def decide(data: dict[str, Any]) -> None:
            if data["state"] != OPEN or data.get("requirement") != "interaction":
                raise Refused
            if decision == "approve":
                data["interacted"], data["interacted_by"] = True, person
                data["interacting"] = False
                pending.decide(data)
            else:
                data["state"], data["detail"] = "denied", "the person declined at the access server"

        try:
            yield from pending.change_steps(record, decide)
        except Refused:
            return self.renderer.problem(
                410, "Unknown code", "This request is finished.", person=person
            )
        code_id = digest_id(normalize_interaction_code(str(record.data["code"])))
        yield StoreOp("delete", (KIND_CODE, code_id))
        if callback:
            params = {} if decision == "approve" else {"error": "access_denied"}
            return redirect(with_query(callback, params) if params else callback)
        return self.renderer.page(
            "interact_done.html", person=person, approved=decision == "approve"
        )


__all__ = ["InteractionPage"]
