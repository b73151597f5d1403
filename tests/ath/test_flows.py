"""ATH flows in process, beyond the happy path the stories walk: what each endpoint answers,
the choices docs/ath.md records, the identity-document cache, configuration that fails early,
the admin review page, user and admin revocation, and a store outage."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from aauth_server.ath import ATHConfig, ATHError, ProviderConfig, approve_subset, review
from aauth_server.ath.errors import EXTENSION_CODES, PROTOCOL_CODES
from aauth_server.errors import ConfigurationError
from aauth_server.http import HttpRequest
from aauth_server.keys.fetcher import FetchResponse
from tests.ath.harness import (
    SHOP_ROUTES,
    SHOP_SCOPES,
    Agent,
    Browser,
    World,
    code_of,
)
from tests.redis_server import RedisProcess

AUD = "https://shop.example"


def _json(response: Any) -> Any:
    return json.loads(response.body)


def test_sixteen_protocol_codes_with_their_statuses() -> None:
    assert len(PROTOCOL_CODES) == 16
    assert PROTOCOL_CODES["INVALID_ATTESTATION"] == 401
    assert PROTOCOL_CODES["OAUTH_ERROR"] == 502
    assert not set(PROTOCOL_CODES) & set(EXTENSION_CODES)
    with pytest.raises(ValueError):
        ATHError("NOT_A_CODE", "x")


def test_discovery_documents() -> None:
    native = World()
    doc = _json(native.send("GET", "/.well-known/ath-app.json"))
    assert doc == {
        "ath_version": "0.1",
        "app_id": "com.example.shop",
        "name": "ATH Shop",
        "api_base": "https://shop.example/api",
        "auth": {
            "type": "oauth2",
            "authorization_endpoint": "https://shop.example/ath/consent",
            "token_endpoint": "https://shop.example/ath/oauth/token",
            "scopes_supported": list(SHOP_SCOPES),
            "agent_attestation_required": True,
        },
    }
    assert native.server.handle(HttpRequest("GET", AUD + "/.well-known/ath.json")) is None
    gateway = World(mode="gateway")
    gdoc = _json(gateway.send("GET", "/.well-known/ath.json"))
    assert gdoc["ath_version"] == "0.1"
    assert gdoc["gateway_id"] == "https://gateway.example"
    assert gdoc["agent_registration_endpoint"] == "https://gateway.example/ath/agents/register"
    assert [p["provider_id"] for p in gdoc["supported_providers"]] == ["notes", "calendar"]
    assert gdoc["supported_providers"][0]["auth_mode"] == "OAUTH2"


def test_registration_answer_and_secret_stored_only_as_hash() -> None:
    agent = Agent()
    world = World(agents=(agent,), approval=approve_subset({"products:read"}))
    answer = world.register(agent, ["products:read", "orders:write", "made:up"])
    assert answer["agent_status"] == "approved"
    assert answer["client_id"].startswith("ath_") and answer["client_secret"].startswith(
        "ath_secret_"
    )
    (provider,) = answer["approved_providers"]
    assert provider["approved_scopes"] == ["products:read"]
    assert provider["denied_scopes"] == ["orders:write", "made:up"]
    assert "not offered" in provider["denial_reason"]
    assert answer["approval_expires"] == "2028-01-15T08:00:00Z"  # T0 + 365 days
    record = world.server.store.get("ath-agent", world.server.ctx.key(answer["client_id"]))
    assert record is not None
    assert answer["client_secret"] not in json.dumps(dict(record.data))
    assert (
        "agent_registered",
        {"agent_id": agent.agent_id, "client_id": answer["client_id"], "status": "approved"},
    ) in world.events


def test_sdk_and_ts_client_attestation_shapes_and_pem_keys() -> None:
    # ath-sdk: typ JWT, iss = sub = agent_id; the TS client: no typ; a domain iss; a PEM key.
    pem_agent = Agent("https://pem.example/agent.json", pem=True)
    world = World(agents=(pem_agent,))
    body = world.register_body(pem_agent)
    body["agent_attestation"] = pem_agent.attest(AUD, now=world.now, typ=False, iss="pem.example")
    assert world.post("/ath/agents/register", body).status == 201


def test_get_own_registration_with_basic_or_attestation() -> None:
    agent = Agent()
    world = World(agents=(agent,))
    world.register(agent)
    basic = base64.b64encode(f"{agent.client_id}:{agent.client_secret}".encode()).decode()
    mine = world.send(
        "GET", f"/ath/agents/{agent.client_id}", headers=[("Authorization", f"Basic {basic}")]
    )
    assert mine.status == 200
    view = _json(mine)
    assert view["agent_id"] == agent.agent_id and view["agent_status"] == "approved"
    assert "client_secret" not in view and "secret_sha256" not in view
    attested = world.send(
        "GET",
        f"/ath/agents/{agent.client_id}",
        headers=[("X-ATH-Agent-Attestation", agent.attest(AUD, now=world.now))],
    )
    assert attested.status == 200 and _json(attested)["client_id"] == agent.client_id


def test_callback_redirects_to_a_registered_external_redirect_uri() -> None:
    agent = Agent()
    world = World(agents=(agent,))
    world.register(agent, redirect_uris=["https://agent.example/done"])
    started = world.authorize(
        agent, ["products:read"], user_redirect_uri="https://agent.example/done"
    )
    browser = Browser()
    page = world.send(
        "GET", started["authorization_url"][len(AUD) :], headers=[("Cookie", "shop_user=alice")]
    )
    browser.take(page)
    browser.cookies["shop_user"] = "alice"
    # The consent page admits the agent's origin in form-action (the redirect after the post).
    assert "form-action 'self' https://agent.example" in str(page.header("content-security-policy"))
    done = world.consent(started, browser)
    assert done.status == 303
    location = urlsplit(str(done.header("location")))
    assert (location.scheme, location.netloc, location.path) == ("https", "agent.example", "/done")
    assert parse_qs(location.query) == {
        "session_id": [started["ath_session_id"]],
        "success": ["true"],
    }
    denied_start = world.authorize(
        agent, ["products:read"], user_redirect_uri="https://agent.example/done"
    )
    denied = world.consent(denied_start, Browser(), action="deny")
    query = parse_qs(urlsplit(str(denied.header("location"))).query)
    assert query == {"error": ["access_denied"], "ath_session_id": [denied_start["ath_session_id"]]}


def test_sdk_default_redirect_lands_on_the_close_this_tab_page() -> None:
    world = World()
    page = world.send("GET", "/ath/callback?session_id=ath_sess_x&success=true")
    assert page.status == 200 and b"You can close this tab." in page.body


def test_token_response_and_placeholder_code() -> None:
    agent = Agent()
    world = World(agents=(agent,))
    world.register(agent)
    started = world.authorize(agent, ["products:read", "cart:write"])
    world.consent(started, Browser())
    answer = world.token(agent, started["ath_session_id"], code="placeholder")
    assert answer.status == 200
    body = _json(answer)
    assert set(body) == {
        "access_token",
        "token_type",
        "expires_in",
        "effective_scopes",
        "provider_id",
        "agent_id",
        "scope_intersection",
    }
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["access_token"].startswith("ath_tk_")
    assert answer.header("cache-control") == "no-store"


def test_native_oauth_token_endpoint_checks_client_and_pkce() -> None:
    world = World()
    config = world.config
    secret = config.native_client_secret()
    basic = base64.b64encode(f"{config.native_client_id}:{secret}".encode()).decode()

    def post(form: dict[str, str], auth: str = basic) -> Any:
        return world.send(
            "POST",
            "/ath/oauth/token",
            headers=[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Authorization", f"Basic {auth}"),
            ],
            raw=urlencode(form).encode(),
        )

    wrong_client = base64.b64encode(b"someone:else").decode()
    assert (
        _json(post({"grant_type": "authorization_code"}, wrong_client))["error"] == "invalid_client"
    )
    assert _json(post({"grant_type": "password"}))["error"] == "unsupported_grant_type"
    assert (
        _json(post({"grant_type": "authorization_code", "code": "nope"}))["error"]
        == "invalid_grant"
    )


def test_admin_reviews_a_pending_agent() -> None:
    agent = Agent()
    world = World(agents=(agent,), approval=review())
    answer = world.register(agent, ["products:read"])
    assert answer["agent_status"] == "pending"
    refused = world.post("/ath/authorize", world.authorize_body(agent, ["products:read"]))
    assert code_of(refused) == "AGENT_UNAPPROVED"
    assert world.send("GET", "/ath/admin").status == 403
    admin = [("X-Admin-Key", "letmein")]
    page = world.send("GET", "/ath/admin", headers=admin)
    assert page.status == 200 and agent.client_id is not None
    assert agent.client_id.encode() in page.body and b"Shop Helper" in page.body
    browser = Browser()
    browser.take(page)
    html = page.body.decode()
    csrf = html.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    headers = [
        *admin,
        *browser.header(),
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Origin", AUD),
    ]
    forged = world.send(
        "POST",
        "/ath/admin/decide",
        headers=headers,
        raw=urlencode({"client_id": agent.client_id, "action": "approve", "csrf": "x"}).encode(),
    )
    assert forged.status == 403
    decided = world.send(
        "POST",
        "/ath/admin/decide",
        headers=headers,
        raw=urlencode({"client_id": agent.client_id, "action": "approve", "csrf": csrf}).encode(),
    )
    assert decided.status == 303
    assert (
        world.post("/ath/authorize", world.authorize_body(agent, ["products:read"])).status == 200
    )
    after = world.send("GET", "/ath/admin", headers=[*admin, *browser.header()])
    assert agent.client_id.encode() not in after.body


def test_user_and_admin_revocation() -> None:
    agent = Agent()
    world = World(agents=(agent,))
    token = world.grant(agent, ["products:read"], user="alice")["access_token"]
    as_alice = [("Cookie", "shop_user=alice"), ("Origin", AUD)]
    assert world.post("/ath/revoke", {"token": token}, headers=as_alice).status == 200
    with pytest.raises(ATHError) as revoked:
        world.api("GET", "/products", token, agent)
    assert revoked.value.code == "TOKEN_REVOKED"
    second = world.grant(agent, ["products:read"], user="bob")["access_token"]
    assert (
        world.post("/ath/revoke", {"token": second}, headers=[("X-Admin-Key", "letmein")]).status
        == 200
    )
    with pytest.raises(ATHError):
        world.api("GET", "/products", second, agent)
    kinds = [(e, f.get("by")) for e, f in world.events if e == "token_revoked"]
    assert kinds == [("token_revoked", "user"), ("token_revoked", "admin")]


def test_audit_events_never_carry_secrets() -> None:
    agent = Agent()
    world = World(agents=(agent,))
    token = world.grant(agent, ["products:read"])["access_token"]
    world.post(
        "/ath/revoke",
        {"token": token, "client_id": agent.client_id, "client_secret": agent.client_secret},
    )
    names = {e for e, _ in world.events}
    assert {"agent_registered", "authorization_started", "access_granted", "token_revoked"} <= names
    text = json.dumps(world.events)
    assert token not in text and str(agent.client_secret) not in text


def test_identity_document_cache_and_refetch_on_key_rotation() -> None:
    agent = Agent()
    world = World(agents=(agent,))
    world.register(agent)
    calls = world.fetcher.calls
    assert calls.count(agent.agent_id) == 1
    world.authorize(agent, ["products:read"])
    assert calls.count(agent.agent_id) == 1  # cached
    world.clock.advance(301)
    world.authorize(agent, ["products:read"])
    assert calls.count(agent.agent_id) == 2  # at most five minutes
    # The agent rotates its key: the cached document fails the signature, one re-fetch.
    rotated = Agent(agent.agent_id)
    agent.key, agent.jwk, agent.pem = rotated.key, rotated.jwk, rotated.pem
    world.publish(agent)
    world.authorize(agent, ["products:read"])
    assert calls.count(agent.agent_id) == 3
    # A forged signature right after: no second re-fetch within the minute.
    from joserfc.jwk import ECKey

    forged = world.authorize_body(agent, ["products:read"])
    forged["agent_attestation"] = agent.attest(AUD, now=world.now, key=ECKey.generate_key("P-256"))
    assert code_of(world.post("/ath/authorize", forged)) == "INVALID_ATTESTATION"
    assert calls.count(agent.agent_id) == 3


def test_identity_document_max_age_shortens_the_cache() -> None:
    agent = Agent()
    world = World(agents=(agent,))
    document = json.dumps(agent.document()).encode()
    world.fetcher.documents[agent.agent_id] = FetchResponse(
        200, {"cache-control": "max-age=30"}, document
    )
    world.register(agent)
    world.clock.advance(31)
    world.authorize(agent, ["products:read"])
    assert world.fetcher.calls.count(agent.agent_id) == 2


def test_skipping_signature_checks_needs_the_development_setting() -> None:
    providers = (ProviderConfig("app", "App", {"a:read": "Read"}),)
    common: dict[str, Any] = dict(
        mode="native",
        name="App",
        app_id="app",
        providers=providers,
        authenticate=lambda r: None,
        page_secret=b"s" * 32,
    )
    with pytest.raises(ConfigurationError, match="dev_loopback"):
        ATHConfig(
            base_url="https://app.example", insecure_skip_attestation_signature=True, **common
        )
    ATHConfig(
        base_url="http://127.0.0.1:8000",
        dev_loopback=True,
        insecure_skip_attestation_signature=True,
        **common,
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"base_url": "http://app.example"}, "https://"),
        ({"base_url": "http://127.0.0.1:8000"}, "https://"),
        ({"page_secret": b"short"}, "page_secret"),
        ({"authenticate": None}, "authenticate"),
        ({"app_id": None}, "app_id"),
        (
            {
                "providers": (
                    ProviderConfig("app", "App", {"a:read": "R"}, {"b:write": ["POST /b"]}),
                )
            },
            "not offered",
        ),
        (
            {
                "providers": (
                    ProviderConfig("app", "App", {"a:read": "R"}, {"a:read": ["FETCH /a"]}),
                )
            },
            "METHOD",
        ),
        (
            {
                "providers": (
                    ProviderConfig("app", "App", {"a:read": "R"}, {"a:read": ["GET /a/../b"]}),
                )
            },
            "dot",
        ),
    ],
)
def test_configuration_fails_early(change: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = dict(
        mode="native",
        base_url="https://app.example",
        name="App",
        app_id="app",
        providers=(ProviderConfig("app", "App", {"a:read": "Read"}),),
        authenticate=lambda r: None,
        page_secret=b"s" * 32,
    )
    values.update(change)
    with pytest.raises(ConfigurationError, match=message):
        ATHConfig(**values)


def test_gateway_provider_without_endpoints_fails_early() -> None:
    with pytest.raises(ConfigurationError, match="lacks"):
        ATHConfig(
            mode="gateway",
            base_url="https://gw.example",
            name="GW",
            providers=(ProviderConfig("p", "P", {"a": "A"}),),
        )


def test_scope_map_patterns() -> None:
    from aauth_server.ath.routes import ScopeMap

    scope_map = ScopeMap.build(SHOP_ROUTES, SHOP_SCOPES)
    assert scope_map.scopes_for("GET", "/products/42") == {"products:read"}
    assert scope_map.scopes_for("HEAD", "/products") == {"products:read"}
    assert scope_map.scopes_for("GET", "/products/42/reviews") == frozenset()
    assert scope_map.scopes_for("POST", "/cart") == {"cart:write"}
    wide = ScopeMap.build({"r": ["GET /files/**"]}, ["r"])
    assert wide.scopes_for("GET", "/files") == {"r"}
    assert wide.scopes_for("GET", "/files/a/b/c") == {"r"}


def test_a_store_outage_is_a_503_with_retry_after_never_a_500() -> None:
    with RedisProcess(appendonly=False) as redis:
        agent = Agent()
        world = World(agents=(agent,), store=redis.url)
        world.register(agent)
        redis.stop()
        answer = world.post("/ath/authorize", world.authorize_body(agent, ["products:read"]))
        assert (answer.status, code_of(answer)) == (503, "SERVICE_UNAVAILABLE")
        assert answer.header("retry-after") is not None
        world.server.close()


def test_development_skip_mode_checks_claims_and_replay_but_fetches_nothing() -> None:
    from aauth_server.ath import ATHConfig as Config
    from aauth_server.ath import ATHServer
    from aauth_server.clock import FixedClock
    from aauth_server.keys.fetcher import StaticFetcher
    from tests.ath.harness import T0, user_authenticate

    clock = FixedClock(T0)
    fetcher = StaticFetcher({})
    config = Config(
        mode="native",
        base_url="http://127.0.0.1:8000",
        name="Dev",
        app_id="dev",
        providers=(ProviderConfig("dev", "Dev", {"a:read": "Read"}),),
        authenticate=user_authenticate,
        page_secret=b"s" * 32,
        dev_loopback=True,
        insecure_skip_attestation_signature=True,
        clock=clock,
        fetcher=fetcher,
    )
    server = ATHServer(config)
    agent = Agent("http://127.0.0.1:9/agent.json")
    attestation = agent.attest("http://127.0.0.1:8000", now=T0)
    body = {
        "agent_id": agent.agent_id,
        "agent_attestation": attestation,
        "requested_providers": [{"provider_id": "dev", "scopes": ["a:read"]}],
    }

    def post(payload: dict[str, Any]) -> Any:
        request = HttpRequest(
            "POST",
            "http://127.0.0.1:8000/ath/agents/register",
            [("Content-Type", "application/json")],
            json.dumps(payload).encode(),
        )
        return server.handle(request)

    assert post(body).status == 201
    assert fetcher.calls == []  # no identity document was fetched
    assert code_of(post(body)) == "INVALID_ATTESTATION"  # the jti is still remembered
    expired = {
        **body,
        "agent_id": "http://127.0.0.1:9/b.json",
        "agent_attestation": Agent("http://127.0.0.1:9/b.json").attest(
            "http://127.0.0.1:8000", now=T0 - 7200
        ),
    }
    assert code_of(post(expired)) == "INVALID_ATTESTATION"


def test_consent_page_escapes_agent_supplied_text() -> None:
    agent = Agent(name='<script>window.pwned=1</script>"><img src=x onerror=alert(1)>')
    world = World(agents=(agent,))
    world.register(
        agent, purpose="<b>buy</b> & <i>sell</i>", developer={"name": "<svg onload=x>", "id": "d"}
    )
    started = world.authorize(agent, ["products:read"])
    page = world.send(
        "GET", started["authorization_url"][len(AUD) :], headers=[("Cookie", "shop_user=alice")]
    )
    html = page.body.decode()
    assert page.status == 200
    assert (
        "<script>window.pwned" not in html
        and "<img src=x" not in html
        and "<svg onload" not in html
    )
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in html
    assert "&lt;b&gt;buy&lt;/b&gt; &amp; &lt;i&gt;sell&lt;/i&gt;" in html
    assert "script-src 'self'" in str(page.header("content-security-policy"))
