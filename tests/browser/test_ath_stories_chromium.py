"""Both ATH stories end to end on real uvicorn servers, the user's consent in headless Chromium.

Native: ATH Shop in Starlette, Flask and Django, each on memory:// and on the suite's Redis.
Gateway: the example gateway in front of the example OAuth provider (authlib's server side),
on memory:// and on Redis.  The agent is :class:`example_apps.ath_demo.ATHAgent` (it signs as
the published SDKs do) with its identity document served on loopback; the person is a
Chromium page (Debian's /usr/bin/chromium).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from example_apps._procs import AppSpec, running_apps
from example_apps.ath_demo import AgentSite, ATHAgent
from tests.browser.test_consent_chromium import CHROMIUM, CHROMIUM_ARGS, STEP_MS
from tests.redis_server import ensure_redis

SHOP_PW = "alice-pw-chromium"
BOB_PW = "bob-pw-chromium"
GW_SECRET = "gw-secret-chromium"
APP_ID = "com.example.ath-shop"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def site() -> Iterator[AgentSite]:
    with AgentSite() as served:
        yield served


def _store(kind: str) -> str:
    return ensure_redis() if kind == "redis" else "memory://"


def _sign_in(page: Page, username: str, password: str) -> None:
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("#login")


@pytest.mark.parametrize("store", ["memory", "redis"])
@pytest.mark.parametrize("framework", ["starlette", "flask", "django"])
def test_native_story(browser: Browser, site: AgentSite, framework: str, store: str) -> None:
    spec = AppSpec(
        f"shop-{framework}",
        "example_apps.ath_shop",
        ("--dev", "--framework", framework, "--store", _store(store), "--password", SHOP_PW),
    )
    with running_apps([spec]) as (shop,), httpx.Client(timeout=10, trust_env=False) as http:
        agent = ATHAgent(shop.url, site, http)
        discovered = agent.discover("/.well-known/ath-app.json").json()
        assert discovered["app_id"] == APP_ID and discovered["api_base"] == shop.url + "/api"
        registered = agent.register(
            [{"provider_id": APP_ID, "scopes": ["products:read", "cart:write", "orders:write"]}]
        )
        assert registered.status_code == 201, registered.text
        started = agent.authorize(APP_ID, ["products:read", "cart:write"])
        assert started.status_code == 200, started.text
        url = started.json()["authorization_url"]

        page = browser.new_page()
        try:
            page.set_default_timeout(STEP_MS)
            page.goto(url)
            page.wait_for_url("**/login?**")
            _sign_in(page, "alice", SHOP_PW)
            page.wait_for_selector("#ath-consent")
            assert page.locator("#headline").inner_text() == (
                "Shop Helper wants to access your account"
            )
            assert page.locator(".developer").inner_text().startswith("Demo Agents Ltd")
            scopes = page.locator(".scope").all_inner_texts()
            assert scopes == [
                "products:read: See the product catalogue",
                "cart:write: Add items to your shopping cart",
            ]
            assert page.locator("#authorize").inner_text() == "Authorize"
            assert page.locator("#deny").inner_text() == "Deny"
            page.click("#authorize")
            page.wait_for_selector("#closed[data-outcome=granted]")
            assert "You can close this tab." in page.inner_text("#closed")
        finally:
            page.close()

        token = agent.exchange(started.json()["ath_session_id"])
        assert token.status_code == 200, token.text
        assert token.json()["scope_intersection"] == {
            "agent_approved": ["products:read", "cart:write", "orders:write"],
            "user_consented": ["products:read", "cart:write"],
            "effective": ["products:read", "cart:write"],
        }
        products = agent.call("GET", shop.url + "/api/products")
        assert products.status_code == 200 and products.json()["for"] == "alice", products.text
        cart = agent.call("POST", shop.url + "/api/cart", {"product_id": "bread", "quantity": 1})
        assert cart.status_code == 200 and cart.json()["user"] == "alice", cart.text
        order = agent.call("POST", shop.url + "/api/orders")
        assert (order.status_code, order.json()["code"]) == (403, "SCOPE_NOT_APPROVED")
        assert agent.revoke().status_code == 200
        refused = agent.call("GET", shop.url + "/api/products")
        assert (refused.status_code, refused.json()["code"]) == (401, "TOKEN_REVOKED")


def test_native_deny_in_chromium(browser: Browser, site: AgentSite) -> None:
    spec = AppSpec("shop", "example_apps.ath_shop", ("--dev", "--password", SHOP_PW))
    with running_apps([spec]) as (shop,), httpx.Client(timeout=10, trust_env=False) as http:
        agent = ATHAgent(shop.url, site, http)
        assert (
            agent.register([{"provider_id": "ath-shop", "scopes": ["products:read"]}]).status_code
            == 201
        )
        started = agent.authorize("ath-shop", ["products:read"]).json()
        page = browser.new_page()
        try:
            page.set_default_timeout(STEP_MS)
            page.goto(started["authorization_url"])
            page.wait_for_url("**/login?**")
            _sign_in(page, "alice", SHOP_PW)
            page.click("#deny")
            page.wait_for_selector("#closed[data-outcome=denied]")
        finally:
            page.close()
        denied = agent.exchange(started["ath_session_id"])
        assert (denied.status_code, denied.json()["code"]) == (403, "USER_DENIED")


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_gateway_story(browser: Browser, site: AgentSite, store: str) -> None:
    provider_spec = AppSpec(
        "provider",
        "example_apps.oauth_provider",
        ("--dev", "--client-secret", GW_SECRET, "--password", BOB_PW),
    )
    with running_apps([provider_spec]) as (provider,):
        gateway_spec = AppSpec(
            "gateway",
            "example_apps.ath_gateway",
            (
                "--dev",
                "--store",
                _store(store),
                "--provider",
                f"notes={provider.url}",
                "--client-secret",
                GW_SECRET,
            ),
        )
        with (
            running_apps([gateway_spec]) as (gateway,),
            httpx.Client(timeout=10, trust_env=False) as http,
        ):
            agent = ATHAgent(gateway.url, site, http)
            discovered = agent.discover("/.well-known/ath.json").json()
            assert [p["provider_id"] for p in discovered["supported_providers"]] == ["notes"]
            scopes = ["profile:read", "notes:read", "notes:write"]
            assert agent.register([{"provider_id": "notes", "scopes": scopes}]).status_code == 201
            started = agent.authorize("notes", scopes)
            assert started.status_code == 200, started.text

            page = browser.new_page()
            try:
                page.set_default_timeout(STEP_MS)
                page.goto(started.json()["authorization_url"])
                page.wait_for_url(provider.url + "/login?**")
                _sign_in(page, "bob", BOB_PW)
                page.wait_for_selector("#allow")
                page.uncheck("input[value='notes:write']")
                page.click("#allow")
                page.wait_for_selector("#closed[data-outcome=granted]")
                assert page.url.startswith(gateway.url + "/ath/callback")
            finally:
                page.close()

            token = agent.exchange(started.json()["ath_session_id"])
            assert token.status_code == 200, token.text
            breakdown = token.json()["scope_intersection"]
            assert breakdown["user_consented"] == ["profile:read", "notes:read"]
            assert breakdown["effective"] == ["profile:read", "notes:read"]
            assert "upstream" not in token.text and "access_token" in token.json()

            profile = agent.call("GET", gateway.url + "/ath/proxy/notes/profile")
            assert profile.status_code == 200 and profile.json()["user"] == "bob", profile.text
            echo = agent.call("GET", gateway.url + "/ath/proxy/notes/echo?x=1")
            seen = echo.json()
            assert seen["path"] == "/api/echo?x=1"
            assert "x-ath-agent-id" not in seen["headers"]
            assert seen["headers"]["authorization"].startswith("Bearer ")
            assert agent.token is not None and agent.token not in seen["headers"]["authorization"]
            write = agent.call("POST", gateway.url + "/ath/proxy/notes/notes", {"text": "hi"})
            assert (write.status_code, write.json()["code"]) == (403, "SCOPE_NOT_APPROVED")
            assert agent.revoke().status_code == 200
            refused = agent.call("GET", gateway.url + "/ath/proxy/notes/profile")
            assert (refused.status_code, refused.json()["code"]) == (401, "TOKEN_REVOKED")
