"""The resource guard: verify -> identity -> decision -> challenge.

Framework adapters call :meth:`ResourceGuard.check` (sync) or :meth:`ResourceGuard.acheck`
(async) with a neutral :class:`HttpRequest`; the guard returns who signed, or raises an
:class:`AAuthError` that renders itself.  No protocol decision lives in an adapter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import AAuthError, RequirementChallenge
from ..http import HttpRequest, HttpResponse
from ..keys.discovery import KeyDiscovery
from ..keys.egress import EgressPolicy
from ..keys.fetcher import AsyncHttpxFetcher, HttpxFetcher
from ..signatures.message import AAUTH_COMPONENTS
from ..tokens.aauth import TYP_AGENT
from ..verifier import SIGNATURE_FIELDS, RequestVerifier, VerifiedRequest, VerifierConfig
from .config import ResourceConfig

AGENT_TOKEN = "agent-token"  # noqa: S105 - an access-mode name, not a secret
#: Access modes this release implements; the others arrive with the resource-side issue.
SUPPORTED_MODES = (AGENT_TOKEN,)
WELL_KNOWN_PATH = "/.well-known/aauth-resource.json"


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    """The verified agent behind a request (agent-token mode)."""

    agent: str
    issuer: str
    jkt: str
    claims: Mapping[str, object]
    token: str
    ps: str | None = None
    parent_agent: str | None = None

    @classmethod
    def from_verified(cls, verified: VerifiedRequest) -> AgentIdentity:
        claims = verified.claims
        ps, parent = claims.get("ps"), claims.get("parent_agent")
        assert verified.token is not None and verified.issuer is not None
        return cls(
            agent=str(claims["sub"]),
            issuer=verified.issuer,
            jkt=verified.jkt,
            claims=claims,
            token=verified.token,
            ps=ps if isinstance(ps, str) else None,
            parent_agent=parent if isinstance(parent, str) else None,
        )

    def as_dict(self) -> dict[str, Any]:
        return {"agent": self.agent, "issuer": self.issuer, "jkt": self.jkt, "ps": self.ps}


@dataclass(frozen=True, slots=True)
class Protection:
    """How one endpoint is protected."""

    mode: str = AGENT_TOKEN
    #: Let unsigned requests through with no identity; a signed request must still verify.
    optional: bool = False

    def __post_init__(self) -> None:
        if self.mode not in SUPPORTED_MODES:
            raise ValueError(f"access mode {self.mode!r} is not supported (have {SUPPORTED_MODES})")


DEFAULT_PROTECTION = Protection()


class ResourceGuard:
    def __init__(self, config: ResourceConfig) -> None:
        self.config = config
        discovery = config.discovery
        if discovery is None:
            policy = EgressPolicy(dev_loopback=config.dev_loopback)
            discovery = KeyDiscovery(
                config.fetcher or HttpxFetcher(policy),
                config.async_fetcher or AsyncHttpxFetcher(policy),
                clock=config.clock,
                accept_algs=config.accept_algs,
                allow_eddsa=config.allow_eddsa,
                dev_loopback=config.dev_loopback,
            )
        self.discovery = discovery
        self.verifier = RequestVerifier(
            discovery,
            VerifierConfig(
                accept_schemes=("jwt",),
                accept_algs=config.accept_algs,
                token_types=(TYP_AGENT,),
                window=config.signature_window,
                required_components=AAUTH_COMPONENTS
                + tuple(
                    c for c in config.additional_signature_components if c not in AAUTH_COMPONENTS
                ),
                accept_base64url=config.accept_base64url,
                allow_eddsa=config.allow_eddsa,
                dev_loopback=config.dev_loopback,
                audience=config.issuer,
            ),
            clock=config.clock,
        )
        self._metadata_body = HttpResponse.json(200, self.metadata()).body

    # -- request checks --------------------------------------------------------------------

    def check(
        self, request: HttpRequest, protection: Protection = DEFAULT_PROTECTION
    ) -> AgentIdentity | None:
        if self._unsigned(request):
            return self._challenge(protection)
        return AgentIdentity.from_verified(self.verifier.verify(request))

    async def acheck(
        self, request: HttpRequest, protection: Protection = DEFAULT_PROTECTION
    ) -> AgentIdentity | None:
        if self._unsigned(request):
            return self._challenge(protection)
        return AgentIdentity.from_verified(await self.verifier.averify(request))

    @staticmethod
    def _unsigned(request: HttpRequest) -> bool:
        # Only a request with none of the three fields is "unsigned"; a partial set is a
        # broken signature and gets invalid_signature from the verifier.
        return all(request.header(name) is None for name in SIGNATURE_FIELDS)

    @staticmethod
    def _challenge(protection: Protection) -> None:
        if protection.optional:
            return None
        raise RequirementChallenge(protection.mode, "this endpoint requires an AAuth agent token")

    # -- what adapters need besides checks ---------------------------------------------------

    def public_url(self, scheme: str, host: str | None, target: str) -> str:
        """The absolute URL a request was sent to: ``public_origin`` wins over Host."""
        if self.config.public_origin:
            return self.config.public_origin.rstrip("/") + target
        if not host:
            host = urlsplit(self.config.issuer).netloc
        return f"{scheme}://{host}{target}"

    def metadata(self) -> dict[str, Any]:
        cfg = self.config
        doc: dict[str, Any] = {"issuer": cfg.issuer}
        if cfg.jwks_uri:
            doc["jwks_uri"] = cfg.jwks_uri
        for key in ("name", "description", "documentation_uri"):
            value = getattr(cfg, key)
            if value:
                doc[key] = value
        doc["access_mode"] = AGENT_TOKEN
        doc["signature_window"] = cfg.signature_window
        doc["accept_signature_algs"] = list(cfg.accept_algs)
        if cfg.additional_signature_components:
            doc["additional_signature_components"] = list(cfg.additional_signature_components)
        doc.update(cfg.metadata_extra)
        return doc

    def metadata_response(self) -> HttpResponse:
        return HttpResponse(
            200,
            [("Content-Type", "application/json"), ("Cache-Control", "public, max-age=3600")],
            self._metadata_body,
        )

    @staticmethod
    def error_response(error: AAuthError) -> HttpResponse:
        return error.to_response()
