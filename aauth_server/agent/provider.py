"""A minimal Agent Provider: issues agent tokens and publishes its metadata and JWKS.

Enough for tests, examples and a user's own first agent.  Agent-token acquisition is
AP-specific in AAuth (the bootstrap draft describes enrollment); :meth:`handle` offers a
development-only enrollment endpoint, on only when ``dev_enrollment`` is set.

Sub-agents (digest 9): :meth:`AgentProvider.issue_subagent` issues a token for
``aauth:<parent local>+<name>@<domain>`` with ``parent_agent`` and this provider as ``iss``
(the parent's), never for a parent that is itself a sub-agent (one level deep).  The
development endpoint ``POST /dev/subagent-token`` takes ``{"parent_token", "name", "jwk"}``:
the parent proves nothing but holding one of this provider's agent tokens, so it is for
development only, like the enrollment endpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from .. import safejson
from ..clock import SYSTEM_CLOCK, Clock
from ..errors import AAuthError
from ..http import HttpRequest, HttpResponse
from ..identifiers import is_agent_identifier, is_server_identifier, parse_agent_identifier
from ..keys.jwk import PrivateKey, PublicKey
from ..tokens.aauth import DWK_AGENT, TYP_AGENT, check_claims, check_header, mint_agent_token
from ..tokens.jwt import TokenError, decode_unverified, verify_jwt_signature

JWKS_PATH = "/.well-known/jwks.json"
METADATA_PATH = "/.well-known/" + DWK_AGENT
ENROLL_PATH = "/dev/agent-token"
SUBAGENT_PATH = "/dev/subagent-token"


class AgentProvider:
    def __init__(
        self,
        issuer: str,
        key: PrivateKey | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        dev_loopback: bool = False,
        dev_enrollment: bool = False,
        ps: str | None = None,
    ) -> None:
        if not is_server_identifier(issuer, dev_loopback=dev_loopback):
            raise ValueError(f"{issuer!r} is not a server identifier")
        self.issuer = issuer
        self.key = key or PrivateKey.generate("Ed25519", kid="ap-key-1")
        self.clock = clock
        self.dev_loopback = dev_loopback
        self.dev_enrollment = dev_enrollment
        self.ps = ps

    @property
    def domain(self) -> str:
        return urlsplit(self.issuer).netloc

    def agent_id(self, local: str) -> str:
        agent = f"aauth:{local}@{self.domain}"
        if not is_agent_identifier(agent, dev_loopback=self.dev_loopback):
            raise ValueError(f"{agent!r} is not an agent identifier")
        return agent

    def metadata(self) -> dict[str, Any]:
        return {"issuer": self.issuer, "jwks_uri": self.issuer + JWKS_PATH}

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.key.public_jwk()]}

    def documents(self) -> dict[str, Any]:
        """Metadata and JWKS keyed by URL, to serve from a StaticFetcher in tests."""
        return {self.issuer + METADATA_PATH: self.metadata(), self.issuer + JWKS_PATH: self.jwks()}

    def issue(
        self,
        agent_key: PublicKey | Mapping[str, object],
        local: str,
        *,
        lifetime: int = 3600,
        ps: str | None = None,
    ) -> str:
        """Mint an agent token binding ``agent_key`` (the agent's signing key) in ``cnf.jwk``."""
        jwk = agent_key.jwk if isinstance(agent_key, PublicKey) else agent_key
        public = PublicKey.from_jwk(jwk)
        return mint_agent_token(
            self.key,
            iss=self.issuer,
            sub=self.agent_id(local),
            cnf_jwk=dict(public.jwk),
            now=self.clock.now(),
            lifetime=lifetime,
            ps=ps or self.ps,
            dev_loopback=self.dev_loopback,
        )

    def issue_subagent(
        self,
        agent_key: PublicKey | Mapping[str, object],
        parent: str,
        name: str,
        *,
        lifetime: int = 3600,
        ps: str | None = None,
    ) -> str:
        """Mint a sub-agent token: ``sub`` ``aauth:<parent local>+<name>@<domain>``,
        ``parent_agent`` = ``parent`` (one of this provider's top-level agents)."""
        parsed = parse_agent_identifier(parent, dev_loopback=self.dev_loopback)
        if parsed.discriminator is not None:
            raise ValueError("the parent is itself a sub-agent: sub-agents are one level deep")
        if parent != self.agent_id(parsed.local):
            raise ValueError(f"{parent!r} is not an agent of this provider")
        if "+" in name:
            raise ValueError("a sub-agent name must not contain '+'")
        jwk = agent_key.jwk if isinstance(agent_key, PublicKey) else agent_key
        public = PublicKey.from_jwk(jwk)
        return mint_agent_token(
            self.key,
            iss=self.issuer,
            sub=self.agent_id(f"{parsed.local}+{name}"),
            cnf_jwk=dict(public.jwk),
            now=self.clock.now(),
            lifetime=lifetime,
            ps=ps or self.ps,
            parent_agent=parent,
            dev_loopback=self.dev_loopback,
        )

    def verify_own(self, token: str) -> Mapping[str, object]:
        """The claims of an agent token this provider issued and that is still valid."""
        jwt = decode_unverified(token)
        check_header(jwt, TYP_AGENT)
        if jwt.payload.get("iss") != self.issuer:
            raise TokenError("invalid_jwt", "not a token of this agent provider")
        verify_jwt_signature(jwt, self.key.public)
        return check_claims(
            jwt, typ=TYP_AGENT, now=self.clock.now(), dev_loopback=self.dev_loopback
        )

    def asgi(self) -> Any:
        """This provider as an ASGI app (``uvicorn``): metadata, JWKS and, with
        ``dev_enrollment``, ``POST /dev/agent-token``."""
        from ..asgi import asgi_app

        return asgi_app(self.handle)

    def handle(self, request: HttpRequest) -> HttpResponse:
        path = request.path
        if request.method == "GET" and path == METADATA_PATH:
            return HttpResponse.json(200, self.metadata())
        if request.method == "GET" and path == JWKS_PATH:
            return HttpResponse.json(200, self.jwks())
        if self.dev_enrollment and request.method == "POST" and path == ENROLL_PATH:
            return self._enroll(request)
        if self.dev_enrollment and request.method == "POST" and path == SUBAGENT_PATH:
            return self._spawn(request)
        return AAuthError("no such endpoint", error="not_found", status=404).to_response()

    def _enroll(self, request: HttpRequest) -> HttpResponse:
        try:
            body = safejson.loads(request.body)
            local, jwk = body["local"], body["jwk"]
            if not isinstance(local, str) or not isinstance(jwk, dict):
                raise TypeError("local must be a string and jwk an object")
            token = self.issue(jwk, local)
        except AAuthError as exc:
            return AAuthError(exc.detail or exc.error, error="invalid_request").to_response()
        except (ValueError, KeyError, TypeError) as exc:
            return AAuthError(str(exc), error="invalid_request").to_response()
        return HttpResponse.json(200, {"agent_token": token, "agent": self.agent_id(local)})

    def _spawn(self, request: HttpRequest) -> HttpResponse:
        try:
            body = safejson.loads(request.body)
            parent_token, name, jwk = body["parent_token"], body["name"], body["jwk"]
            if not (isinstance(parent_token, str) and isinstance(name, str)):
                raise TypeError("parent_token and name must be strings")
            if not isinstance(jwk, dict):
                raise TypeError("jwk must be an object")
            parent = self.verify_own(parent_token)
            if "parent_agent" in parent:
                raise ValueError("the parent is itself a sub-agent: sub-agents are one level deep")
            token = self.issue_subagent(jwk, str(parent["sub"]), name)
        except TokenError as exc:
            return AAuthError(exc.detail, error="invalid_request").to_response()
        except AAuthError as exc:
            return AAuthError(exc.detail or exc.error, error="invalid_request").to_response()
        except (ValueError, KeyError, TypeError) as exc:
            return AAuthError(str(exc), error="invalid_request").to_response()
        agent = decode_unverified(token).payload["sub"]
        return HttpResponse.json(200, {"agent_token": token, "agent": agent})
