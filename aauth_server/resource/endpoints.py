"""The endpoints a protected resource serves itself.

* ``GET /.well-known/aauth-resource.json`` and the resource's JWKS;
* the optional authorization endpoint (digest 5.1): ``POST`` with a person token,
  ``{"scope", "account"}`` -> ``{"resource_token"}``;
* the optional revocation endpoint (digest 5.7): ``POST`` signed as a server
  (``jwks_uri`` scheme, digest and type covered), ``{"jti", "exp"}``;
* pending URLs: deferred auth-token delivery (digest 9, issue #92) and session-token
  interactions.  A held invocation runs once, on the first poll that presents a valid
  auth token, on whichever worker gets that poll; repeats with the same auth token are
  answered from the stored result until the token's ``exp``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import Deferred, Forbidden, RequirementChallenge
from ..http import HttpRequest, HttpResponse
from ..revocation import RateLimit as _RateLimit
from ..revocation import json_body as _json_body
from ..revocation import problem as _problem
from ..revocation import revocation_steps, server_verifier
from ..steps import Steps, StoreOp
from ..storage.base import Record, RecordNotFound, VersionConflict
from ..tokens.aauth import DWK_ACCESS, DWK_PERSON, TYP_AGENT, TYP_AUTH, TYP_PERSON
from ..verifier import RequestVerifier, VerifierConfig
from .identity import PersonIdentity
from .state import KIND_HELD, KIND_SESSION_PENDING, new_id

if TYPE_CHECKING:
    from .guard import Protection, Redispatch, ResourceGuard

_PENDING_ID = re.compile(r"[A-Za-z0-9_\-]{16,64}")


def _freeze_request(request: HttpRequest) -> dict[str, Any]:
    return {
        "method": request.method,
        "url": request.url,
        "headers": [[k, v] for k, v in request.headers],
        "body": base64.b64encode(request.body).decode("ascii"),
    }


def _thaw_request(data: Mapping[str, Any]) -> HttpRequest:
    return HttpRequest(
        str(data["method"]),
        str(data["url"]),
        [(str(k), str(v)) for k, v in data["headers"]],
        base64.b64decode(data["body"]),
    )


def _freeze_response(response: HttpResponse) -> dict[str, Any]:
    return {
        "status": response.status,
        "headers": [[k, v] for k, v in response.headers],
        "body": base64.b64encode(response.body).decode("ascii"),
    }


def _thaw_response(data: Mapping[str, Any]) -> HttpResponse:
    return HttpResponse(
        int(data["status"]),
        [(str(k), str(v)) for k, v in data["headers"]],
        base64.b64decode(data["body"]),
    )


class ResourceEndpoints:
    def __init__(self, guard: ResourceGuard) -> None:
        self.guard = guard
        cfg = guard.config
        base = guard.verifier.config
        # Bodies at the resource's own endpoints carry what they ask for: cover them.
        self.body_verifier = RequestVerifier(
            guard.discovery,
            VerifierConfig(
                accept_schemes=("jwt",),
                accept_algs=base.accept_algs,
                token_types=(TYP_AGENT, TYP_PERSON, TYP_AUTH),
                window=base.window,
                required_components=base.required_components,
                require_body_coverage=True,
                accept_base64url=base.accept_base64url,
                allow_eddsa=base.allow_eddsa,
                dev_loopback=base.dev_loopback,
                audience=base.audience,
            ),
            clock=cfg.clock,
            state=guard.state,
        )
        # Servers revoking tokens sign in their own right (digest 2.3, 5.7).
        self.server_verifier = server_verifier(guard.discovery, base, cfg.clock)
        self.rate_limit = _RateLimit(cfg.revocations_per_minute)

    def routes(self) -> list[tuple[str, str]]:
        from .guard import WELL_KNOWN_PATH

        cfg = self.guard.config
        routes = [("GET", WELL_KNOWN_PATH)]
        if cfg.signing_key is not None:
            routes.append(("GET", cfg.jwks_path))
        if cfg.authorization_path:
            routes.append(("POST", cfg.authorization_path))
        if cfg.revocation_path:
            routes.append(("POST", cfg.revocation_path))
        routes += [("GET", cfg.pending_prefix), ("DELETE", cfg.pending_prefix)]
        return routes

    def handle_steps(self, request: HttpRequest) -> Steps[HttpResponse | Redispatch | None]:
        from .guard import WELL_KNOWN_PATH

        cfg = self.guard.config
        path, method = request.path, request.method
        if path == WELL_KNOWN_PATH and method in ("GET", "HEAD"):
            return self.guard.metadata_response()
        if path == cfg.jwks_path and method == "GET" and cfg.signing_key is not None:
            return HttpResponse.json(200, {"keys": [cfg.signing_key.public_jwk()]})
        if cfg.authorization_path and path == cfg.authorization_path and method == "POST":
            return (yield from self._authorize_steps(request))
        if cfg.revocation_path and path == cfg.revocation_path and method == "POST":
            return (yield from self._revoke_steps(request))
        if path.startswith(cfg.pending_prefix) and method in ("GET", "DELETE"):
            return (yield from self._pending_steps(request, path[len(cfg.pending_prefix) :]))
        return None

    # -- authorization endpoint (digest 5.1) -------------------------------------------------

    def _authorize_steps(self, request: HttpRequest) -> Steps[HttpResponse]:
        if self.guard._unsigned(request):
            raise RequirementChallenge(
                "person-token", "the authorization endpoint needs a person token"
            )
        verified = yield from self.body_verifier.steps(request)
        person = self.guard.person(verified)
        body = _json_body(request)
        scope = body.get("scope")
        if not isinstance(scope, str) or not scope.split():
            raise _problem(400, "invalid_request", "scope is required (space-separated)")
        declared = self.guard.config.scope_descriptions
        unknown = sorted(set(scope.split()) - set(declared))
        if unknown:
            raise _problem(400, "invalid_scope", f"unknown scope(s): {' '.join(unknown)}")
        account = body.get("account")
        if account is not None and (not isinstance(account, str) or not account.strip()):
            raise _problem(400, "invalid_account", "account must be a non-empty string")
        token = self.guard.tokens.issue(person, scope=" ".join(scope.split()), account=account)
        return HttpResponse.json(
            200, {"resource_token": token}, headers=[("Cache-Control", "no-store")]
        )

    # -- revocation endpoint (digest 5.7) ----------------------------------------------------

    def _revoke_steps(self, request: HttpRequest) -> Steps[HttpResponse]:
        cfg = self.guard.config

        def accepts(caller: str, dwk: object) -> bool:
            # Only the issuers of tokens this resource accepts may revoke them.
            if dwk == DWK_PERSON:
                return not cfg.trusted_ps or caller in cfg.trusted_ps
            return dwk == DWK_ACCESS and caller == cfg.access_server

        yield from revocation_steps(
            request,
            self.server_verifier,
            accepts=accepts,
            rate_limit=self.rate_limit,
            clock=cfg.clock,
        )
        # Nothing downstream of a resource: answer at once, with an empty body.
        return HttpResponse(200, [("Cache-Control", "no-store")], b"")

    # -- deferred auth-token delivery (digest 9) --------------------------------------------------

    def hold_steps(
        self,
        request: HttpRequest,
        person: PersonIdentity,
        protection: Protection,
        resource_token: str,
    ) -> Steps[None]:
        """Keep the invocation and answer ``202`` with ``requirement=auth-token``."""
        from .guard import AUTH_TOKEN

        cfg = self.guard.config
        held_id = new_id()
        data: dict[str, Any] = {
            "state": "held",
            "request": _freeze_request(request),
            "scope": protection.scope,
            "agent_jkt": person.jkt,
            "ps": person.ps,
            "sub": person.sub,
            "resource_token": resource_token,
        }
        yield StoreOp("create", (KIND_HELD, held_id, data, cfg.pending_lifetime))
        raise Deferred(
            self.guard.url_for(cfg.pending_prefix + held_id),
            requirement=AUTH_TOKEN,
            params={"resource-token": resource_token},
            retry_after=0,
        )

    def _pending_steps(
        self, request: HttpRequest, pending_id: str
    ) -> Steps[HttpResponse | Redispatch]:
        if not _PENDING_ID.fullmatch(pending_id):
            raise _problem(404, "not_found", "no such pending request")

        held = yield StoreOp("get", (KIND_HELD, pending_id))
        if held is not None:
            return (yield from self._poll_held_steps(request, held))
        session = yield StoreOp("get", (KIND_SESSION_PENDING, pending_id))
        if session is not None and session.data.get("type") == "session":
            return (yield from self.guard.sessions.poll_steps(request, session))
        raise _problem(404, "not_found", "no such pending request")

    def _poll_held_steps(
        self, request: HttpRequest, held: Record
    ) -> Steps[HttpResponse | Redispatch]:
        from .guard import AUTH_TOKEN, Redispatch

        verified = yield from self.guard.verifier.steps(request)
        data = held.data
        if verified.jkt != data["agent_jkt"]:
            raise Forbidden("this pending request belongs to another agent")
        cfg = self.guard.config
        location = self.guard.url_for(cfg.pending_prefix + held.id)
        if request.method == "DELETE":
            yield StoreOp("delete", (KIND_HELD, held.id))
            return HttpResponse(204, [("Cache-Control", "no-store")], b"")
        if verified.typ != TYP_AUTH:
            if data["state"] != "held":
                raise _problem(410, "gone", "this invocation was delivered to another auth token")
            raise Deferred(
                location,
                requirement=AUTH_TOKEN,
                params={"resource-token": str(data["resource_token"])},
                retry_after=1,
            )
        person = self.guard.person(verified)
        if (person.ps, person.sub) != (data["ps"], data["sub"]):
            raise Forbidden("the auth token is for another person")
        needed = frozenset(str(data["scope"]).split())
        if not needed <= person.scopes:
            raise Forbidden(
                "the auth token does not grant " + " ".join(sorted(needed)),
                error="insufficient_scope",
            )
        state = data["state"]
        if state == "done":
            if data["jti"] == person.jti:
                return _thaw_response(data["response"])
            raise _problem(410, "gone", "this invocation was delivered to another auth token")
        if state == "running":
            raise Deferred(location, retry_after=1)
        exp = verified.claims.get("exp")
        assert isinstance(exp, int)
        claimed = {**data, "state": "running", "jti": person.jti}
        try:
            record = yield StoreOp("compare_and_set", (KIND_HELD, held.id, held.version, claimed))
        except (VersionConflict, RecordNotFound):
            # Another worker took it a moment ago: it answers shortly.
            raise Deferred(location, retry_after=1) from None
        return Redispatch(
            request=_thaw_request(data["request"]),
            identity=person,
            held_id=held.id,
            version=record.version,
            jti=person.jti,
            token_exp=float(exp),
        )

    def finish_steps(self, redispatch: Redispatch, response: HttpResponse) -> Steps[HttpResponse]:

        cfg = self.guard.config
        record = yield StoreOp("get", (KIND_HELD, redispatch.held_id))
        if record is None or record.version != redispatch.version:
            return response
        # Kept for repeats until the auth token expires (at least as long as the pending URL).
        ttl = max(redispatch.token_exp - cfg.clock.now(), 1.0)
        done = {**record.data, "state": "done", "response": _freeze_response(response)}
        try:
            yield StoreOp(
                "compare_and_set", (KIND_HELD, redispatch.held_id, redispatch.version, done, ttl)
            )
        except (VersionConflict, RecordNotFound):
            pass  # cancelled meanwhile: the caller still gets this one answer
        return response
