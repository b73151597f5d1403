"""Hostile ATH requests, one row each: forged, expired, replayed and misdirected attestations,
bad identity documents, session and state games, cross-agent use, scope escalation at every
step, and proxy path tricks.  Every row asserts the exact status and ATH ``code`` (error pages
carry it as ``data-code``), through the sync driver and again through the async one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey

from aauth_server.ath import approve_subset, review
from aauth_server.http import HttpRequest, HttpResponse
from aauth_server.keys.egress import EgressPolicy
from aauth_server.keys.fetcher import FetchResponse, HttpxFetcher
from tests.ath.harness import DROP, Agent, Browser, World, code_of, forged, signed

NOW_AUD = "https://shop.example"
TOKEN_AUD = "https://shop.example/ath/token"


class Scene:
    """A world and what a row needs in it: a registered agent, a started or finished
    session, a token.  Built lazily so each row pays only for what it uses."""

    def __init__(self, mode: str = "native", **world: Any) -> None:
        self.agent = Agent()
        self.other = Agent("https://other.example/agent.json", name="Other")
        self.world = World(mode=mode, agents=(self.agent, self.other), **world)
        self.provider = "com.example.shop" if mode == "native" else "notes"
        self.scopes = (
            ["products:read", "cart:write"] if mode == "native" else ["profile:read", "notes:read"]
        )

    @property
    def now(self) -> float:
        return self.world.now

    def registered(self, agent: Agent | None = None) -> Agent:
        agent = agent or self.agent
        if agent.client_id is None:
            body = self.world.register_body(agent, provider=self.provider, scopes=self.all_scopes())
            response = self.world.post("/ath/agents/register", body)
            assert response.status == 201, response.body
            answer = json.loads(response.body)
            agent.client_id, agent.client_secret = answer["client_id"], answer["client_secret"]
        return agent

    def all_scopes(self) -> list[str]:
        return list(self.world.config.providers[0].scopes)

    def started(self, agent: Agent | None = None) -> dict[str, Any]:
        agent = self.registered(agent)
        body = self.world.authorize_body(agent, self.scopes, provider=self.provider)
        response = self.world.post("/ath/authorize", body)
        assert response.status == 200, response.body
        return dict(json.loads(response.body))

    def consented(self, agent: Agent | None = None, **kw: Any) -> dict[str, Any]:
        started = self.started(agent)
        browser = Browser()
        if self.world.config.mode == "native":
            done = self.world.consent(started, browser, **kw)
        else:
            done = self.world.upstream_consent(started, browser, **kw)
        assert done.status == 200, done.body
        started["browser"] = browser
        return started

    def token(self) -> str:
        started = self.consented()
        response = self.world.token(self.agent, started["ath_session_id"])
        assert response.status == 200, response.body
        return str(json.loads(response.body)["access_token"])

    def api(
        self,
        method: str,
        path: str,
        token: str | None,
        *,
        agent_header: str | None = "mine",
        auth: str | None = None,
    ) -> HttpResponse:
        headers = []
        if auth is not None:
            headers.append(("Authorization", auth))
        elif token is not None:
            headers.append(("Authorization", f"Bearer {token}"))
        if agent_header == "mine":
            headers.append(("X-ATH-Agent-ID", self.agent.agent_id))
        elif agent_header is not None:
            headers.append(("X-ATH-Agent-ID", agent_header))
        from aauth_server.ath import ATHError

        try:
            self.world.server.check(
                HttpRequest(method, "https://shop.example/api" + path, headers, b"")
            )
        except ATHError as error:
            return error.to_response()
        return HttpResponse(200, [], b"{}")


# -- attestation makers ------------------------------------------------------------------------


def _register_with(scene: Scene, attestation: str, agent: Agent | None = None) -> HttpResponse:
    agent = agent or scene.agent
    body = scene.world.register_body(agent, provider=scene.provider)
    body["agent_attestation"] = attestation
    return scene.world.post("/ath/agents/register", body)


def _claims(scene: Scene, **changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": scene.agent.agent_id,
        "sub": scene.agent.agent_id,
        "aud": NOW_AUD,
        "iat": int(scene.now),
        "exp": int(scene.now) + 3600,
        "jti": secrets.token_urlsafe(16),
    }
    claims.update(changes)
    return claims


def alg_none(s: Scene) -> HttpResponse:
    return _register_with(s, forged({"alg": "none"}, _claims(s)))


def alg_hs256(s: Scene) -> HttpResponse:
    key = OctKey.import_key(b"k" * 32)
    token = jwt.encode({"alg": "HS256"}, _claims(s), key, algorithms=["HS256"])
    return _register_with(s, token)


def alg_es384(s: Scene) -> HttpResponse:
    key = ECKey.generate_key("P-384")
    return _register_with(s, jwt.encode({"alg": "ES384"}, _claims(s), key, algorithms=["ES384"]))


def alg_rs256(s: Scene) -> HttpResponse:
    key = RSAKey.generate_key(2048)
    return _register_with(s, jwt.encode({"alg": "RS256"}, _claims(s), key, algorithms=["RS256"]))


def alg_es256_declared_with_hs_signature(s: Scene) -> HttpResponse:
    # ES256 in the header, an HMAC over the signing input: the classic confusion.
    token = forged({"alg": "ES256", "kid": "default"}, _claims(s), b"\x00" * 64)
    return _register_with(s, token)


def forged_by_other_key(s: Scene) -> HttpResponse:
    return _register_with(s, s.agent.attest(NOW_AUD, now=s.now, key=ECKey.generate_key("P-256")))


def signature_stripped(s: Scene) -> HttpResponse:
    head, payload, _ = s.agent.attest(NOW_AUD, now=s.now).split(".")
    return _register_with(s, f"{head}.{payload}.")


def payload_tampered(s: Scene) -> HttpResponse:
    head, _, sig = s.agent.attest(NOW_AUD, now=s.now).split(".")
    payload = base64.urlsafe_b64encode(json.dumps(_claims(s)).encode()).rstrip(b"=").decode()
    return _register_with(s, f"{head}.{payload}.{sig}")


def claim(**changes: Any) -> Callable[[Scene], HttpResponse]:
    def row(s: Scene) -> HttpResponse:
        resolved = {k: (v(s) if callable(v) else v) for k, v in changes.items()}
        return _register_with(s, s.agent.attest(NOW_AUD, now=s.now, **resolved))

    return row


def with_header(**header: Any) -> Callable[[Scene], HttpResponse]:
    def row(s: Scene) -> HttpResponse:
        return _register_with(s, s.agent.attest(NOW_AUD, now=s.now, header=header))

    return row


def crit_header(s: Scene) -> HttpResponse:
    return _register_with(
        s, signed(s.agent, {"alg": "ES256", "crit": ["x-ath"], "x-ath": 1}, _claims(s))
    )


def garbage(value: Any) -> Callable[[Scene], HttpResponse]:
    def row(s: Scene) -> HttpResponse:
        body = s.world.register_body(s.agent, provider=s.provider)
        if value is DROP:
            del body["agent_attestation"]
        else:
            body["agent_attestation"] = value
        return s.world.post("/ath/agents/register", body)

    return row


def replayed_at_register(s: Scene) -> HttpResponse:
    attestation = s.agent.attest(NOW_AUD, now=s.now)
    first = _register_with(s, attestation, s.agent)
    assert first.status == 201
    body = s.world.register_body(s.agent, provider=s.provider)
    body["agent_attestation"] = attestation
    return s.world.post("/ath/agents/register", body)


# -- identity documents ------------------------------------------------------------------------


def document(change: Callable[[Agent, dict[str, Any]], Any]) -> Callable[[Scene], HttpResponse]:
    def row(s: Scene) -> HttpResponse:
        doc = s.agent.document()
        replaced = change(s.agent, doc)
        s.world.fetcher.documents[s.agent.agent_id] = doc if replaced is None else replaced
        return _register_with(s, s.agent.attest(NOW_AUD, now=s.now))

    return row


def _pem(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def pem_p384(agent: Agent, doc: dict[str, Any]) -> None:
    doc["public_key"] = _pem(ec.generate_private_key(ec.SECP384R1()))


def pem_rsa(agent: Agent, doc: dict[str, Any]) -> None:
    doc["public_key"] = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))


def jwk_private(agent: Agent, doc: dict[str, Any]) -> None:
    doc["public_key"] = agent.jwk.as_dict(private=True)


def jwk_p384(agent: Agent, doc: dict[str, Any]) -> None:
    doc["public_key"] = ECKey.generate_key("P-384").as_dict(private=False)


def jwk_alg_hs(agent: Agent, doc: dict[str, Any]) -> None:
    doc["public_key"] = {**agent.jwk.as_dict(private=False), "alg": "HS256"}


def doc_other_agent(agent: Agent, doc: dict[str, Any]) -> None:
    doc["agent_id"] = "https://evil.example/agent.json"


def doc_no_developer(agent: Agent, doc: dict[str, Any]) -> None:
    del doc["developer"]


def doc_not_json(agent: Agent, doc: dict[str, Any]) -> Any:
    return FetchResponse(200, {"content-type": "application/json"}, b"<html>not json</html>")


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


#: Deeper than aauth_server.safejson.MAX_DEPTH (32): JSON no ATH message needs.
NESTED = _nested(40)


def doc_nested(agent: Agent, doc: dict[str, Any]) -> Any:
    return {**doc, "extra": NESTED}


def doc_404(agent: Agent, doc: dict[str, Any]) -> Any:
    return FetchResponse(404, {}, b"")


def private_address(s: Scene) -> HttpResponse:
    # The real fetcher and egress policy: 10.0.0.7 is refused before any connection.
    agent = Agent("https://10.0.0.7/.well-known/agent.json")
    fetcher = HttpxFetcher(EgressPolicy())
    s.world.server.driver.fetcher = fetcher
    try:
        body = s.world.register_body(agent, provider=s.provider)
        return s.world.post("/ath/agents/register", body)
    finally:
        fetcher.close()


def loopback_name_resolving_private(s: Scene) -> HttpResponse:
    agent = Agent("https://internal.example/.well-known/agent.json")
    fetcher = HttpxFetcher(EgressPolicy(resolver=lambda host, port: ["192.168.1.20"]))
    s.world.server.driver.fetcher = fetcher
    try:
        return s.world.post(
            "/ath/agents/register", s.world.register_body(agent, provider=s.provider)
        )
    finally:
        fetcher.close()


def http_agent_id(s: Scene) -> HttpResponse:
    agent = Agent("http://agent.example/agent.json")
    return s.world.post("/ath/agents/register", s.world.register_body(agent, provider=s.provider))


# -- registration shape ------------------------------------------------------------------------


def raw_register(
    raw: bytes, content_type: str = "application/json"
) -> Callable[[Scene], HttpResponse]:
    def row(s: Scene) -> HttpResponse:
        return s.world.send(
            "POST", "/ath/agents/register", headers=[("Content-Type", content_type)], raw=raw
        )

    return row


def oversize(s: Scene) -> HttpResponse:
    body = s.world.register_body(s.agent, provider=s.provider, purpose="x" * 70_000)
    return s.world.post("/ath/agents/register", body)


def register_field(**changes: Any) -> Callable[[Scene], HttpResponse]:
    def row(s: Scene) -> HttpResponse:
        return s.world.post(
            "/ath/agents/register", s.world.register_body(s.agent, provider=s.provider, **changes)
        )

    return row


def duplicate_agent(s: Scene) -> HttpResponse:
    s.registered()
    return s.world.post("/ath/agents/register", s.world.register_body(s.agent, provider=s.provider))


# -- authorize ---------------------------------------------------------------------------------


def authorize(
    agent: str = "agent", attest: Callable[[Scene, Agent], str] | None = None, **changes: Any
) -> Callable[[Scene], HttpResponse]:
    def row(s: Scene) -> HttpResponse:
        who = s.registered()
        body = s.world.authorize_body(who, s.scopes, provider=s.provider)
        if attest is not None:
            body["agent_attestation"] = attest(s, s.other if agent == "other" else who)
        for key, value in changes.items():
            if value is DROP:
                body.pop(key, None)
            else:
                body[key] = value(s) if callable(value) else value
        return s.world.post("/ath/authorize", body)

    return row


def authorize_pending(s: Scene) -> HttpResponse:
    s2 = Scene(approval=review())
    s.world = s2.world
    s.agent = s2.agent
    return authorize()(s2)


def authorize_denied_agent(s: Scene) -> HttpResponse:
    s2 = Scene(approval=approve_subset({"nothing"}))
    return authorize()(s2)


def authorize_beyond_subset(s: Scene) -> HttpResponse:
    s2 = Scene(approval=approve_subset({"products:read"}))
    return authorize(scopes=["products:read", "orders:write"])(s2)


def replayed_at_authorize(s: Scene) -> HttpResponse:
    who = s.registered()
    body = s.world.authorize_body(who, s.scopes, provider=s.provider)
    assert s.world.post("/ath/authorize", body).status == 200
    return s.world.post("/ath/authorize", body)


# -- consent and callback ----------------------------------------------------------------------


def _consent_page(s: Scene, browser: Browser) -> tuple[dict[str, Any], HttpResponse]:
    started = s.started()
    target = str(started["authorization_url"])[len(s.world.base) :]
    browser.cookies["shop_user"] = "alice"
    page = s.world.send("GET", target, headers=browser.header())
    browser.take(page)
    return started, page


def callback_unknown_state(s: Scene) -> HttpResponse:
    return s.world.send("GET", "/ath/callback?" + urlencode({"code": "x", "state": "nope" * 8}))


def callback_no_state(s: Scene) -> HttpResponse:
    return s.world.send("GET", "/ath/callback?code=abc")


def consent_in_second_browser(s: Scene) -> HttpResponse:
    started, page = _consent_page(s, Browser())
    assert page.status == 200
    thief = Browser({"shop_user": "bob"})
    return s.world.send(
        "GET", str(started["authorization_url"])[len(s.world.base) :], headers=thief.header()
    )


def consent_scope_tampered(s: Scene) -> HttpResponse:
    started = s.started()
    url = str(started["authorization_url"])
    query = parse_qs(urlsplit(url).query)
    query["scope"] = ["products:read cart:write orders:write"]
    target = "/ath/consent?" + urlencode({k: v[0] for k, v in query.items()})
    return s.world.send("GET", target, headers=Browser({"shop_user": "alice"}).header())


def consent_wrong_redirect(s: Scene) -> HttpResponse:
    started = s.started()
    query = {
        k: v[0] for k, v in parse_qs(urlsplit(str(started["authorization_url"])).query).items()
    }
    query["redirect_uri"] = "https://evil.example/cb"
    return s.world.send(
        "GET", "/ath/consent?" + urlencode(query), headers=Browser({"shop_user": "alice"}).header()
    )


def _decide(
    s: Scene,
    browser: Browser,
    started: dict[str, Any],
    page: HttpResponse,
    *,
    origin: str | None = None,
    csrf: str | None = None,
) -> HttpResponse:
    html = page.body.decode()
    marker = 'name="csrf" value="'
    token = html[html.index(marker) + len(marker) :].split('"', 1)[0]
    form = {
        "state": parse_qs(urlsplit(str(started["authorization_url"])).query)["state"][0],
        "csrf": token if csrf is None else csrf,
        "action": "authorize",
    }
    return s.world.send(
        "POST",
        "/ath/consent/decide",
        headers=[
            *browser.header(),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", origin or s.world.base),
        ],
        raw=urlencode(form).encode(),
    )


def decide_cross_origin(s: Scene) -> HttpResponse:
    browser = Browser()
    started, page = _consent_page(s, browser)
    return _decide(s, browser, started, page, origin="https://evil.example")


def decide_bad_csrf(s: Scene) -> HttpResponse:
    browser = Browser()
    started, page = _consent_page(s, browser)
    return _decide(s, browser, started, page, csrf="forged")


def decide_twice(s: Scene) -> HttpResponse:
    browser = Browser()
    started, page = _consent_page(s, browser)
    assert _decide(s, browser, started, page).status == 303
    return _decide(s, browser, started, page)


def decide_other_user(s: Scene) -> HttpResponse:
    browser = Browser()
    started, page = _consent_page(s, browser)
    browser.cookies["shop_user"] = "bob"  # the CSRF token was minted for alice
    return _decide(s, browser, started, page)


def callback_other_browser(s: Scene) -> HttpResponse:
    browser = Browser()
    started, page = _consent_page(s, browser)
    decided = _decide(s, browser, started, page)
    location = str(decided.header("location"))
    return s.world.send(
        "GET", location[len(s.world.base) :], headers=Browser({"ath_browser": "A" * 43}).header()
    )


def callback_replayed(s: Scene) -> HttpResponse:
    browser = Browser()
    started, page = _consent_page(s, browser)
    location = str(_decide(s, browser, started, page).header("location"))[len(s.world.base) :]
    assert s.world.send("GET", location, headers=browser.header()).status == 200
    return s.world.send("GET", location, headers=browser.header())


def callback_forged_code(s: Scene) -> HttpResponse:
    browser = Browser()
    started, page = _consent_page(s, browser)
    location = str(_decide(s, browser, started, page).header("location"))
    query = parse_qs(urlsplit(location).query)
    target = "/ath/callback?" + urlencode({"code": "forged-code", "state": query["state"][0]})
    return s.world.send("GET", target, headers=browser.header())


def callback_expired(s: Scene) -> HttpResponse:
    browser = Browser()
    started, page = _consent_page(s, browser)
    location = str(_decide(s, browser, started, page).header("location"))[len(s.world.base) :]
    s.world.clock.advance(601)
    return s.world.send("GET", location, headers=browser.header())


def gateway_start_second_browser(s: Scene) -> HttpResponse:
    started = s.started()
    target = str(started["authorization_url"])[len(s.world.base) :]
    first = Browser()
    first.take(s.world.send("GET", target))
    return s.world.send("GET", target, headers=Browser({"ath_browser": "B" * 43}).header())


# -- token -------------------------------------------------------------------------------------


def token_row(
    prepare: Callable[[Scene], tuple[Agent, str]], **changes: Any
) -> Callable[[Scene], HttpResponse]:
    def row(s: Scene) -> HttpResponse:
        agent, session_id = prepare(s)
        body = s.world.token_body(agent, session_id)
        for key, value in changes.items():
            if value is DROP:
                body.pop(key, None)
            else:
                body[key] = value(s) if callable(value) else value
        return s.world.post("/ath/token", body)

    return row


def completed(s: Scene) -> tuple[Agent, str]:
    return s.agent, str(s.consented()["ath_session_id"])


def completed_twice(s: Scene) -> tuple[Agent, str]:
    session = str(s.consented()["ath_session_id"])
    assert s.world.token(s.agent, session).status == 200
    return s.agent, session


def completed_then_late(s: Scene) -> tuple[Agent, str]:
    session = str(s.consented()["ath_session_id"])
    s.world.clock.advance(601)
    return s.agent, session


def not_consented(s: Scene) -> tuple[Agent, str]:
    return s.agent, str(s.started()["ath_session_id"])


def user_denied(s: Scene) -> tuple[Agent, str]:
    if s.world.config.mode == "native":
        return s.agent, str(s.consented(action="deny")["ath_session_id"])
    return s.agent, str(s.consented(error="access_denied")["ath_session_id"])


def other_agents_session(s: Scene) -> tuple[Agent, str]:
    session = str(s.consented()["ath_session_id"])
    return s.registered(s.other), session


def empty_intersection(s: Scene) -> tuple[Agent, str]:
    s.world.upstream.scope = "calendar:admin"  # the provider granted none of what was asked
    return completed(s)


def token_with(fn: Callable[[Scene], str]) -> Callable[[Scene], Any]:
    return fn


# -- using the token ---------------------------------------------------------------------------


def api_row(
    method: str,
    path: str,
    *,
    token: str = "valid",
    agent_header: str | None = "mine",
    auth: str | None = None,
    before: Callable[[Scene, str], None] | None = None,
) -> Callable[[Scene], HttpResponse]:
    def row(s: Scene) -> HttpResponse:
        real = s.token()
        if before is not None:
            before(s, real)
        value = {"valid": real, "unknown": "ath_tk_" + "A" * 43, "none": None}[token]
        header = {"mine": "mine", "other": s.other.agent_id, "none": None}.get(
            agent_header or "none"
        )
        return s.api(method, path, value, agent_header=header, auth=auth)

    return row


def expire(s: Scene, token: str) -> None:
    s.world.clock.advance(3601)


def revoke_it(s: Scene, token: str) -> None:
    agent = s.agent
    body = {"token": token, "client_id": agent.client_id, "client_secret": agent.client_secret}
    assert s.world.post("/ath/revoke", body).status == 200


def proxy_row(
    target: str,
    method: str = "GET",
    *,
    token: str = "valid",
    headers: list[tuple[str, str]] | None = None,
) -> Callable[[Scene], HttpResponse]:
    def row(s: Scene) -> HttpResponse:
        value = s.token() if token == "valid" else None
        return s.world.proxy(method, target, value, s.agent, headers=headers)

    return row


# -- revoke and read-back ----------------------------------------------------------------------


def revoke_row(who: str) -> Callable[[Scene], HttpResponse]:
    def row(s: Scene) -> HttpResponse:
        token = s.token()
        if who == "other-agent":
            other = s.registered(s.other)
            return s.world.post(
                "/ath/revoke",
                {
                    "token": token,
                    "client_id": other.client_id,
                    "client_secret": other.client_secret,
                },
            )
        if who == "bare":
            return s.world.post("/ath/revoke", {"token": token})
        if who == "wrong-secret":
            return s.world.post(
                "/ath/revoke",
                {"token": token, "client_id": s.agent.client_id, "client_secret": "ath_secret_x"},
            )
        if who == "unknown":
            return s.world.post(
                "/ath/revoke",
                {
                    "token": "ath_tk_nope",
                    "client_id": s.agent.client_id,
                    "client_secret": s.agent.client_secret,
                },
            )
        if who == "other-user":
            return s.world.post(
                "/ath/revoke",
                {"token": token},
                headers=[*Browser({"shop_user": "bob"}).header(), ("Origin", s.world.base)],
            )
        if who == "user-cross-site":
            return s.world.post(
                "/ath/revoke",
                {"token": token},
                headers=[
                    *Browser({"shop_user": "alice"}).header(),
                    ("Origin", "https://evil.example"),
                ],
            )
        raise AssertionError(who)

    return row


def get_agent(who: str) -> Callable[[Scene], HttpResponse]:
    def row(s: Scene) -> HttpResponse:
        mine = s.registered()
        other = s.registered(s.other)
        if who == "none":
            return s.world.send("GET", f"/ath/agents/{mine.client_id}")
        if who == "other":
            basic = base64.b64encode(f"{mine.client_id}:{mine.client_secret}".encode()).decode()
            return s.world.send(
                "GET",
                f"/ath/agents/{other.client_id}",
                headers=[("Authorization", f"Basic {basic}")],
            )
        if who == "wrong-secret":
            basic = base64.b64encode(f"{mine.client_id}:nope".encode()).decode()
            return s.world.send(
                "GET",
                f"/ath/agents/{mine.client_id}",
                headers=[("Authorization", f"Basic {basic}")],
            )
        if who == "other-attestation":
            attestation = s.other.attest(NOW_AUD, now=s.now)
            return s.world.send(
                "GET",
                f"/ath/agents/{mine.client_id}",
                headers=[("X-ATH-Agent-Attestation", attestation)],
            )
        raise AssertionError(who)

    return row


@dataclass(frozen=True)
class Row:
    name: str
    run: Callable[[Scene], HttpResponse]
    status: int
    code: str | None
    mode: str = "native"


INV = "INVALID_ATTESTATION"
ROWS = [
    # forged and misdirected attestations (register)
    Row("alg none", alg_none, 401, INV),
    Row("alg HS256", alg_hs256, 401, INV),
    Row("alg ES384 (P-384 key)", alg_es384, 401, INV),
    Row("alg RS256", alg_rs256, 401, INV),
    Row("ES256 header over a junk signature", alg_es256_declared_with_hs_signature, 401, INV),
    Row("signed by another P-256 key", forged_by_other_key, 401, INV),
    Row("signature stripped", signature_stripped, 401, INV),
    Row("payload swapped under a valid signature", payload_tampered, 401, INV),
    Row("expired (exp in the past)", claim(exp=lambda s: int(s.now) - 10), 401, INV),
    Row("exp missing", claim(exp=DROP), 401, INV),
    Row("iat ten minutes old", claim(iat=lambda s: int(s.now) - 600), 401, INV),
    Row("iat ten minutes ahead", claim(iat=lambda s: int(s.now) + 600), 401, INV),
    Row("iat missing", claim(iat=DROP), 401, INV),
    Row("iat a string", claim(iat="now"), 401, INV),
    Row("nbf in the future", claim(nbf=lambda s: int(s.now) + 600), 401, INV),
    Row("aud another service", claim(aud="https://other-shop.example"), 401, INV),
    Row("aud the token endpoint at register", claim(aud=TOKEN_AUD), 401, INV),
    Row("aud missing", claim(aud=DROP), 401, INV),
    Row("sub another agent", claim(sub="https://evil.example/agent.json"), 401, INV),
    Row("iss another domain", claim(iss="evil.example"), 401, INV),
    Row("jti missing", claim(jti=DROP), 401, INV),
    Row("crit header", crit_header, 401, INV),
    Row("replayed attestation at register", replayed_at_register, 401, INV),
    Row("attestation missing", garbage(DROP), 401, INV),
    Row("attestation not a JWS", garbage("not.a.jwt!"), 401, INV),
    Row("attestation a number", garbage(42), 401, INV),
    # identity documents
    Row("PEM on P-384", document(pem_p384), 401, INV),
    Row("PEM of an RSA key", document(pem_rsa), 401, INV),
    Row("JWK with private material", document(jwk_private), 401, INV),
    Row("JWK on P-384", document(jwk_p384), 401, INV),
    Row("JWK with alg HS256", document(jwk_alg_hs), 401, INV),
    Row("document names another agent_id", document(doc_other_agent), 401, INV),
    Row("document without developer", document(doc_no_developer), 401, INV),
    Row("document not JSON", document(doc_not_json), 401, INV),
    Row("document 404", document(doc_404), 401, INV),
    Row("identity document on a private address", private_address, 401, INV),
    Row("agent host resolving to a private address", loopback_name_resolving_private, 401, INV),
    Row("http agent_id outside development", http_agent_id, 400, "INVALID_REQUEST"),
    # registration shape
    Row("body not JSON", raw_register(b"{not json"), 400, "INVALID_REQUEST"),
    Row("body a JSON array", raw_register(b"[]"), 400, "INVALID_REQUEST"),
    Row(
        "duplicate JSON member",
        raw_register(b'{"agent_id":"a","agent_id":"b"}'),
        400,
        "INVALID_REQUEST",
    ),
    Row("body nested past the depth limit", register_field(extra=NESTED), 400, "INVALID_REQUEST"),
    Row("document nested past the depth limit", document(doc_nested), 401, INV),
    Row("authorize body nested past the depth limit", authorize(x=NESTED), 400, "INVALID_REQUEST"),
    Row(
        "token body nested past the depth limit",
        token_row(completed, x=NESTED),
        400,
        "INVALID_REQUEST",
    ),
    Row("text/plain body", raw_register(b"{}", "text/plain"), 415, "UNSUPPORTED_MEDIA_TYPE"),
    Row("body over the size limit", oversize, 413, "PAYLOAD_TOO_LARGE"),
    Row(
        "requested_providers empty", register_field(requested_providers=[]), 400, "INVALID_REQUEST"
    ),
    Row(
        "redirect_uris with javascript:",
        register_field(redirect_uris=["javascript:alert(1)"]),
        400,
        "INVALID_REQUEST",
    ),
    Row(
        "redirect_uris with a fragment",
        register_field(redirect_uris=["https://agent.example/cb#x"]),
        400,
        "INVALID_REQUEST",
    ),
    Row("duplicate agent_id", duplicate_agent, 409, "CONFLICT"),
    # authorize
    Row("authorize without state", authorize(state=DROP), 400, "STATE_MISMATCH"),
    Row(
        "authorize with a 64-bit state", authorize(state="0123456789abcdef"), 400, "STATE_MISMATCH"
    ),
    Row("authorize with a non-string state", authorize(state=12345), 400, "STATE_MISMATCH"),
    Row("unknown client_id", authorize(client_id="ath_" + "0" * 32), 403, "AGENT_NOT_REGISTERED"),
    Row("agent pending review", authorize_pending, 403, "AGENT_UNAPPROVED"),
    Row("agent denied", authorize_denied_agent, 403, "AGENT_UNAPPROVED"),
    Row(
        "another agent's attestation",
        authorize(agent="other", attest=lambda s, a: a.attest(NOW_AUD, now=s.now)),
        403,
        "AGENT_IDENTITY_MISMATCH",
    ),
    Row(
        "token-endpoint aud at authorize",
        authorize(attest=lambda s, a: a.attest(TOKEN_AUD, now=s.now)),
        401,
        INV,
    ),
    Row("replayed attestation at authorize", replayed_at_authorize, 401, INV),
    Row(
        "provider the agent is not approved for",
        authorize(provider_id="calendar"),
        403,
        "PROVIDER_NOT_APPROVED",
    ),
    Row(
        "scope escalation at authorize (beyond approved)",
        authorize_beyond_subset,
        403,
        "SCOPE_NOT_APPROVED",
    ),
    Row(
        "scope escalation at authorize (not offered)",
        authorize(scopes=["products:read", "admin:all"]),
        403,
        "SCOPE_NOT_APPROVED",
    ),
    Row(
        "unregistered user_redirect_uri",
        authorize(user_redirect_uri="https://evil.example/cb"),
        400,
        "INVALID_REQUEST",
    ),
    # consent and callback (pages)
    Row("callback with an unknown state", callback_unknown_state, 400, "STATE_MISMATCH"),
    Row("callback without state", callback_no_state, 400, "STATE_MISMATCH"),
    Row("consent link in a second browser", consent_in_second_browser, 400, "STATE_MISMATCH"),
    Row("consent link with widened scope", consent_scope_tampered, 400, "STATE_MISMATCH"),
    Row("consent link with another redirect_uri", consent_wrong_redirect, 400, "INVALID_REQUEST"),
    Row("decision posted cross-origin", decide_cross_origin, 403, "FORBIDDEN"),
    Row("decision with a forged CSRF token", decide_bad_csrf, 403, "FORBIDDEN"),
    Row("decision by another signed-in user", decide_other_user, 403, "FORBIDDEN"),
    Row("decision replayed", decide_twice, 400, "SESSION_NOT_FOUND"),
    Row(
        "callback in another browser (cookie mismatch)",
        callback_other_browser,
        400,
        "STATE_MISMATCH",
    ),
    Row("callback replayed", callback_replayed, 400, "SESSION_NOT_FOUND"),
    Row("callback with a forged code", callback_forged_code, 502, "OAUTH_ERROR"),
    Row("callback after the session expired", callback_expired, 400, "SESSION_EXPIRED"),
    Row(
        "gateway link in a second browser",
        gateway_start_second_browser,
        400,
        "STATE_MISMATCH",
        "gateway",
    ),
    # token
    Row("session reused", token_row(completed_twice), 400, "SESSION_NOT_FOUND"),
    Row("session expired", token_row(completed_then_late), 400, "SESSION_EXPIRED"),
    Row("consent not finished", token_row(not_consented), 400, "SESSION_NOT_FOUND"),
    Row(
        "unknown session",
        token_row(completed, ath_session_id="ath_sess_" + "0" * 32),
        400,
        "SESSION_NOT_FOUND",
    ),
    Row("user denied", token_row(user_denied), 403, "USER_DENIED"),
    Row("user denied at the provider", token_row(user_denied), 403, "USER_DENIED", "gateway"),
    Row("another agent's session", token_row(other_agents_session), 400, "SESSION_NOT_FOUND"),
    Row(
        "wrong client_secret",
        token_row(completed, client_secret="ath_secret_wrong"),
        403,
        "AGENT_NOT_REGISTERED",
    ),
    Row(
        "unknown client_id at token",
        token_row(completed, client_id="ath_" + "1" * 32),
        403,
        "AGENT_NOT_REGISTERED",
    ),
    Row(
        "register aud at token",
        token_row(completed, agent_attestation=lambda s: s.agent.attest(NOW_AUD, now=s.now)),
        401,
        INV,
    ),
    Row("attestation missing at token", token_row(completed, agent_attestation=DROP), 401, INV),
    Row(
        "another agent's attestation at token",
        token_row(completed, agent_attestation=lambda s: s.other.attest(TOKEN_AUD, now=s.now)),
        403,
        "AGENT_IDENTITY_MISMATCH",
    ),
    Row(
        "grant_type not authorization_code",
        token_row(completed, grant_type="client_credentials"),
        400,
        "INVALID_REQUEST",
    ),
    Row(
        "empty scope intersection",
        token_row(empty_intersection),
        403,
        "SCOPE_NOT_APPROVED",
        "gateway",
    ),
    # using the token (native API)
    Row("API without a token", api_row("GET", "/products", token="none"), 401, "TOKEN_INVALID"),
    Row(
        "API with an unknown token",
        api_row("GET", "/products", token="unknown"),
        401,
        "TOKEN_INVALID",
    ),
    Row(
        "API with Basic instead of Bearer",
        api_row("GET", "/products", auth="Basic YTpi"),
        401,
        "TOKEN_INVALID",
    ),
    Row(
        "API with an expired token",
        api_row("GET", "/products", before=expire),
        401,
        "TOKEN_EXPIRED",
    ),
    Row(
        "API with a revoked token",
        api_row("GET", "/products", before=revoke_it),
        401,
        "TOKEN_REVOKED",
    ),
    Row(
        "API as another agent (X-ATH-Agent-ID)",
        api_row("GET", "/products", agent_header="other"),
        403,
        "AGENT_IDENTITY_MISMATCH",
    ),
    Row(
        "API without X-ATH-Agent-ID",
        api_row("GET", "/products", agent_header=None),
        403,
        "AGENT_IDENTITY_MISMATCH",
    ),
    Row("API operation not mapped", api_row("DELETE", "/products"), 403, "SCOPE_NOT_APPROVED"),
    Row(
        "API scope escalation (orders:write)", api_row("POST", "/orders"), 403, "SCOPE_NOT_APPROVED"
    ),
    Row("API path outside api_base", api_row("GET", "/../admin"), 400, "INVALID_PATH"),
    # the proxy (gateway)
    Row(
        "proxy dot-dot",
        proxy_row("/ath/proxy/notes/notes/../admin"),
        400,
        "INVALID_PATH",
        "gateway",
    ),
    Row(
        "proxy encoded dot-dot",
        proxy_row("/ath/proxy/notes/%2e%2e/admin"),
        400,
        "INVALID_PATH",
        "gateway",
    ),
    Row(
        "proxy encoded slash",
        proxy_row("/ath/proxy/notes/notes%2F..%2Fadmin"),
        400,
        "INVALID_PATH",
        "gateway",
    ),
    Row(
        "proxy encoded backslash",
        proxy_row("/ath/proxy/notes/notes%5cadmin"),
        400,
        "INVALID_PATH",
        "gateway",
    ),
    Row(
        "proxy double slash (host-like)",
        proxy_row("/ath/proxy/notes//evil.example/x"),
        400,
        "INVALID_PATH",
        "gateway",
    ),
    Row(
        "proxy absolute URL",
        proxy_row("/ath/proxy/notes/https://evil.example/x"),
        400,
        "INVALID_PATH",
        "gateway",
    ),
    Row(
        "proxy encoded NUL", proxy_row("/ath/proxy/notes/notes%00"), 400, "INVALID_PATH", "gateway"
    ),
    Row(
        "proxy stray percent",
        proxy_row("/ath/proxy/notes/notes%zz"),
        400,
        "INVALID_PATH",
        "gateway",
    ),
    Row(
        "proxy token of another provider",
        proxy_row("/ath/proxy/calendar/profile"),
        403,
        "PROVIDER_MISMATCH",
        "gateway",
    ),
    Row(
        "proxy unknown provider",
        proxy_row("/ath/proxy/nowhere/profile"),
        403,
        "PROVIDER_MISMATCH",
        "gateway",
    ),
    Row(
        "proxy operation not mapped",
        proxy_row("/ath/proxy/notes/notes", "DELETE"),
        403,
        "SCOPE_NOT_APPROVED",
        "gateway",
    ),
    Row(
        "proxy scope escalation (notes:write)",
        proxy_row("/ath/proxy/notes/notes", "POST"),
        403,
        "SCOPE_NOT_APPROVED",
        "gateway",
    ),
    Row(
        "proxy without a token",
        proxy_row("/ath/proxy/notes/profile", token="none"),
        401,
        "TOKEN_INVALID",
        "gateway",
    ),
    Row(
        "proxy body over the limit",
        proxy_row("/ath/proxy/notes/profile", headers=[("Content-Length", str(11 * 1024 * 1024))]),
        413,
        "PAYLOAD_TOO_LARGE",
        "gateway",
    ),
    # revoke and read-back
    Row("revoke another agent's token", revoke_row("other-agent"), 403, "AGENT_IDENTITY_MISMATCH"),
    Row("revoke unauthenticated", revoke_row("bare"), 401, "AUTH_REQUIRED"),
    Row("revoke with a wrong secret", revoke_row("wrong-secret"), 403, "AGENT_NOT_REGISTERED"),
    Row("revoke an unknown token", revoke_row("unknown"), 200, None),
    Row("revoke another user's token", revoke_row("other-user"), 403, "FORBIDDEN"),
    Row("user revocation posted cross-site", revoke_row("user-cross-site"), 403, "FORBIDDEN"),
    Row("read a registration unauthenticated", get_agent("none"), 401, "AUTH_REQUIRED"),
    Row("read another agent's registration", get_agent("other"), 403, "AGENT_IDENTITY_MISMATCH"),
    Row(
        "read a registration with a wrong secret",
        get_agent("wrong-secret"),
        403,
        "AGENT_NOT_REGISTERED",
    ),
    Row(
        "read a registration with another agent's attestation",
        get_agent("other-attestation"),
        403,
        "AGENT_IDENTITY_MISMATCH",
    ),
]


def test_the_table_is_large_and_names_are_unique() -> None:
    assert len(ROWS) >= 60
    assert len({r.name for r in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_hostile_request(row: Row) -> None:
    scene = Scene(row.mode)
    response = row.run(scene)
    assert (response.status, code_of(response)) == (row.status, row.code), response.body[:300]
    assert response.status < 500 or row.status >= 500


def _async_world(scene: Scene) -> None:
    """Route the scene's world through the async driver (``ahandle``/``acheck``)."""
    server = scene.world.server

    def handle(request: HttpRequest) -> HttpResponse | None:
        return asyncio.run(server.ahandle(request))

    def check(request: HttpRequest, scopes: Any = ()) -> Any:
        return asyncio.run(server.acheck(request, scopes))

    def plan(request: HttpRequest) -> Any:
        return asyncio.run(server.aplan_proxy(request))

    server.handle = handle  # type: ignore[method-assign]
    server.check = check  # type: ignore[method-assign]
    server.plan_proxy = plan  # type: ignore[method-assign]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_hostile_request_async_driver(row: Row) -> None:
    scene = Scene(row.mode)
    _async_world(scene)
    response = row.run(scene)
    assert (response.status, code_of(response)) == (row.status, row.code), response.body[:300]
