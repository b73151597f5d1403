"""The AS token endpoint (digest 5.4) and its revocation endpoint (5.7)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..http import HttpRequest, HttpResponse
from ..revocation import json_request_body, problem
from ..steps import Steps
from .pending import UNREACHABLE
from .tokens import request_data

if TYPE_CHECKING:
    from .server import AccessServer


class AccessEndpoints:
    def __init__(self, server: AccessServer) -> None:
        self.server = server

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


__all__ = ["AccessEndpoints"]
