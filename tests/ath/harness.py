"""A native ATH service and a gateway in process, with agents that sign as the SDKs do.

Agents mint attestations the way ``ath-sdk`` 0.1.0 does (header ``alg``/``kid``/``typ: JWT``;
``iss = sub = agent_id``, ``exp = iat + 3600``, a random ``jti``, ``capabilities: []``), and
the way the TS client does (no ``typ``), so the tests speak the wire other stacks speak.
Their identity documents are served by a :class:`StaticFetcher`; users sign in through a
cookie the ``authenticate`` hook reads.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import ECKey

from aauth_server.ath import ATHConfig, ATHServer, ProviderConfig, approve_all
from aauth_server.clock import FixedClock
from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.keys.fetcher import AsyncStaticFetcher, StaticFetcher
from aauth_server.pagekit import read_cookie

T0 = 1_800_000_000
BASE = "https://shop.example"
GATEWAY = "https://gateway.example"
SECRET = b"s" * 32
USER_COOKIE = "shop_user"

SHOP_SCOPES = {
    "products:read": "See the product catalogue",
    "cart:write": "Add items to your cart",
    "orders:write": "Place orders in your name",
}
SHOP_ROUTES = {
    "products:read": ["GET /products", "GET /products/*"],
    "cart:write": ["POST /cart"],
    "orders:write": ["POST /orders"],
}


class Agent:
    """An ATH agent: a P-256 key and its identity document at ``agent_id``."""

    def __init__(
        self,
        agent_id: str = "https://agent.example/.well-known/agent.json",
        *,
        name: str = "Shop Helper",
        pem: bool = False,
    ) -> None:
        self.agent_id = agent_id
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self.jwk = ECKey.import_key(self.pem)
        self.public_pem = (
            self.key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        self.use_pem = pem
        self.client_id: str | None = None
        self.client_secret: str | None = None

    def document(self) -> dict[str, Any]:
        public: Any = (
            self.public_pem
            if self.use_pem
            else {**self.jwk.as_dict(private=False), "kid": "default"}
        )
        return {
            "ath_version": "0.1",
            "agent_id": self.agent_id,
            "name": self.name,
            "developer": {"name": "Agent Co", "id": "dev-agent-co", "contact": "ops@agent.example"},
            "capabilities": ["shopping"],
            "public_key": public,
        }

    def attest(
        self,
        audience: str,
        /,
        *,
        now: float,
        header: Mapping[str, Any] | None = None,
        key: Any = None,
        typ: bool = True,
        **claims: Any,
    ) -> str:
        head: dict[str, Any] = {"alg": "ES256", "kid": "default", **({"typ": "JWT"} if typ else {})}
        head.update(header or {})
        body: dict[str, Any] = {
            "capabilities": [],
            "iss": self.agent_id,
            "sub": self.agent_id,
            "aud": audience,
            "iat": int(now),
            "exp": int(now) + 3600,
            "jti": secrets.token_urlsafe(24),
        }
        for name, value in claims.items():
            if value is _DROP:
                body.pop(name, None)
            else:
                body[name] = value
        return jwt.encode(head, body, key or self.jwk, algorithms=[head["alg"]])


_DROP = object()
DROP: Any = _DROP


def forged(header: Mapping[str, Any], claims: Mapping[str, Any], signature: bytes = b"") -> str:
    """A compact JWS with any header (``alg: none``...) and an arbitrary signature."""

    def seg(value: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    tail = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    return f"{seg(dict(header))}.{seg(dict(claims))}.{tail}"


def signed(agent: Agent, header: Mapping[str, Any], claims: Mapping[str, Any]) -> str:
    """A compact JWS over any header, really signed with the agent's key (ES256)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    def seg(value: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    signing_input = f"{seg(dict(header))}.{seg(dict(claims))}"
    r, s_ = decode_dss_signature(agent.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    raw = r.to_bytes(32, "big") + s_.to_bytes(32, "big")
    return f"{signing_input}.{base64.urlsafe_b64encode(raw).rstrip(b'=').decode()}"


def user_authenticate(request: HttpRequest) -> str | None:
    value = read_cookie(request, USER_COOKIE)
    return value if value in ("alice", "bob") else None


def admin_authenticate(request: HttpRequest) -> str | None:
    return "root" if request.header("x-admin-key") == "letmein" else None


@dataclass
class Browser:
    """A cookie jar: the user's browser."""

    cookies: dict[str, str] = field(default_factory=dict)

    def header(self) -> list[tuple[str, str]]:
        if not self.cookies:
            return []
        return [("Cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items()))]

    def take(self, response: HttpResponse) -> None:
        for name, value in response.headers:
            if name.lower() == "set-cookie":
                pair = value.split(";", 1)[0]
                k, _, v = pair.partition("=")
                self.cookies[k.strip()] = v.strip()


NOTES_SCOPES = {
    "profile:read": "See your profile",
    "notes:read": "Read notes",
    "notes:write": "Write notes",
}
NOTES_ROUTES = {
    "profile:read": ["GET /profile"],
    "notes:read": ["GET /notes", "GET /notes/*"],
    "notes:write": ["POST /notes"],
}


def gateway_provider(name: str) -> ProviderConfig:
    return ProviderConfig(
        provider_id=name,
        display_name=name.capitalize(),
        scopes=NOTES_SCOPES,
        routes=NOTES_ROUTES,
        authorize_endpoint=f"https://{name}.example/oauth/authorize",
        token_endpoint=f"https://{name}.example/oauth/token",
        api_base_url=f"https://{name}.example/api",
        client_id="gw-client",
        client_secret="gw-secret",
    )


class StubUpstream:
    """Stands in for the upstream AS's token endpoint in process (the real exchange, through
    authlib against example_apps.oauth_provider, is the e2e and browser tests' business)."""

    def __init__(self) -> None:
        self.scope: str | None = None
        self.exchanges: list[Any] = []
        self.fail = False

    def _answer(self, op: Any) -> dict[str, Any]:
        from aauth_server.ath.driver import UpstreamFailure

        self.exchanges.append(op)
        if self.fail:
            raise UpstreamFailure("refused", "invalid_grant")
        answer: dict[str, Any] = {"access_token": "upstream-" + op.code, "token_type": "Bearer"}
        if self.scope is not None:
            answer["scope"] = self.scope
        return answer

    def exchange(self, op: Any) -> dict[str, Any]:
        return self._answer(op)

    async def aexchange(self, op: Any) -> dict[str, Any]:
        return self._answer(op)


class World:
    """One ATH implementer (native by default) driven in process through its sync driver."""

    def __init__(
        self,
        *,
        mode: str = "native",
        store: Any = None,
        clock: FixedClock | None = None,
        approval: Any = None,
        agents: tuple[Agent, ...] = (),
        **overrides: Any,
    ) -> None:
        self.clock = clock or FixedClock(T0)
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.fetcher = StaticFetcher({})
        self.afetcher = AsyncStaticFetcher({})
        self.afetcher.documents = self.fetcher.documents  # one "network" for both drivers
        self.agents = list(agents)
        for agent in agents:
            self.publish(agent)
        self.base = BASE if mode == "native" else GATEWAY
        common: dict[str, Any] = dict(
            clock=self.clock,
            fetcher=self.fetcher,
            async_fetcher=self.afetcher,
            audit=lambda e, f: self.events.append((e, dict(f))),
            approval=approval or approve_all(),
            authenticate=user_authenticate,
            admin_authenticate=admin_authenticate,
            page_secret=SECRET,
        )
        if store is not None:
            common["store"] = store
        common.update(overrides)
        if mode == "native":
            self.config = ATHConfig(
                mode="native",
                base_url=self.base,
                name="ATH Shop",
                app_id="com.example.shop",
                providers=(
                    ProviderConfig("com.example.shop", "ATH Shop", SHOP_SCOPES, SHOP_ROUTES),
                ),
                provider_aliases=("ath-shop", "default"),
                **common,
            )
        else:
            self.config = ATHConfig(
                mode="gateway",
                base_url=self.base,
                name="ATH Gateway",
                providers=(gateway_provider("notes"), gateway_provider("calendar")),
                **common,
            )
        self.server = ATHServer(self.config)
        self.upstream = StubUpstream()
        self.server.driver.upstream = self.upstream

    def publish(self, agent: Agent) -> None:
        self.fetcher.documents[agent.agent_id] = agent.document()

    @property
    def now(self) -> float:
        return self.clock.now()

    # -- raw calls -----------------------------------------------------------------------

    def send(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: list[tuple[str, str]] | None = None,
        raw: bytes | None = None,
    ) -> HttpResponse:
        hdrs = list(headers or [])
        data = b""
        if raw is not None:
            data = raw
        elif body is not None:
            data = json.dumps(body).encode()
            if not any(k.lower() == "content-type" for k, _ in hdrs):
                hdrs.append(("Content-Type", "application/json"))
        request = HttpRequest(method, self.base + path, hdrs, data)
        response = self.server.handle(request)
        assert response is not None, f"{method} {path} is not an ATH route"
        return response

    def post(self, path: str, body: Any, **kw: Any) -> HttpResponse:
        return self.send("POST", path, body, **kw)

    # -- the protocol, step by step ------------------------------------------------------

    def register_body(
        self,
        agent: Agent,
        scopes: list[str] | None = None,
        provider: str = "com.example.shop",
        **extra: Any,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "agent_id": agent.agent_id,
            "agent_attestation": agent.attest(self.base, now=self.now),
            "developer": {"name": "Agent Co", "id": "dev-agent-co"},
            "requested_providers": [
                {"provider_id": provider, "scopes": scopes or list(SHOP_SCOPES)}
            ],
            "purpose": "Buy groceries",
            "redirect_uris": [self.base + "/ath/callback"],
        }
        body.update(extra)
        return body

    def register(
        self, agent: Agent, scopes: list[str] | None = None, **extra: Any
    ) -> dict[str, Any]:
        response = self.post("/ath/agents/register", self.register_body(agent, scopes, **extra))
        assert response.status == 201, response.body
        answer: dict[str, Any] = json.loads(response.body)
        agent.client_id = answer["client_id"]
        agent.client_secret = answer["client_secret"]
        return answer

    def authorize_body(
        self, agent: Agent, scopes: list[str], provider: str = "com.example.shop", **extra: Any
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "client_id": agent.client_id,
            "agent_attestation": agent.attest(self.base, now=self.now),
            "provider_id": provider,
            "scopes": scopes,
            "state": secrets.token_hex(16),
            "user_redirect_uri": self.base + "/ath/callback",
        }
        body.update(extra)
        return body

    def authorize(self, agent: Agent, scopes: list[str], **extra: Any) -> dict[str, Any]:
        response = self.post("/ath/authorize", self.authorize_body(agent, scopes, **extra))
        assert response.status == 200, response.body
        return dict(json.loads(response.body))

    def consent(
        self,
        started: Mapping[str, Any],
        browser: Browser,
        *,
        user: str = "alice",
        action: str = "authorize",
    ) -> HttpResponse:
        """The user opens the URL, signs in, and presses a button; returns the callback's answer."""
        url = str(started["authorization_url"])
        target = url[len(self.base) :]
        page = self.send("GET", target, headers=browser.header())
        browser.take(page)
        if page.status == 303:  # to the login page: sign in, come back
            browser.cookies[USER_COOKIE] = user
            page = self.send("GET", target, headers=browser.header())
            browser.take(page)
        assert page.status == 200, page.body
        html = page.body.decode()
        form = {
            "state": parse_qs(urlsplit(url).query)["state"][0],
            "csrf": _field(html, "csrf"),
            "action": action,
        }
        decided = self.send(
            "POST",
            "/ath/consent/decide",
            headers=[
                *browser.header(),
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Origin", self.base),
            ],
            raw=urlencode(form).encode(),
        )
        assert decided.status == 303, decided.body
        location = str(decided.header("location"))
        return self.send("GET", location[len(self.base) :], headers=browser.header())

    def upstream_consent(
        self, started: Mapping[str, Any], browser: Browser, *, error: str | None = None
    ) -> HttpResponse:
        """Gateway: the user opens the URL (the gateway's hop binds the browser), consents at
        the provider (simulated), and the provider redirects to the gateway's callback."""
        url = str(started["authorization_url"])
        hop = self.send("GET", url[len(self.base) :], headers=browser.header())
        browser.take(hop)
        assert hop.status == 303, hop.body
        upstream = str(hop.header("location"))
        state = parse_qs(urlsplit(upstream).query)["state"][0]
        params = (
            {"error": error, "state": state}
            if error
            else {"code": secrets.token_hex(8), "state": state}
        )
        return self.send("GET", "/ath/callback?" + urlencode(params), headers=browser.header())

    def proxy(
        self,
        method: str,
        target: str,
        token: str | None,
        agent: Agent | None,
        *,
        headers: list[tuple[str, str]] | None = None,
    ) -> HttpResponse:
        from aauth_server.ath import ATHError

        hdrs = list(headers or [])
        if token is not None:
            hdrs.append(("Authorization", f"Bearer {token}"))
        if agent is not None:
            hdrs.append(("X-ATH-Agent-ID", agent.agent_id))
        try:
            plan = self.server.plan_proxy(HttpRequest(method, self.base + target, hdrs, b""))
        except ATHError as error:
            return error.to_response()
        return HttpResponse(200, [("X-Upstream-URL", plan.url)], json.dumps(plan.headers).encode())

    def token_body(self, agent: Agent, session_id: str, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "grant_type": "authorization_code",
            "client_id": agent.client_id,
            "client_secret": agent.client_secret,
            "agent_attestation": agent.attest(self.base + "/ath/token", now=self.now),
            "code": "placeholder",
            "ath_session_id": session_id,
        }
        body.update(extra)
        return body

    def token(self, agent: Agent, session_id: str, **extra: Any) -> HttpResponse:
        return self.post("/ath/token", self.token_body(agent, session_id, **extra))

    def grant(
        self,
        agent: Agent,
        scopes: list[str],
        *,
        register_scopes: list[str] | None = None,
        user: str = "alice",
    ) -> dict[str, Any]:
        """Register (if needed), authorize, consent and exchange: the token response."""
        if agent.client_id is None:
            self.register(agent, register_scopes)
        started = self.authorize(agent, scopes)
        done = self.consent(started, Browser(), user=user)
        assert done.status == 200, done.body
        answer = self.token(agent, started["ath_session_id"])
        assert answer.status == 200, answer.body
        return dict(json.loads(answer.body))

    def api(
        self,
        method: str,
        path: str,
        token: str,
        agent: Agent | None = None,
        *,
        scopes: tuple[str, ...] = (),
    ) -> Any:
        headers = [("Authorization", f"Bearer {token}")]
        if agent is not None:
            headers.append(("X-ATH-Agent-ID", agent.agent_id))
        request = HttpRequest(method, self.base + "/api" + path, headers, b"")
        return self.server.check(request, scopes)


def _field(html: str, name: str) -> str:
    marker = f'name="{name}" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


def code_of(response: HttpResponse) -> str | None:
    """The ATH code of a JSON error, of an error page (``data-code``), or None on success."""
    if response.status < 400:
        return None
    if (response.header("content-type") or "").startswith("text/html"):
        html = response.body.decode()
        marker = 'data-code="'
        start = html.index(marker) + len(marker)
        return html[start : html.index('"', start)]
    return str(json.loads(response.body)["code"])


Check = Callable[[HttpResponse], None]
