"""The two ATH stories, step by step: a native service (ATH Shop) and a gateway in front of an
OAuth provider (``python -m example_apps.ath_demo``; ``make demo`` runs them at its end).

Each story starts its servers on free loopback ports (``--dev``), serves an agent's identity
document, and walks discovery, registration, authorization, the user's consent, the token
and its scope intersection, API or proxy calls, revocation, and the revoked token refused.
The user here is a scripted HTTP client that fills in the same forms a person would (the
tests drive the same pages in headless Chromium).  Exits non-zero if any outcome differs
from what the protocol requires.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import ECKey

from ._procs import AppSpec, running_apps, story_main

SHOP_PASSWORD = "alice-demo-pw"  # noqa: S105 - a throwaway demo password on loopback
PROVIDER_PASSWORD = "bob-demo-pw"  # noqa: S105
GATEWAY_SECRET = "gateway-demo-secret"  # noqa: S105


# -- the agent ---------------------------------------------------------------------------------


class AgentSite:
    """Serves an agent's identity document on a loopback port: the agent's ``agent_id``."""

    def __init__(self, name: str = "Shop Helper") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = name
        self.documents: dict[str, bytes] = {}
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = site.documents.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "max-age=300")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.agent_id = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/agent.json"
        self.publish()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def private_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def document(self) -> dict[str, Any]:
        public = ECKey.import_key(self.private_pem).as_dict(private=False)
        return {
            "ath_version": "0.1",
            "agent_id": self.agent_id,
            "name": self.name,
            "developer": {"name": "Demo Agents Ltd", "id": "demo-agents"},
            "capabilities": ["shopping", "notes"],
            "public_key": {**public, "kid": "default"},
        }

    def publish(self) -> None:
        self.documents["/.well-known/agent.json"] = json.dumps(self.document()).encode()

    def __enter__(self) -> AgentSite:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


class ATHAgent:
    """An ATH agent speaking the wire as the published SDKs do (ES256 attestations with
    ``iss = sub = agent_id``, ``aud`` the base URL, ``<base>/ath/token`` for the exchange)."""

    def __init__(
        self, base_url: str, site: AgentSite, http: httpx.Client, *, via: str | None = None
    ) -> None:
        self.base = base_url.rstrip("/")
        #: Where requests go, when not the base URL itself (one worker behind a balancer).
        self.via = (via or base_url).rstrip("/")
        self.site = site
        self.http = http
        self.key = ECKey.import_key(site.private_pem)
        self.client_id: str | None = None
        self.client_secret: str | None = None
        self.token: str | None = None

    @property
    def agent_id(self) -> str:
        return self.site.agent_id

    def attest(self, aud: str | None = None) -> str:
        now = int(time.time())
        claims = {
            "capabilities": [],
            "iss": self.agent_id,
            "sub": self.agent_id,
            "aud": aud or self.base,
            "iat": now,
            "exp": now + 3600,
            "jti": secrets.token_urlsafe(24),
        }
        return jwt.encode(
            {"alg": "ES256", "kid": "default", "typ": "JWT"}, claims, self.key, algorithms=["ES256"]
        )

    def discover(self, path: str) -> httpx.Response:
        return self.http.get(self.via + path)

    def register(self, providers: list[dict[str, Any]], **extra: Any) -> httpx.Response:
        body = {
            "agent_id": self.agent_id,
            "agent_attestation": self.attest(),
            "developer": {"name": "Demo Agents Ltd", "id": "demo-agents"},
            "requested_providers": providers,
            "purpose": "Help with shopping and notes",
            "redirect_uris": [self.base + "/ath/callback"],
            **extra,
        }
        response = self.http.post(self.via + "/ath/agents/register", json=body)
        if response.status_code == 201:
            answer = response.json()
            self.client_id, self.client_secret = answer["client_id"], answer["client_secret"]
        return response

    def authorize(self, provider_id: str, scopes: list[str], **extra: Any) -> httpx.Response:
        body = {
            "client_id": self.client_id,
            "agent_attestation": self.attest(),
            "provider_id": provider_id,
            "scopes": scopes,
            "state": secrets.token_hex(16),
            "user_redirect_uri": self.base + "/ath/callback",
            **extra,
        }
        return self.http.post(self.via + "/ath/authorize", json=body)

    def exchange(self, session_id: str, code: str = "placeholder") -> httpx.Response:
        body = {
            "grant_type": "authorization_code",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "agent_attestation": self.attest(self.base + "/ath/token"),
            "code": code,
            "ath_session_id": session_id,
        }
        response = self.http.post(self.via + "/ath/token", json=body)
        if response.status_code == 200:
            self.token = response.json()["access_token"]
        return response

    def call(self, method: str, url: str, body: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}", "X-ATH-Agent-ID": self.agent_id}
        return self.http.request(method, url, headers=headers, json=body)

    def revoke(self) -> httpx.Response:
        body = {
            "token": self.token,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }
        return self.http.post(self.via + "/ath/revoke", json=body)


# -- a scripted user ---------------------------------------------------------------------------


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, list[str]] = field(default_factory=dict)
    buttons: list[tuple[str, str, str]] = field(default_factory=list)  # (id, name, value)
    checkboxes: list[str] = field(default_factory=list)


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self.title = ""
        self._in_title = False
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "title":
            self._in_title = True
        if tag == "form":
            self.forms.append(Form(a.get("action", ""), a.get("method", "get").lower()))
        elif self.forms and tag == "input" and a.get("name"):
            if a.get("type") == "checkbox":
                self.forms[-1].checkboxes.append(a["value"])
                if "checked" in a:
                    self.forms[-1].fields.setdefault(a["name"], []).append(a["value"])
            else:
                self.forms[-1].fields.setdefault(a["name"], []).append(a.get("value", ""))
        elif self.forms and tag == "button" and a.get("name"):
            self.forms[-1].buttons.append((a.get("id", ""), a["name"], a.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if data.strip():
            self.text.append(data.strip())


class ScriptedUser:
    """A person's browser without a screen: follows redirects, keeps cookies, fills forms."""

    def __init__(self, username: str, password: str, *, rewrite: Any = None) -> None:
        self.username = username
        self.password = password
        #: url -> url: where a URL is really served (tests put workers behind one base URL).
        self.rewrite = rewrite or (lambda url: url)
        self.http = httpx.Client(timeout=10, trust_env=False, follow_redirects=False)
        self.seen: list[str] = []

    def close(self) -> None:
        self.http.close()

    def open(
        self, url: str, *, method: str = "GET", data: Mapping[str, Any] | None = None
    ) -> httpx.Response:
        # ``url`` stays the public URL (what the browser's Origin names); ``rewrite`` says
        # which server really answers it.
        response = self.http.request(
            method, self.rewrite(url), data=data, headers={"Origin": _origin(url)} if data else None
        )
        for _ in range(10):
            if response.status_code not in (301, 302, 303, 307, 308):
                break
            url = urljoin(url, response.headers["location"])
            response = self.http.get(self.rewrite(url))
        self.url = url
        return response

    def page(self, response: httpx.Response) -> _Forms:
        parsed = _Forms()
        parsed.feed(response.text)
        self.seen.append(" ".join(parsed.text))
        return parsed

    def submit(
        self,
        response: httpx.Response,
        button: str,
        *,
        untick: Sequence[str] = (),
        extra: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        parsed = self.page(response)
        form = next(
            f for f in parsed.forms if any(b[0] == button for b in f.buttons) or not f.buttons
        )
        data: dict[str, Any] = {k: v if len(v) > 1 else v[0] for k, v in form.fields.items()}
        for name, values in form.fields.items():
            if any(v in form.checkboxes for v in values):
                data[name] = [v for v in values if v not in untick]
        data.update(extra or {})
        for ident, name, value in form.buttons:
            if ident == button:
                data[name] = value
        return self.open(urljoin(self.url, form.action or self.url), method="POST", data=data)

    def sign_in(self, response: httpx.Response) -> httpx.Response:
        return self.submit(
            response, "login", extra={"username": self.username, "password": self.password}
        )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


# -- reporting ---------------------------------------------------------------------------------


@dataclass
class Story:
    name: str
    failures: list[str] = field(default_factory=list)

    def step(self, label: str, text: str) -> None:
        print(f"\n[{self.name}] {label}: {text}")

    def check(self, what: str, ok: bool, got: str) -> None:
        if ok:
            print(f"  [{self.name}] PASS {what}")
        else:
            print(f"  [{self.name}] FAIL {what}: got {got}")
            self.failures.append(f"[{self.name}] {what}: got {got}")


def _show(response: httpx.Response, limit: int = 400) -> str:
    text = response.text
    text = re.sub(r'"(client_secret|access_token)":"([^"]{12})[^"]*"', r'"\1":"\2..."', text)
    return f"{response.status_code} {text[:limit]}"


def _code(response: httpx.Response) -> str | None:
    try:
        value = response.json()
    except ValueError:
        return None
    return value.get("code") if isinstance(value, dict) else None


# -- the native story --------------------------------------------------------------------------


def native_story(shop_url: str, site: AgentSite, story: Story) -> None:
    with httpx.Client(timeout=10, trust_env=False) as http:
        agent = ATHAgent(shop_url, site, http)
        story.step("1 discovery", f"GET {shop_url}/.well-known/ath-app.json")
        found = agent.discover("/.well-known/ath-app.json")
        print("  <", _show(found))
        doc = found.json() if found.status_code == 200 else {}
        story.check(
            "discovery names the app and its api_base",
            doc.get("ath_version") == "0.1" and bool(doc.get("api_base")),
            _show(found),
        )
        api = str(doc.get("api_base", shop_url + "/api"))

        story.step("2 registration (Phase A)", f"POST /ath/agents/register as {agent.agent_id}")
        registered = agent.register(
            [
                {
                    "provider_id": str(doc.get("app_id")),
                    "scopes": ["products:read", "cart:write", "orders:write"],
                }
            ]
        )
        print("  <", _show(registered))
        story.check(
            "201 approved, client credentials issued",
            registered.status_code == 201 and registered.json().get("agent_status") == "approved",
            _show(registered),
        )

        story.step(
            "3 authorize (Phase B starts)", "POST /ath/authorize for products:read cart:write"
        )
        started = agent.authorize(str(doc.get("app_id")), ["products:read", "cart:write"])
        print("  <", _show(started))
        story.check(
            "200 with an authorization_url on the shop's own consent page",
            started.status_code == 200
            and "/ath/consent?" in started.json().get("authorization_url", ""),
            _show(started),
        )
        session = started.json().get("ath_session_id", "")

        story.step("4 the user's consent", "alice opens the link, signs in and presses Authorize")
        user = ScriptedUser("alice", SHOP_PASSWORD)
        try:
            page = user.open(started.json()["authorization_url"])
            if "/login" in user.url:
                page = user.sign_in(page)
            shown = user.page(page)
            print(f"  page: {shown.title.strip()!r}: {' '.join(shown.text[:12])}")
            story.check(
                "the consent page says who wants access",
                "Shop Helper wants to access your account" in " ".join(shown.text),
                " ".join(shown.text)[:200],
            )
            done = user.submit(page, "authorize")
            closed = user.page(done)
            print(f"  page: {' '.join(closed.text[-3:])}")
            story.check(
                "the callback tells alice she can close the tab",
                "You can close this tab." in " ".join(closed.text),
                " ".join(closed.text)[:200],
            )
        finally:
            user.close()

        story.step(
            "5 token (Phase B finishes)", f"POST /ath/token for {session} with code=placeholder"
        )
        token = agent.exchange(session)
        print("  <", _show(token, 600))
        breakdown = token.json().get("scope_intersection", {}) if token.status_code == 200 else {}
        story.check(
            "200 with effective = approved ∩ consented ∩ requested",
            breakdown.get("effective") == ["products:read", "cart:write"],
            _show(token),
        )

        story.step("6 API calls", f"GET {api}/products, POST {api}/cart, POST {api}/orders")
        products = agent.call("GET", api + "/products")
        print("  <", _show(products, 160))
        story.check(
            "GET /api/products with products:read", products.status_code == 200, _show(products)
        )
        cart = agent.call("POST", api + "/cart", {"product_id": "coffee", "quantity": 2})
        print("  <", _show(cart, 160))
        story.check("POST /api/cart with cart:write", cart.status_code == 200, _show(cart))
        order = agent.call("POST", api + "/orders")
        print("  <", _show(order))
        story.check(
            "POST /api/orders refused: orders:write was not requested",
            order.status_code == 403 and _code(order) == "SCOPE_NOT_APPROVED",
            _show(order),
        )

        story.step("7 revoke", "POST /ath/revoke with the agent's client credentials")
        revoked = agent.revoke()
        print("  <", _show(revoked))
        story.check("200", revoked.status_code == 200, _show(revoked))

        story.step("8 the revoked token", f"GET {api}/products again")
        again = agent.call("GET", api + "/products")
        print("  <", _show(again))
        story.check(
            "401 TOKEN_REVOKED",
            again.status_code == 401 and _code(again) == "TOKEN_REVOKED",
            _show(again),
        )


# -- the gateway story -------------------------------------------------------------------------


def gateway_story(gateway_url: str, site: AgentSite, story: Story) -> None:
    with httpx.Client(timeout=10, trust_env=False) as http:
        agent = ATHAgent(gateway_url, site, http)
        story.step("1 discovery", f"GET {gateway_url}/.well-known/ath.json")
        found = agent.discover("/.well-known/ath.json")
        print("  <", _show(found))
        providers = (
            [p.get("provider_id") for p in found.json().get("supported_providers", [])]
            if found.status_code == 200
            else []
        )
        story.check("the gateway lists the notes provider", "notes" in providers, _show(found))

        story.step("2 registration (Phase A)", "POST /ath/agents/register for notes")
        registered = agent.register(
            [{"provider_id": "notes", "scopes": ["profile:read", "notes:read", "notes:write"]}]
        )
        print("  <", _show(registered))
        story.check(
            "201 approved",
            registered.status_code == 201 and registered.json().get("agent_status") == "approved",
            _show(registered),
        )

        story.step(
            "3 authorize (Phase B starts)",
            "POST /ath/authorize for profile:read notes:read notes:write",
        )
        started = agent.authorize("notes", ["profile:read", "notes:read", "notes:write"])
        print("  <", _show(started))
        story.check("200 with an authorization_url", started.status_code == 200, _show(started))
        session = started.json().get("ath_session_id", "")

        story.step(
            "4 the user's consent at the provider",
            "bob signs in at the provider, unticks notes:write, presses Allow",
        )
        user = ScriptedUser("bob", PROVIDER_PASSWORD)
        try:
            page = user.open(started.json()["authorization_url"])
            if "/login" in user.url:
                page = user.sign_in(page)
            shown = user.page(page)
            print(f"  page: {' '.join(shown.text[:14])}")
            story.check(
                "the provider's own consent page (the agent never sees its code)",
                "Allow" in " ".join(shown.text),
                " ".join(shown.text)[:200],
            )
            done = user.submit(page, "allow", untick=["notes:write"])
            closed = user.page(done)
            print(f"  page: {' '.join(closed.text[-3:])}")
            story.check(
                "the gateway's callback: you can close this tab",
                "You can close this tab." in " ".join(closed.text),
                " ".join(closed.text)[:200],
            )
        finally:
            user.close()

        story.step("5 token (Phase B finishes)", f"POST /ath/token for {session}")
        token = agent.exchange(session)
        print("  <", _show(token, 600))
        breakdown = token.json().get("scope_intersection", {}) if token.status_code == 200 else {}
        story.check(
            "the intersection drops notes:write, which bob did not consent to",
            breakdown.get("effective") == ["profile:read", "notes:read"]
            and "notes:write" not in breakdown.get("user_consented", []),
            _show(token),
        )

        story.step("6 proxy calls", "GET /ath/proxy/notes/profile and POST /ath/proxy/notes/notes")
        profile = agent.call("GET", gateway_url + "/ath/proxy/notes/profile")
        print("  <", _show(profile))
        story.check(
            "the provider answers through the gateway with its own token",
            profile.status_code == 200 and profile.json().get("user") == "bob",
            _show(profile),
        )
        echo = agent.call("GET", gateway_url + "/ath/proxy/notes/echo")
        seen = echo.json().get("headers", {}) if echo.status_code == 200 else {}
        story.check(
            "the provider never sees the ATH token or X-ATH-Agent-ID",
            echo.status_code == 200
            and "x-ath-agent-id" not in seen
            and not str(seen.get("authorization", "")).startswith("Bearer ath_tk_"),
            _show(echo),
        )
        write = agent.call("POST", gateway_url + "/ath/proxy/notes/notes", {"text": "hello"})
        print("  <", _show(write))
        story.check(
            "POST /notes refused: notes:write is not in the token",
            write.status_code == 403 and _code(write) == "SCOPE_NOT_APPROVED",
            _show(write),
        )

        story.step("7 revoke", "POST /ath/revoke")
        revoked = agent.revoke()
        print("  <", _show(revoked))
        story.check("200", revoked.status_code == 200, _show(revoked))

        story.step("8 the revoked token", "GET /ath/proxy/notes/profile again")
        again = agent.call("GET", gateway_url + "/ath/proxy/notes/profile")
        print("  <", _show(again))
        story.check(
            "401 TOKEN_REVOKED",
            again.status_code == 401 and _code(again) == "TOKEN_REVOKED",
            _show(again),
        )


# -- running them ------------------------------------------------------------------------------


def run_ath_stories(*, framework: str = "starlette", store: str = "memory://") -> int:
    """Start ATH Shop, the OAuth provider and the gateway, run both stories; 0 when every
    outcome is what the protocol requires."""
    print("\n=== ATH: the Agent Trust Handshake (native service, then gateway) ===")
    common = ("--dev", "--framework", framework, "--store", store)
    shop = AppSpec("ath-shop", "example_apps.ath_shop", (*common, "--password", SHOP_PASSWORD))
    provider = AppSpec(
        "oauth-provider",
        "example_apps.oauth_provider",
        ("--dev", "--client-secret", GATEWAY_SECRET, "--password", PROVIDER_PASSWORD),
    )
    started = time.monotonic()
    stories = [Story("native"), Story("gateway")]
    with AgentSite() as site, running_apps([shop, provider]) as apps:
        shop_app, provider_app = apps
        gateway = AppSpec(
            "ath-gateway",
            "example_apps.ath_gateway",
            (*common, "--provider", f"notes={provider_app.url}", "--client-secret", GATEWAY_SECRET),
        )
        with running_apps([gateway]) as (gateway_app,):
            for app in (shop_app, provider_app, gateway_app):
                print(f"  {app.name:<15} {app.url}")
            print(f"  agent           {site.agent_id}")
            try:
                native_story(shop_app.url, site, stories[0])
            except (httpx.HTTPError, KeyError, ValueError, StopIteration) as exc:
                stories[0].failures.append(f"[native] step failed: {exc!r}")
            try:
                gateway_story(gateway_app.url, site, stories[1])
            except (httpx.HTTPError, KeyError, ValueError, StopIteration) as exc:
                stories[1].failures.append(f"[gateway] step failed: {exc!r}")
            failures = [f for s in stories for f in s.failures]
            if failures:
                for app in (shop_app, provider_app, gateway_app):
                    print(f"\n--- {app.name} output ---\n{app.log()[-3000:]}", file=sys.stderr)
    elapsed = time.monotonic() - started
    if failures:
        print(f"\nATH stories FAILED ({len(failures)}, {elapsed:.1f}s):", file=sys.stderr)
        for failure in failures:
            print("  " + failure, file=sys.stderr)
        return 1
    print(f"\nBoth ATH stories went as the protocol requires ({elapsed:.1f}s).")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m example_apps.ath_demo", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--framework", choices=("starlette", "flask", "django"), default="starlette"
    )
    parser.add_argument("--store", default="memory://", metavar="URI")
    args = parser.parse_args(argv)
    return story_main(
        "ATH demo", lambda: run_ath_stories(framework=args.framework, store=args.store)
    )


if __name__ == "__main__":
    sys.exit(main())
