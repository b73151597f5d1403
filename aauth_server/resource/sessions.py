"""Session-token mode (two-party, digest 3.6 and 9): the resource's own interaction, then
``AAuth-Access``.

An agent with no session is sent to the resource's interaction page (``202``
``requirement=interaction`` with a code) if it declared the ``interaction`` capability.
The application authenticates the person on its own page and calls :meth:`Sessions.approve`
(or :meth:`Sessions.deny`) with the code; the agent's next poll of the pending URL gets
``200`` and ``AAuth-Access: <session token>``.  Later requests carry
``Authorization: AAuth <session token>`` with ``authorization`` covered by the signature,
so the token is useless as a bearer token: it only works with the agent's signature.
"""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING, Any

from ..errors import AAuthError, Deferred, Forbidden
from ..http import HttpRequest, HttpResponse
from ..identifiers import CROCKFORD_ALPHABET, normalize_interaction_code
from ..steps import Steps, StoreOp
from ..storage.base import Record, RecordNotFound, VersionConflict
from ..tokens.aauth import TYP_AGENT
from .identity import AgentIdentity, SessionIdentity
from .state import KIND_SESSION, KIND_SESSION_PENDING, digest_id, new_id

if TYPE_CHECKING:
    from .guard import ResourceGuard

_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def new_code() -> str:
    """An interaction code: 8 Crockford base32 symbols (40 bits), shown as ``XXXX-XXXX``."""
    symbols = "".join(secrets.choice(CROCKFORD_ALPHABET) for _ in range(8))
    return f"{symbols[:4]}-{symbols[4:]}"


def session_credential(value: str) -> str:
    """The token68 of ``Authorization: AAuth <token68>``; anything else is refused."""
    scheme, _, credential = value.partition(" ")
    if scheme.lower() != "aauth" or not _TOKEN68.fullmatch(credential):
        raise AAuthError("Authorization must be 'AAuth <token68>' with one credential")
    return credential


class Sessions:
    def __init__(self, guard: ResourceGuard) -> None:
        self.guard = guard

    # -- the protected request -----------------------------------------------------------

    def check_steps(self, request: HttpRequest, agent: AgentIdentity) -> Steps[SessionIdentity]:

        authz = request.header("authorization")
        if authz is not None:
            token = session_credential(authz)
            record = yield StoreOp("get", (KIND_SESSION, digest_id(token)))
            if (
                record is not None
                and record.data["agent"] == agent.agent
                and record.data["agent_iss"] == agent.issuer
            ):
                return SessionIdentity(agent, str(record.data["account"]), token)
            # Unknown, expired or another agent's session: start over, as with none.
        if "interaction" not in self.guard.capabilities(request):
            raise Forbidden(
                "this endpoint needs the person at the resource's interaction page, and the "
                "agent did not declare the interaction capability",
                error="user_unreachable",
            )
        yield from self.begin_steps(agent)
        raise AssertionError("begin_steps always answers 202")  # pragma: no cover

    def begin_steps(self, agent: AgentIdentity) -> Steps[None]:

        cfg = self.guard.config
        pending_id, code = new_id(), new_code()
        data: dict[str, Any] = {
            "type": "session",
            "state": "pending",
            "agent": agent.agent,
            "agent_iss": agent.issuer,
        }
        yield StoreOp("create", (KIND_SESSION_PENDING, pending_id, data, cfg.pending_lifetime))
        yield StoreOp(
            "create",
            (KIND_SESSION_PENDING, _code_id(code), {"pending": pending_id}, cfg.pending_lifetime),
        )
        raise Deferred(
            self.guard.url_for(cfg.pending_prefix + pending_id),
            requirement="interaction",
            params={"url": self.guard.url_for(cfg.interaction_path), "code": code},
            retry_after=2,
        )

    # -- the person's decision, made on the application's own authenticated page -------------

    def approve(self, code: str, account: str) -> bool:
        """Record the person's approval; False for an unknown, used or expired code."""
        return self.guard.run(self._decide_steps(code, "approved", account))

    async def aapprove(self, code: str, account: str) -> bool:
        return await self.guard.arun(self._decide_steps(code, "approved", account))

    def deny(self, code: str) -> bool:
        return self.guard.run(self._decide_steps(code, "denied", None))

    async def adeny(self, code: str) -> bool:
        return await self.guard.arun(self._decide_steps(code, "denied", None))

    def _decide_steps(self, code: str, outcome: str, account: str | None) -> Steps[bool]:

        if outcome == "approved" and not account:
            raise ValueError("approval needs the person's account")
        try:
            normalized = normalize_interaction_code(code)
        except ValueError:
            return False
        # Single use: the code index is consumed whatever happens next.
        index = yield StoreOp("consume", (KIND_SESSION_PENDING, _code_id(normalized)))
        if index is None:
            return False
        pending_id = str(index.data["pending"])
        record = yield StoreOp("get", (KIND_SESSION_PENDING, pending_id))
        if record is None or record.data.get("state") != "pending":
            return False
        data = {**record.data, "state": outcome, "account": account}
        try:
            yield StoreOp(
                "compare_and_set", (KIND_SESSION_PENDING, pending_id, record.version, data)
            )
        except (VersionConflict, RecordNotFound):
            return False
        return True

    # -- the agent's poll --------------------------------------------------------------------

    def poll_steps(self, request: HttpRequest, record: Record) -> Steps[HttpResponse]:

        verified = yield from self.guard.verifier.steps(request)
        if verified.typ != TYP_AGENT:
            raise Forbidden("poll this pending URL with the agent token")
        agent = AgentIdentity.from_verified(verified)
        if (agent.agent, agent.issuer) != (record.data["agent"], record.data["agent_iss"]):
            raise Forbidden("this pending request belongs to another agent")
        state = record.data["state"]
        cfg = self.guard.config
        if request.method == "DELETE":
            yield StoreOp("delete", (KIND_SESSION_PENDING, record.id))
            return HttpResponse(204, [("Cache-Control", "no-store")], b"")
        if state == "pending":
            raise Deferred(self.guard.url_for(cfg.pending_prefix + record.id), retry_after=2)
        # A decision: deliver it exactly once, then the pending URL is gone.
        taken = yield StoreOp("consume", (KIND_SESSION_PENDING, record.id))
        if taken is None:
            return _gone()
        if state == "denied":
            raise Forbidden("the person declined", error="denied")
        token = new_id(32)
        session: dict[str, Any] = {
            "agent": agent.agent,
            "agent_iss": agent.issuer,
            "account": record.data["account"],
        }
        yield StoreOp("create", (KIND_SESSION, digest_id(token), session, cfg.session_lifetime))
        return HttpResponse.json(
            200,
            {"status": "authorized"},
            headers=[("AAuth-Access", token), ("Cache-Control", "no-store")],
        )


def _code_id(code: str) -> str:
    return "code:" + normalize_interaction_code(code)


def _gone() -> HttpResponse:
    return AAuthError("this pending request has ended", error="gone", status=410).to_response()
