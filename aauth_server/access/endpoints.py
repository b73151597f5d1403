"""The AS token endpoint (digest 5.4) and its revocation endpoint (5.7)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..http import HttpRequest, HttpResponse
from ..resource.state import REVOCATION_GRACE
from ..revocation import RateLimit, json_request_body, problem, revocation_steps
from ..steps import Steps
from ..tokens.aauth import DWK_PERSON, DWK_RESOURCE
from .pending import UNREACHABLE
from .tokens import request_data

if TYPE_CHECKING:
    from .server import AccessServer


class AccessEndpoints:
    def __init__(self, server: AccessServer) -> None:
        self.server = server
        self.rate_limit = RateLimit(600)

    def token_steps(self, request: HttpRequest) -> Steps[HttpResponse]:
        """``POST /token`` from a Person Server: verify, ask the policy, answer."""
        ps = yield from self.server.verify_ps_steps(request)
        return (yield from self.request_steps(ps, json_request_body(request)))

    def request_steps(self, ps: str, body: Mapping[str, Any]) -> Steps[HttpResponse]:
        """The token request ``body`` of the PS ``ps`` (already authenticated)."""
        server = self.server
        facts = yield from server.tokens.verify_steps(ps, body)
        data = request_data(ps, facts)
        server.pending.decide(data)
        state = data["state"]
        if state == "approved":
            return (yield from server.pending.issue_steps(data))
        if state == "denied":
            raise problem(403, "denied", str(data["detail"]))
        if state == "unreachable":
            raise problem(403, "user_unreachable", UNREACHABLE)
        record = yield from server.pending.create_steps(data)
        raise server.pending.deferred(record)

    def revoke_steps(self, request: HttpRequest) -> Steps[HttpResponse]:
        """Digest 5.7: a PS revokes a person token it presented here; a resource revokes a
        resource token it issued for us.  Recorded first (``(caller, jti)``); the cascade to
        the auth tokens issued against it is :meth:`AccessServer.revoked_steps`."""
        server = self.server
        cfg = server.config

        def accepts(caller: str, dwk: object) -> bool:
            return (dwk == DWK_PERSON and cfg.trusts(caller)) or dwk == DWK_RESOURCE

        def record(caller: str, jti: str, exp: int, now: float) -> Steps[None]:
            until = exp + REVOCATION_GRACE
            yield server.rop(server.rec.revoke(caller, jti, exp=until, now=now, source="caller"))

        caller, dwk, jti = yield from revocation_steps(
            request,
            server.server_verifier,
            accepts=accepts,
            rate_limit=self.rate_limit,
            clock=cfg.clock,
            record=record,
        )
        return (yield from server.revoked_steps(caller, dwk, jti))


__all__ = ["AccessEndpoints"]
