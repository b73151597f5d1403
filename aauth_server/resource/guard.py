"""The resource guard: verify -> identity -> decision -> challenge / resource token.

Framework adapters call :meth:`ResourceGuard.check` (sync) or :meth:`ResourceGuard.acheck`
(async) with a neutral :class:`HttpRequest`, and route the guard's own endpoints
(metadata, JWKS, authorization, revocation, pending URLs) to :meth:`ResourceGuard.handle`
/ :meth:`ResourceGuard.ahandle`.  Every protocol decision is made here, once: the logic is
written as generators that yield what they need (a key, a revocation lookup, a store
operation) and two small drivers answer those needs synchronously or asynchronously.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ..errors import AAuthError, Forbidden, RequirementChallenge, SignatureFailure
from ..fields import FieldError, parse_token_list
from ..http import HttpRequest, HttpResponse, checked_host, public_url
from ..signatures.message import AAUTH_COMPONENTS
from ..steps import Driver, Steps, StoreOp, Unavailable
from ..storage.base import AsyncPendingStore, PendingStore, StorageError
from ..tokens.aauth import DWK_ACCESS, DWK_PERSON, TYP_AGENT, TYP_AUTH, TYP_PERSON
from ..verifier import (
    SIGNATURE_FIELDS,
    Prelude,
    RequestVerifier,
    VerifiedRequest,
    VerifierConfig,
)
from .config import ConfigurationError, ResourceConfig, discovery_for
from .identity import AgentIdentity, Identity, PersonIdentity
from .state import ResourceState

AGENT_TOKEN = "agent-token"  # noqa: S105 - an access-mode name, not a secret
PERSON_TOKEN = "person-token"  # noqa: S105
AUTH_TOKEN = "auth-token"  # noqa: S105
SESSION_TOKEN = "session-token"  # noqa: S105
SUPPORTED_MODES = (AGENT_TOKEN, PERSON_TOKEN, AUTH_TOKEN, SESSION_TOKEN)
WELL_KNOWN_PATH = "/.well-known/aauth-resource.json"

#: Agent identities kept by token (one per agent token in use; emptied when full).
_AGENTS_MAX = 4096

T = TypeVar("T")
log = logging.getLogger("aauth_server.resource")


@dataclass(frozen=True, slots=True)
class Protection:
    """How one endpoint is protected (digest section 9, one access mode per endpoint)."""

    mode: str = AGENT_TOKEN
    _: KW_ONLY
    #: ``auth-token`` mode: the space-separated scopes the endpoint needs.
    scope: str | None = None
    #: Let unsigned requests through with no identity; a signed request must still verify.
    optional: bool = False
    #: ``auth-token`` mode: hold the invocation and answer ``202`` (deferred delivery).
    deferred: bool = False

    def __post_init__(self) -> None:
        if self.mode not in SUPPORTED_MODES:
            raise ValueError(f"access mode {self.mode!r} is not one of {SUPPORTED_MODES}")
        if self.mode == AUTH_TOKEN and not self.scopes:
            raise ValueError("auth-token mode needs scope=...")
        if self.mode != AUTH_TOKEN and (self.scope is not None or self.deferred):
            raise ValueError("scope and deferred apply to auth-token mode only")

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset((self.scope or "").split())


DEFAULT_PROTECTION = Protection()


@dataclass(slots=True)
class Redispatch:
    """Run the held invocation now: the adapter dispatches ``request`` to its view with
    ``identity`` already established, then hands the response to ``guard.finish``."""

    request: HttpRequest
    identity: PersonIdentity
    held_id: str
    version: int
    jti: str
    token_exp: float
    extra: dict[str, Any] = field(default_factory=dict)


def _capabilities(request: HttpRequest) -> frozenset[str]:
    # Absent or malformed: assume no capabilities (digest 4.2).
    try:
        return frozenset(parse_token_list(request.header("aauth-capabilities")))
    except FieldError:
        return frozenset()


class ResourceGuard:
    def __init__(self, config: ResourceConfig) -> None:
        from .endpoints import ResourceEndpoints  # the endpoints build on the guard
        from .sessions import Sessions
        from .tokens import ResourceTokens

        self.config = config
        if config.trust_any_ps:
            log.warning(
                "resource %s accepts person and auth tokens from ANY Person Server "
                "(trust_any_ps=True); set trusted_ps to name the ones you trust",
                config.issuer,
            )
        discovery = discovery_for(config)
        self.discovery = discovery
        store, async_store = config.stores()
        self.store: PendingStore = store
        self.async_store: AsyncPendingStore = async_store
        self.state = ResourceState(store, async_store)
        self.verifier = RequestVerifier(
            discovery,
            VerifierConfig(
                accept_schemes=("jwt",),
                accept_algs=config.accept_algs,
                token_types=(TYP_AGENT, TYP_PERSON, TYP_AUTH),
                window=config.signature_window,
                required_components=AAUTH_COMPONENTS
                + tuple(
                    c for c in config.additional_signature_components if c not in AAUTH_COMPONENTS
                ),
                accept_base64url=config.accept_base64url,
                allow_eddsa=config.allow_eddsa,
                dev_loopback=config.dev_loopback,
                audience=config.issuer,
                replay_cache=config.replay_cache,
                admit_issuer=self._admit_issuer,
            ),
            clock=config.clock,
            state=self.state,
        )
        self.driver = Driver(self.verifier, store, async_store, subject="the resource")
        self.tokens = ResourceTokens(self)
        self.sessions = Sessions(self)
        self.endpoints = ResourceEndpoints(self)
        self._metadata_body = HttpResponse.json(200, self.metadata()).body
        self._agents: dict[str, AgentIdentity] = {}

    # -- drivers -------------------------------------------------------------------------------

    def run(self, steps: Steps[T]) -> T:
        """Drive decision logic synchronously (Flask, Django sync views)."""
        return self.driver.run(steps)

    async def arun(self, steps: Steps[T]) -> T:
        """Drive decision logic asynchronously (Starlette, Django async views)."""
        return await self.driver.arun(steps)

    # -- request checks ------------------------------------------------------------------------

    def check(
        self, request: HttpRequest, protection: Protection = DEFAULT_PROTECTION
    ) -> Identity | None:
        try:
            if protection.mode == AGENT_TOKEN:
                verified = self.verifier.verify_fast(request)
                if verified is not None and verified.typ == TYP_AGENT:
                    return self._agent(verified)
            return self.run(self.check_steps(request, protection))
        except AAuthError as error:
            raise self._annotated(error) from error.__cause__
        except (StorageError, ConfigurationError) as exc:
            raise self.driver.server_error(exc) from exc

    async def acheck(
        self, request: HttpRequest, protection: Protection = DEFAULT_PROTECTION
    ) -> Identity | None:
        try:
            if protection.mode == AGENT_TOKEN:
                verified = self.verifier.verify_fast(request)
                if verified is not None and verified.typ == TYP_AGENT:
                    return self._agent(verified)
            return await self.arun(self.check_steps(request, protection))
        except AAuthError as error:
            raise self._annotated(error) from error.__cause__
        except (StorageError, ConfigurationError) as exc:
            raise self.driver.server_error(exc) from exc

    def check_agent_fast(self, request: HttpRequest) -> AgentIdentity | None:
        """An agent-token endpoint's answer when :meth:`RequestVerifier.verify_fast` gives it
        (a request in the common form whose agent token is known, or verifiable at once with
        its issuer's key at hand: its signature verified now), without the
        drivers; None to ask :meth:`check` or :meth:`acheck`, which decide everything else.
        A refusal raises exactly what they raise."""
        try:
            verified = self.verifier.verify_fast(request)
        except AAuthError as error:
            raise self._annotated(error) from error.__cause__
        if verified is None or verified.typ != TYP_AGENT:
            return None
        return self._agent(verified)

    def _agent(self, verified: VerifiedRequest) -> AgentIdentity:
        # The identity depends on the agent token alone (its claims, issuer and bound key):
        # built once per token, as the verifier keeps the token's verification.
        token = verified.token
        identity = self._agents.get(token) if token is not None else None
        if (
            identity is None
            or identity.claims is not verified.claims
            or identity.jkt != verified.jkt
            or identity.issuer != verified.issuer
        ):
            identity = AgentIdentity.from_verified(verified)
            if len(self._agents) >= _AGENTS_MAX:
                self._agents.clear()
            self._agents[identity.token] = identity
        return identity

    def check_steps(
        self, request: HttpRequest, protection: Protection, prelude: Prelude | None = None
    ) -> Steps[Identity | None]:
        """``prelude``: the verifier's :meth:`~RequestVerifier.fast_prelude` for this request,
        when the caller already has it."""
        if prelude is None and self._unsigned(request):
            if protection.optional:
                return None
            # auth-token and person-token both start with the person token.
            first = AGENT_TOKEN if protection.mode in (AGENT_TOKEN, SESSION_TOKEN) else PERSON_TOKEN
            raise RequirementChallenge(first, f"this endpoint requires an AAuth {first}")
        verified = yield from self.verifier.steps(request, prelude)
        mode = protection.mode
        if mode in (AGENT_TOKEN, SESSION_TOKEN):
            if verified.typ != TYP_AGENT:
                raise RequirementChallenge(AGENT_TOKEN, "this endpoint requires the agent token")
            agent = self._agent(verified)
            if mode == AGENT_TOKEN:
                return agent
            return (yield from self.sessions.check_steps(request, agent))
        person = self.person(verified)
        if mode == PERSON_TOKEN:
            return person
        self._declared(protection.scopes)
        if person.authorized and protection.scopes <= person.scopes:
            return person
        # A person token, or an auth token without enough scope (step-up): a fresh challenge.
        resource_token = self.tokens.issue(person, scope=protection.scope or "")
        if protection.deferred:
            yield from self.endpoints.hold_steps(request, person, protection, resource_token)
        raise RequirementChallenge(
            AUTH_TOKEN,
            "take the resource token to your person server"
            if not person.authorized
            else "this operation needs more scope than the auth token grants",
            params={"resource-token": resource_token},
        )

    def person(self, verified: VerifiedRequest) -> PersonIdentity:
        """The person behind a verified person or auth token, after the trust rules."""
        claims = verified.claims
        if verified.typ == TYP_AGENT:
            raise RequirementChallenge(PERSON_TOKEN, "this endpoint requires a person token")
        assert verified.token is not None and verified.issuer is not None
        iss = verified.issuer
        jti = claims.get("jti")
        sub = claims.get("sub")
        assert isinstance(jti, str) and isinstance(sub, str)
        cfg = self.config
        if verified.typ == TYP_PERSON:
            ps = iss
            self._trusted_ps(ps)
            scopes: frozenset[str] = frozenset()
        else:
            ps_claim = claims.get("ps")
            assert isinstance(ps_claim, str)
            ps = ps_claim
            dwk = claims.get("dwk")
            if dwk == DWK_ACCESS:
                if cfg.access_server is None or iss != cfg.access_server:
                    raise SignatureFailure(
                        "invalid_jwt", "auth token from an unknown access server"
                    )
            elif dwk == DWK_PERSON and iss == ps:
                if cfg.access_server is not None:
                    # Four-party resources take their AS's verdict, not a PS-issued token.
                    raise SignatureFailure(
                        "invalid_jwt", "this resource takes auth tokens from its AS"
                    )
                self._trusted_ps(ps)
            else:
                raise SignatureFailure("invalid_jwt", "a PS-issued auth token must have iss == ps")
            scope = claims.get("scope")
            scopes = frozenset(scope.split()) if isinstance(scope, str) else frozenset()
        mission, tenant = claims.get("mission_s256"), claims.get("tenant")
        return PersonIdentity(
            ps=ps,
            sub=sub,
            issuer=iss,
            jkt=verified.jkt,
            claims=claims,
            token=verified.token,
            typ=str(verified.typ),
            jti=jti,
            scopes=scopes,
            authorized=verified.typ == TYP_AUTH,
            mission_s256=mission if isinstance(mission, str) else None,
            tenant=tenant if isinstance(tenant, str) else None,
        )

    def _trusted_ps(self, ps: str) -> None:
        cfg = self.config
        if cfg.trust_any_ps:
            return
        if ps not in cfg.trusted_ps:
            raise SignatureFailure(
                "invalid_jwt", "token from a person server this resource does not trust"
            )

    def _admit_issuer(self, typ: str, payload: Mapping[str, object]) -> None:
        """The trust rules of :meth:`person`, applied to the unverified token before its
        issuer's keys are fetched: an untrusted PS or AS costs no fetch."""
        if typ == TYP_PERSON:
            self._trusted_ps(str(payload.get("iss")))
        elif typ == TYP_AUTH:
            iss, dwk = payload.get("iss"), payload.get("dwk")
            access_server = self.config.access_server
            if dwk == DWK_ACCESS:
                if access_server is None or iss != access_server:
                    raise SignatureFailure(
                        "invalid_jwt", "auth token from an unknown access server"
                    )
            elif access_server is not None:
                raise SignatureFailure("invalid_jwt", "this resource takes auth tokens from its AS")
            elif payload.get("ps") != iss:
                raise SignatureFailure("invalid_jwt", "a PS-issued auth token must have iss == ps")
            else:
                self._trusted_ps(str(iss))

    def _declared(self, scopes: frozenset[str]) -> None:
        undeclared = scopes - set(self.config.scope_descriptions)
        if undeclared:
            raise ConfigurationError(
                f"scopes {sorted(undeclared)} are not declared in scope_descriptions"
            )

    @staticmethod
    def capabilities(request: HttpRequest) -> frozenset[str]:
        return _capabilities(request)

    @staticmethod
    def _unsigned(request: HttpRequest) -> bool:
        # Only a request with none of the three fields is "unsigned"; a partial set is a
        # broken signature and gets invalid_signature from the verifier.
        return all(request.header(name) is None for name in SIGNATURE_FIELDS)

    def _annotated(self, error: AAuthError) -> AAuthError:
        if self.config.link_header and not isinstance(error, Unavailable):
            link = f'<{self.config.issuer}{WELL_KNOWN_PATH}>; rel="aauth-resource"'
            if ("Link", link) not in error.extra_headers:
                error.extra_headers.append(("Link", link))
        return error

    # -- the guard's own endpoints -----------------------------------------------------------

    def handle(self, request: HttpRequest) -> HttpResponse | Redispatch | None:
        """Answer a request to one of the guard's endpoints; None when the path is not ours."""
        return self.driver.respond(self.endpoints.handle_steps(request))

    async def ahandle(self, request: HttpRequest) -> HttpResponse | Redispatch | None:
        return await self.driver.arespond(self.endpoints.handle_steps(request))

    def finish(self, redispatch: Redispatch, response: HttpResponse) -> HttpResponse:
        """Store the held invocation's result (answered again on repeat polls) and return it."""
        return self.driver.respond(self.endpoints.finish_steps(redispatch, response))

    async def afinish(self, redispatch: Redispatch, response: HttpResponse) -> HttpResponse:
        return await self.driver.arespond(self.endpoints.finish_steps(redispatch, response))

    def routes(self) -> list[tuple[str, str]]:
        """``(method, path)`` pairs adapters route to :meth:`handle`; a path ending in ``/``
        is a prefix (pending URLs)."""
        return self.endpoints.routes()

    # -- what adapters need besides checks -------------------------------------------------------

    def public_url(self, scheme: str, host: str | None, target: str) -> str:
        """The absolute URL a request was sent to: ``public_origin`` wins over Host.
        A Host no URL can be built from raises :class:`~aauth_server.http.MalformedHost`."""
        if host is not None and not self.config.public_origin:
            return f"{scheme}://{checked_host(host)}{target}"  # what public_url answers then
        return public_url(
            scheme,
            host,
            target,
            public_origin=self.config.public_origin,
            default_host=urlsplit(self.config.issuer).netloc,
        )

    @property
    def body_limit(self) -> int:
        """Bytes of a request body the adapters read at most (``max_body``)."""
        return self.config.max_body

    def url_for(self, path: str) -> str:
        """An absolute URL on this resource's public origin (for metadata and Location)."""
        return (self.config.public_origin or self.config.issuer).rstrip("/") + path

    def metadata(self) -> dict[str, Any]:
        cfg = self.config
        doc: dict[str, Any] = {"issuer": cfg.issuer}
        if cfg.signing_key is not None:
            doc["jwks_uri"] = cfg.jwks_uri or self.url_for(cfg.jwks_path)
        elif cfg.jwks_uri:
            doc["jwks_uri"] = cfg.jwks_uri
        for key in ("name", "description", "documentation_uri"):
            value = getattr(cfg, key)
            if value:
                doc[key] = value
        doc["access_mode"] = cfg.access_mode
        if cfg.authorization_path:
            doc["authorization_endpoint"] = self.url_for(cfg.authorization_path)
        if cfg.scope_descriptions:
            doc["scope_descriptions"] = dict(cfg.scope_descriptions)
        doc["signature_window"] = cfg.signature_window
        if cfg.additional_signature_components:
            doc["additional_signature_components"] = list(cfg.additional_signature_components)
        if cfg.revocation_path:
            doc["revocation_endpoint"] = self.url_for(cfg.revocation_path)
        doc["accept_signature_algs"] = list(cfg.accept_algs)
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


__all__ = [
    "AGENT_TOKEN",
    "AUTH_TOKEN",
    "DEFAULT_PROTECTION",
    "PERSON_TOKEN",
    "SESSION_TOKEN",
    "SUPPORTED_MODES",
    "WELL_KNOWN_PATH",
    "Forbidden",
    "Protection",
    "Redispatch",
    "ResourceGuard",
    "StoreOp",
]
