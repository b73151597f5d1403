"""A small AAuth world for tests: an agent provider, an agent, a resource config, and
builders for signed (and deliberately broken) requests.  No network: key discovery
reads the provider's documents from a StaticFetcher."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from aauth_server.agent import AgentProvider
from aauth_server.clock import SYSTEM_CLOCK, Clock
from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.keys.discovery import KeyDiscovery
from aauth_server.keys.fetcher import AsyncStaticFetcher, StaticFetcher
from aauth_server.keys.jwk import PrivateKey
from aauth_server.resource import ResourceConfig
from aauth_server.signatures.message import AAUTH_COMPONENTS, sign_request
from aauth_server.signatures.signature_key import SignatureKey, serialize_signature_key
from aauth_server.storage.memory import AsyncMemoryStore, MemoryState, MemoryStore
from aauth_server.tokens.aauth import DWK_ACCESS, DWK_PERSON, mint_auth_token, mint_person_token

AP_ISSUER = "https://agent.example"
RESOURCE = "https://resource.example"
PS_ISSUER = "https://ps.example"
AS_ISSUER = "https://as.example"
SCOPES = {"data.read": "Read your **data**", "data.write": "Change your data"}
PERSON = "user-7f3c"


@dataclass
class World:
    clock: Clock = SYSTEM_CLOCK
    provider: AgentProvider = field(init=False)
    agent_key: PrivateKey = field(init=False)
    agent_token: str = field(init=False)
    extra_documents: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.provider = AgentProvider(
            AP_ISSUER, PrivateKey.generate("Ed25519", kid="ap-1"), clock=self.clock
        )
        self.agent_key = PrivateKey.generate("Ed25519")
        self.agent_token = self.provider.issue(self.agent_key.public, "assistant")
        # A test Person Server and Access Server: keys and documents only (no endpoints).
        self.ps_key = PrivateKey.generate("Ed25519", kid="ps-1")
        self.as_key = PrivateKey.generate("Ed25519", kid="as-1")
        self.resource_key = PrivateKey.generate("Ed25519", kid="rs-1")
        self._memo: dict[str, Any] = {}

    def memo(self, key: str, make: Callable[[], Any]) -> Any:
        """The same value every time for ``key``: scenarios build their request twice."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def person_token(
        self,
        *,
        sub: str = PERSON,
        aud: str = RESOURCE,
        ps: str = PS_ISSUER,
        mission_s256: str | None = None,
        tenant: str | None = None,
        key: PrivateKey | None = None,
    ) -> str:
        return mint_person_token(
            key or self.ps_key,
            iss=ps,
            aud=aud,
            sub=sub,
            cnf_jwk=self.agent_key.public,
            now=self.now(),
            lifetime=3600,
            mission_s256=mission_s256,
            tenant=tenant,
        )

    def auth_token(
        self,
        scope: str,
        *,
        sub: str = PERSON,
        aud: str = RESOURCE,
        four_party: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> str:
        """A PS-issued (three-party) or AS-issued (four-party) auth token for the agent key."""
        return mint_auth_token(
            self.as_key if four_party else self.ps_key,
            iss=AS_ISSUER if four_party else PS_ISSUER,
            dwk=DWK_ACCESS if four_party else DWK_PERSON,
            aud=aud,
            ps=PS_ISSUER,
            sub=sub,
            cnf_jwk=self.agent_key.public,
            now=self.now(),
            lifetime=3600,
            scope=scope,
            extra=extra,
        )

    def server_signed(
        self,
        method: str,
        path: str,
        body: bytes,
        *,
        issuer: str = PS_ISSUER,
        dwk: str = DWK_PERSON,
        key: PrivateKey | None = None,
        components: Sequence[str] | None = None,
    ) -> HttpRequest:
        """A request a server signs in its own right (``jwks_uri`` scheme), e.g. a revocation."""
        signing_key = key or (self.as_key if issuer == AS_ISSUER else self.ps_key)
        sk = serialize_signature_key(
            [
                SignatureKey(
                    "sig", "jwks_uri", {"id": issuer, "dwk": dwk, "kid": str(signing_key.kid)}
                )
            ]
        )
        request = HttpRequest(
            method,
            RESOURCE + path,
            [("Content-Type", "application/json"), ("Signature-Key", sk)],
            body,
        )
        signed = sign_request(
            request,
            signing_key,
            components=components or [*AAUTH_COMPONENTS, "content-type", "content-digest"],
            created=self.now(),
        )
        return replace(request, headers=request.headers + signed)

    @property
    def agent_id(self) -> str:
        return self.provider.agent_id("assistant")

    def documents(self) -> dict[str, Any]:
        return {
            **self.provider.documents(),
            PS_ISSUER + "/.well-known/aauth-person.json": {
                "issuer": PS_ISSUER,
                "jwks_uri": PS_ISSUER + "/jwks.json",
                "person_token_endpoint": PS_ISSUER + "/person",
                "auth_token_endpoint": PS_ISSUER + "/token",
            },
            PS_ISSUER + "/jwks.json": {"keys": [self.ps_key.public_jwk()]},
            AS_ISSUER + "/.well-known/aauth-access.json": {
                "issuer": AS_ISSUER,
                "jwks_uri": AS_ISSUER + "/jwks.json",
                "auth_token_endpoint": AS_ISSUER + "/token",
            },
            AS_ISSUER + "/jwks.json": {"keys": [self.as_key.public_jwk()]},
            **self.extra_documents,
        }

    def discovery(self) -> KeyDiscovery:
        docs = self.documents()
        return KeyDiscovery(StaticFetcher(docs), AsyncStaticFetcher(docs), clock=self.clock)

    def resource_config(self, **overrides: Any) -> ResourceConfig:
        """A resource with every mode configured: signing key, declared scopes, the
        authorization and revocation endpoints, and one shared memory store (so several
        apps or guards built from this config see the same state)."""
        state = MemoryState()
        settings: dict[str, Any] = {
            "issuer": RESOURCE,
            "discovery": self.discovery(),
            "clock": self.clock,
            "signing_key": self.resource_key,
            "scope_descriptions": SCOPES,
            "authorization_path": "/aauth/authorize",
            "revocation_path": "/aauth/revoke",
            "store": MemoryStore(state, clock=self.clock),
            "async_store": AsyncMemoryStore(state, clock=self.clock),
        }
        settings.update(overrides)
        return ResourceConfig(**settings)

    def now(self) -> int:
        return int(self.clock.now())

    def signed(
        self,
        method: str = "GET",
        path: str = "/whoami",
        *,
        body: bytes = b"",
        headers: Sequence[tuple[str, str]] = (),
        token: str | None = None,
        key: PrivateKey | None = None,
        signature_key: str | None = None,
        components: Sequence[str] | None = None,
        created: int | None = None,
        label: str = "sig",
        origin: str = RESOURCE,
    ) -> HttpRequest:
        """A request signed the way a correct AAuth agent signs it, with knobs to break it."""
        hdrs = list(headers)
        if body and not any(k.lower() == "content-type" for k, _ in hdrs):
            hdrs.append(("Content-Type", "application/json"))
        sk = signature_key
        if sk is None:
            sk = serialize_signature_key(
                [
                    SignatureKey(
                        label, "jwt", {"jwt": token if token is not None else self.agent_token}
                    )
                ]
            )
        hdrs.append(("Signature-Key", sk))
        request = HttpRequest(method, origin + path, hdrs, body)
        if components is None:
            components = list(AAUTH_COMPONENTS) + (
                ["content-type", "content-digest"] if body else []
            )
        signed = sign_request(
            request,
            key or self.agent_key,
            label=label,
            components=components,
            created=created if created is not None else self.now(),
        )
        return replace(request, headers=hdrs + signed)


def with_header(request: HttpRequest, name: str, value: str | None) -> HttpRequest:
    """Replace (or with None remove) every line of one header."""
    headers = [(k, v) for k, v in request.headers if k.lower() != name.lower()]
    if value is not None:
        headers.append((name, value))
    return replace(request, headers=headers)


@dataclass(frozen=True)
class Scenario:
    """One wire scenario: a request and what every adapter must answer.

    ``before`` are requests sent first to the same app (their answers must be < 400);
    ``config`` overrides the resource configuration; ``header_prefixes`` check headers
    whose tail varies (a fresh resource token, a pending URL); ``body`` is the exact JSON
    a 200 must carry (None: the agent-token default ``{"agent": ...}``).
    """

    name: str
    build: Callable[[World], HttpRequest]
    status: int
    error: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    path: str = "/whoami"
    before: Callable[[World], Sequence[HttpRequest]] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    header_prefixes: dict[str, str] = field(default_factory=dict)
    body: Callable[[World], Any] | None = None
    #: The body carries a freshly minted value (a resource token): equal in shape only.
    dynamic_body: bool = False


def scenarios() -> list[Scenario]:
    """The table every adapter runs (tests/adapters/test_wire_parity.py)."""

    def tampered(w: World) -> HttpRequest:
        req = w.signed()
        return replace(req, url=req.url.replace("/whoami", "/whoami"), method="POST")

    return [
        Scenario(
            "unsigned",
            lambda w: HttpRequest("GET", RESOURCE + "/whoami", []),
            401,
            "agent_token_required",
            {"aauth-requirement": "requirement=agent-token"},
        ),
        Scenario("signed", lambda w: w.signed(), 200),
        Scenario(
            "tampered-method",
            tampered,
            401,
            "invalid_signature",
            {"signature-error": "error=invalid_signature"},
        ),
        Scenario(
            "missing-signature",
            lambda w: with_header(w.signed(), "Signature", None),
            401,
            "invalid_signature",
            {"signature-error": "error=invalid_signature"},
        ),
        Scenario(
            "uncovered-signature-key",
            lambda w: w.signed(components=["@method", "@authority", "@path"]),
            401,
            "invalid_input",
            {
                "signature-error": "error=invalid_input, required_input="
                '("@method" "@authority" "@path" "signature-key")'
            },
        ),
        Scenario(
            "stale",
            lambda w: w.signed(created=w.now() - 120),
            401,
            "invalid_signature",
            {"signature-error": "error=invalid_signature"},
        ),
        Scenario(
            "future",
            lambda w: w.signed(created=w.now() + 120),
            401,
            "clock_skew",
            {"signature-error": "error=clock_skew"},
        ),
        Scenario(
            "hwk-scheme",
            lambda w: w.signed(
                signature_key='sig=hwk;kty="OKP";crv="Ed25519";x="'
                + str(w.agent_key.public.jwk["x"])
                + '";alg="Ed25519"'
            ),
            401,
            "unsupported_scheme",
            {"signature-error": "error=unsupported_scheme", "accept-signature-scheme": "jwt"},
        ),
        Scenario(
            "wrong-key",
            lambda w: w.signed(key=PrivateKey.generate("Ed25519")),
            401,
            "invalid_signature",
            {"signature-error": "error=invalid_signature"},
        ),
        Scenario(
            "optional-unsigned",
            lambda w: HttpRequest("GET", RESOURCE + "/optional", []),
            200,
            path="/optional",
        ),
        Scenario("optional-signed", lambda w: w.signed(path="/optional"), 200, path="/optional"),
        Scenario("post-with-body", lambda w: w.signed("POST", body=b'{"a":1}'), 200),
    ]


def assert_scenario(scenario: Scenario, response: HttpResponse, world: World) -> None:
    """What every adapter must answer for ``scenario`` (status, headers, body ``error``)."""
    assert response.status == scenario.status, response.body
    for name, value in scenario.headers.items():
        assert response.header(name) == value, name
    for name, prefix in scenario.header_prefixes.items():
        assert (response.header(name) or "").startswith(prefix), (name, response.header(name))
    if not response.body:
        assert scenario.body is not None and scenario.body(world) is None
        return
    payload = json.loads(response.body)
    if scenario.error is not None:
        assert response.header("content-type") == "application/problem+json"
        assert payload["error"] == scenario.error
        assert payload["detail"]
    elif scenario.body is not None:
        assert payload == scenario.body(world)
    elif scenario.name == "optional-unsigned":
        assert payload == {"agent": None}
    else:
        assert payload == {"agent": world.agent_id}


def _bearer_signed(w: World, path: str, token: str, **kw: Any) -> HttpRequest:
    return w.signed(kw.pop("method", "GET"), path, token=token, **kw)


def _person(w: World) -> str:
    return str(w.memo("person", w.person_token))


def _auth(w: World, scope: str = "data.read") -> str:
    return str(w.memo("auth:" + scope, lambda: w.auth_token(scope)))


def _revoke(w: World, token: str, issuer: str = PS_ISSUER, dwk: str = DWK_PERSON) -> HttpRequest:
    from aauth_server.tokens.jwt import decode_unverified

    claims = decode_unverified(token).payload
    body = json.dumps({"jti": claims["jti"], "exp": claims["exp"]}).encode()
    return w.server_signed("POST", "/aauth/revoke", body, issuer=issuer, dwk=dwk)


def _authorize(w: World, body: Any, token: str | None = None) -> HttpRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return w.signed("POST", "/aauth/authorize", body=raw, token=token or _person(w))


AUTH_CHALLENGE = {"aauth-requirement": 'requirement=auth-token; resource-token="ey'}
PERSON_CHALLENGE = {"aauth-requirement": "requirement=person-token"}
AGENT_CHALLENGE = {"aauth-requirement": "requirement=agent-token"}


def mode_scenarios() -> list[Scenario]:
    """Every access mode of digest 9 through the wire; the shared table for all adapters.

    Routes every harness serves: ``/profile`` (person-token), ``GET /data`` (auth-token,
    ``data.read``), ``POST /data`` (``data.write``), ``/deferred`` (``data.read``,
    deferred), ``/session`` (session-token), and the guard's own endpoints.
    """
    ps_sub = {"ps": PS_ISSUER, "sub": PERSON}
    return [
        # -- person-token -------------------------------------------------------------------
        Scenario(
            "profile-unsigned",
            lambda w: HttpRequest("GET", RESOURCE + "/profile", []),
            401,
            "person_token_required",
            PERSON_CHALLENGE,
        ),
        Scenario(
            "profile-agent-token",
            lambda w: w.signed("GET", "/profile"),
            401,
            "person_token_required",
            PERSON_CHALLENGE,
        ),
        Scenario(
            "profile-person-token",
            lambda w: _bearer_signed(w, "/profile", _person(w)),
            200,
            body=lambda w: ps_sub,
        ),
        Scenario(
            "profile-auth-token",
            lambda w: _bearer_signed(w, "/profile", _auth(w)),
            200,
            body=lambda w: ps_sub,
        ),
        Scenario(
            "profile-wrong-aud",
            lambda w: _bearer_signed(w, "/profile", w.person_token(aud="https://other.example")),
            401,
            "invalid_jwt",
            {"signature-error": "error=invalid_jwt"},
        ),
        Scenario(
            "profile-untrusted-ps",
            lambda w: _bearer_signed(w, "/profile", _person(w)),
            401,
            "invalid_jwt",
            {"signature-error": "error=invalid_jwt"},
            config={"trusted_ps": ("https://other-ps.example",)},
        ),
        Scenario(
            "profile-revoked-person-token",
            lambda w: _bearer_signed(w, "/profile", _person(w)),
            401,
            "revoked_jwt",
            {"signature-error": "error=revoked_jwt"},
            before=lambda w: [_revoke(w, _person(w))],
        ),
        # -- auth-token, three-party ----------------------------------------------------------
        Scenario(
            "data-unsigned",
            lambda w: HttpRequest("GET", RESOURCE + "/data", []),
            401,
            "person_token_required",
            PERSON_CHALLENGE,
        ),
        Scenario(
            "data-agent-token",
            lambda w: w.signed("GET", "/data"),
            401,
            "person_token_required",
            PERSON_CHALLENGE,
        ),
        Scenario(
            "data-person-token-where-auth-required",
            lambda w: _bearer_signed(w, "/data", _person(w)),
            401,
            "auth_token_required",
            header_prefixes=AUTH_CHALLENGE,
        ),
        Scenario(
            "data-auth-token",
            lambda w: _bearer_signed(w, "/data", _auth(w)),
            200,
            body=lambda w: {"scope": "data.read"},
        ),
        Scenario(
            "data-write-step-up",
            lambda w: _bearer_signed(w, "/data", _auth(w), method="POST"),
            401,
            "auth_token_required",
            header_prefixes=AUTH_CHALLENGE,
        ),
        Scenario(
            "data-write-auth-token",
            lambda w: _bearer_signed(w, "/data", _auth(w, "data.read data.write"), method="POST"),
            200,
            body=lambda w: {"scope": "data.read data.write", "written": True},
        ),
        Scenario(
            "data-auth-token-other-resource",
            lambda w: _bearer_signed(
                w, "/data", w.auth_token("data.read", aud="https://other.example")
            ),
            401,
            "invalid_jwt",
            {"signature-error": "error=invalid_jwt"},
        ),
        Scenario(
            "data-as-token-without-as",
            lambda w: _bearer_signed(w, "/data", w.auth_token("data.read", four_party=True)),
            401,
            "invalid_jwt",
            {"signature-error": "error=invalid_jwt"},
        ),
        Scenario(
            "data-revoked-auth-token",
            lambda w: _bearer_signed(w, "/data", _auth(w)),
            401,
            "revoked_jwt",
            {"signature-error": "error=revoked_jwt", **PERSON_CHALLENGE},
            before=lambda w: [_revoke(w, _auth(w))],
        ),
        # -- auth-token, four-party -----------------------------------------------------------
        Scenario(
            "four-party-as-token",
            lambda w: _bearer_signed(
                w, "/data", w.memo("as", lambda: w.auth_token("data.read", four_party=True))
            ),
            200,
            body=lambda w: {"scope": "data.read"},
            config={"access_server": AS_ISSUER},
        ),
        Scenario(
            "four-party-ps-token-refused",
            lambda w: _bearer_signed(w, "/data", _auth(w)),
            401,
            "invalid_jwt",
            {"signature-error": "error=invalid_jwt"},
            config={"access_server": AS_ISSUER},
        ),
        Scenario(
            "four-party-person-token-challenged",
            lambda w: _bearer_signed(w, "/data", _person(w)),
            401,
            "auth_token_required",
            header_prefixes=AUTH_CHALLENGE,
            config={"access_server": AS_ISSUER},
        ),
        # -- deferred auth-token delivery -------------------------------------------------------
        Scenario(
            "deferred-person-token",
            lambda w: _bearer_signed(w, "/deferred", _person(w)),
            202,
            headers={"cache-control": "no-store", "retry-after": "0"},
            header_prefixes={**AUTH_CHALLENGE, "location": RESOURCE + "/aauth/pending/"},
            body=lambda w: {"status": "pending"},
        ),
        # -- session-token (two-party) -----------------------------------------------------------
        Scenario(
            "session-unsigned",
            lambda w: HttpRequest("GET", RESOURCE + "/session", []),
            401,
            "agent_token_required",
            AGENT_CHALLENGE,
        ),
        Scenario(
            "session-without-interaction-capability",
            lambda w: w.signed("GET", "/session"),
            403,
            "user_unreachable",
        ),
        Scenario(
            "session-begins-interaction",
            lambda w: w.signed(
                "GET", "/session", headers=[("AAuth-Capabilities", "interaction, clarification")]
            ),
            202,
            headers={"cache-control": "no-store"},
            header_prefixes={
                "aauth-requirement": "requirement=interaction; "
                f'url="{RESOURCE}/aauth/interact"; code="',
                "location": RESOURCE + "/aauth/pending/",
            },
            body=lambda w: {"status": "pending"},
        ),
        Scenario(
            "session-token-not-covered",
            lambda w: w.signed("GET", "/session", headers=[("Authorization", "AAuth abc")]),
            401,
            "invalid_input",
            {
                "signature-error": "error=invalid_input, required_input="
                '("@method" "@authority" "@path" "signature-key" "authorization")'
            },
        ),
        # -- the authorization endpoint (digest 5.1) ---------------------------------------------
        Scenario(
            "authorize-resource-token",
            lambda w: _authorize(w, {"scope": "data.read"}),
            200,
            headers={"cache-control": "no-store"},
            body=lambda w: _ANY_RESOURCE_TOKEN,
            dynamic_body=True,
        ),
        Scenario(
            "authorize-unsigned",
            lambda w: HttpRequest("POST", RESOURCE + "/aauth/authorize", [], b"{}"),
            401,
            "person_token_required",
            PERSON_CHALLENGE,
        ),
        Scenario(
            "authorize-agent-token",
            lambda w: w.signed("POST", "/aauth/authorize", body=b'{"scope":"data.read"}'),
            401,
            "person_token_required",
            PERSON_CHALLENGE,
        ),
        Scenario(
            "authorize-invalid-request",
            lambda w: _authorize(w, {"account": "a"}),
            400,
            "invalid_request",
        ),
        Scenario(
            "authorize-not-json",
            lambda w: _authorize(w, b"scope=data.read"),
            400,
            "invalid_request",
        ),
        Scenario(
            "authorize-invalid-scope",
            lambda w: _authorize(w, {"scope": "data.delete"}),
            400,
            "invalid_scope",
        ),
        Scenario(
            "authorize-invalid-account",
            lambda w: _authorize(w, {"scope": "data.read", "account": 42}),
            400,
            "invalid_account",
        ),
        Scenario(
            "authorize-bad-signature",
            lambda w: with_header(_authorize(w, {"scope": "data.read"}), "Signature", "sig=:AAAA:"),
            401,
            "invalid_signature",
            {"signature-error": "error=invalid_signature"},
        ),
        # -- the revocation endpoint (digest 5.7) ------------------------------------------------
        Scenario("revoke-recorded", lambda w: _revoke(w, _person(w)), 200, body=lambda w: None),
        Scenario(
            "revoke-invalid-request",
            lambda w: w.server_signed("POST", "/aauth/revoke", b'{"jti":"x"}'),
            400,
            "invalid_request",
        ),
        Scenario(
            "revoke-unsupported-iss",
            lambda w: w.server_signed(
                "POST", "/aauth/revoke", b'{"jti":"x","exp":1}', issuer=AS_ISSUER, dwk=DWK_ACCESS
            ),
            403,
            "unsupported_iss",
        ),
        Scenario(
            "revoke-rate-limited",
            lambda w: _revoke(w, _person(w)),
            429,
            "rate_limited",
            {"retry-after": "60"},
            config={"revocations_per_minute": 0},
        ),
        Scenario(
            "revoke-server-error",
            lambda w: _revoke(w, _person(w)),
            500,
            "server_error",
            config={
                "store": _BrokenStore(),
                "async_store": _BrokenAsyncStore(),
                # It breaks after startup: the startup check would refuse it at once.
                "startup_store_check": False,
            },
        ),
        Scenario(
            "revoke-signed-by-agent",
            lambda w: w.signed("POST", "/aauth/revoke", body=b'{"jti":"x","exp":1}'),
            401,
            "unsupported_scheme",
            {"signature-error": "error=unsupported_scheme"},
        ),
        Scenario(
            "revoke-digest-not-covered",
            lambda w: w.server_signed(
                "POST", "/aauth/revoke", b'{"jti":"x","exp":1}', components=list(AAUTH_COMPONENTS)
            ),
            401,
            "invalid_input",
            {
                "signature-error": "error=invalid_input, required_input=("
                '"@method" "@authority" "@path" "signature-key" "content-type" "content-digest")'
            },
        ),
        # -- replay cache --------------------------------------------------------------------------
        Scenario(
            "replayed-request",
            lambda w: w.memo("replay", lambda: w.signed()),
            401,
            "invalid_signature",
            {"signature-error": "error=invalid_signature"},
            config={"replay_cache": True},
            before=lambda w: [w.memo("replay", lambda: w.signed())],
        ),
    ]


class _AnyResourceToken:
    """Compares equal to ``{"resource_token": <a JWT>}`` whatever the token's bytes."""

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, dict)
            and set(other) == {"resource_token"}
            and str(other["resource_token"]).count(".") == 2
        )

    def __hash__(self) -> int:  # pragma: no cover - never hashed
        return 0


_ANY_RESOURCE_TOKEN = _AnyResourceToken()


class _BrokenStore:
    """A sync store whose every call fails in a way the guard cannot handle (-> 500)."""

    def __getattr__(self, name: str) -> Any:
        def broken(*args: Any, **kwargs: Any) -> Any:
            from aauth_server.storage.base import StorageError

            raise StorageError("corrupted record")

        return broken


class _BrokenAsyncStore:
    def __getattr__(self, name: str) -> Any:
        async def broken(*args: Any, **kwargs: Any) -> Any:
            from aauth_server.storage.base import StorageError

            raise StorageError("corrupted record")

        return broken
