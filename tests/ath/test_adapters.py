"""ATH through each adapter: Starlette, Flask and Django (sync and async ATH views), with the
API's sync and async views behind ``require`` / ``ath_required``.  Every adapter answers the
same requests with the same status, headers and bytes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from aauth_server.ath import ATHServer
from tests.adapters.harness_django import configure_django
from tests.ath.harness import Agent, World

Answer = tuple[int, dict[str, str], bytes]
Send = Callable[[str, str, dict[str, str], bytes], Answer]
HEADERS = ("content-type", "cache-control", "www-authenticate", "allow")


def _view_body(kind: str, user: str, scopes: list[str]) -> bytes:
    return json.dumps(
        {"kind": kind, "user": user, "scopes": scopes}, separators=(",", ":")
    ).encode()


def starlette_sender(server: ATHServer) -> Send:
    from aauth_server_starlette.ath import ATH, ath_token
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route
    from starlette.testclient import TestClient

    ath = ATH(server)

    def answer(request: Request, kind: str) -> Response:
        token = ath_token(request)
        assert token is not None
        return Response(
            _view_body(kind, token.user_id, list(token.scopes)), media_type="application/json"
        )

    @ath.require(scopes=["products:read"])
    async def products(request: Request) -> Response:
        return answer(request, "async")

    @ath.require(scopes=["cart:write"])
    def cart(request: Request) -> Response:
        return answer(request, "sync")

    @ath.require()
    def orders(request: Request) -> Response:
        return answer(request, "sync")

    app = Starlette(
        routes=[
            *ath.routes(),
            Route("/api/products", products),
            Route("/api/cart", cart, methods=["POST"]),
            Route("/api/orders", orders, methods=["POST"]),
        ]
    )
    client = TestClient(app, base_url="https://shop.example")

    def send(method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        response = client.request(method, path, headers=headers, content=body)
        return response.status_code, dict(response.headers), response.content

    return send


def flask_sender(server: ATHServer) -> Send:
    from aauth_server_flask.ath import ATH, ath_token
    from flask import Flask, Response

    app = Flask(__name__)
    ath = ATH(server, app)

    def answer(kind: str) -> Response:
        token = ath_token()
        assert token is not None
        return Response(
            _view_body(kind, token.user_id, list(token.scopes)), mimetype="application/json"
        )

    @app.get("/api/products")
    @ath.require(scopes=["products:read"])
    async def products() -> Response:
        return answer("async")

    @app.post("/api/cart")
    @ath.require(scopes=["cart:write"])
    def cart() -> Response:
        return answer("sync")

    @app.post("/api/orders")
    @ath.require()
    def orders() -> Response:
        return answer("sync")

    client = app.test_client()

    def send(method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        response = client.open(
            path, method=method, headers=headers, data=body, base_url="https://shop.example"
        )
        return response.status_code, dict(response.headers), response.get_data()

    return send


def django_sender(server: ATHServer, urlconf: str, *, asgi: bool) -> Send:
    configure_django()
    from aauth_server_django.ath import use_ath
    from django.test import AsyncClient, Client, override_settings

    use_ath(server)

    def send(method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        sent = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        content_type = headers.get("Content-Type", "application/octet-stream")
        with override_settings(ROOT_URLCONF=urlconf):
            client: Any = AsyncClient() if asgi else Client()
            call = getattr(client, method.lower())
            kwargs: dict[str, Any] = {"headers": sent}
            if method not in ("GET", "HEAD"):
                kwargs.update(data=body, content_type=content_type)
            response = async_to_sync(call)(path, **kwargs) if asgi else call(path, **kwargs)
        headers_out = {k.lower(): v for k, v in response.items()}
        return response.status_code, headers_out, response.content

    return send


@pytest.fixture(scope="module")
def granted() -> tuple[World, Agent, str]:
    agent = Agent()
    world = World(agents=(agent,))
    token = world.grant(agent, ["products:read", "cart:write"])["access_token"]
    return world, agent, token


def _senders(world: World) -> dict[str, Send]:
    return {
        "starlette": starlette_sender(world.server),
        "flask": flask_sender(world.server),
        "django": django_sender(world.server, "tests.ath.django_urls", asgi=False),
        "django-asgi": django_sender(world.server, "tests.ath.django_async_urls", asgi=True),
    }


def _requests(agent: Agent, token: str) -> list[tuple[str, str, str, dict[str, str], bytes]]:
    auth = {"Authorization": f"Bearer {token}", "X-ATH-Agent-ID": agent.agent_id}
    json_type = {"Content-Type": "application/json"}
    return [
        ("discovery", "GET", "/.well-known/ath-app.json", {}, b""),
        ("authorize without state", "POST", "/ath/authorize", json_type, b"{}"),
        (
            "register as text/plain",
            "POST",
            "/ath/agents/register",
            {"Content-Type": "text/plain"},
            b"{}",
        ),
        ("register with broken JSON", "POST", "/ath/agents/register", json_type, b'{"agent_id":'),
        ("oversized body", "POST", "/ath/authorize", json_type, b'{"x":"' + b"a" * 70_000 + b'"}'),
        ("unknown ATH path", "GET", "/ath/nowhere", {}, b""),
        ("wrong method", "GET", "/ath/token", {}, b""),
        ("read a registration unauthenticated", "GET", "/ath/agents/ath_0123", {}, b""),
        ("callback without state", "GET", "/ath/callback?code=x", {}, b""),
        ("revoke unauthenticated", "POST", "/ath/revoke", json_type, b'{"token":"ath_tk_x"}'),
        ("API without a token", "GET", "/api/products", {}, b""),
        ("API, async view", "GET", "/api/products", auth, b""),
        ("API, sync view", "POST", "/api/cart", {**auth, **json_type}, b'{"product_id":"apple"}'),
        ("API, scope not held", "POST", "/api/orders", {**auth, **json_type}, b"{}"),
        (
            "API as another agent",
            "GET",
            "/api/products",
            {**auth, "X-ATH-Agent-ID": "https://x.example/a"},
            b"",
        ),
    ]


def test_every_adapter_answers_alike(granted: tuple[World, Agent, str]) -> None:
    world, agent, token = granted
    senders = _senders(world)
    for name, method, path, headers, body in _requests(agent, token):
        answers: dict[str, tuple[int, bytes, tuple[str | None, ...]]] = {}
        for framework, send in senders.items():
            status, got_headers, content = send(method, path, headers, body)
            lowered = {k.lower(): v for k, v in got_headers.items()}
            answers[framework] = (status, content, tuple(lowered.get(h) for h in HEADERS))
        statuses = {a[0] for a in answers.values()}
        assert len(statuses) == 1, (name, answers)
        assert len({a[1] for a in answers.values()}) == 1, (name, answers)
        assert len({a[2] for a in answers.values()}) == 1, (name, answers)
        assert statuses.pop() < 500, (name, answers)


def test_sync_and_async_views_see_the_token(granted: tuple[World, Agent, str]) -> None:
    world, agent, token = granted
    auth = {"Authorization": f"Bearer {token}", "X-ATH-Agent-ID": agent.agent_id}
    for framework, send in _senders(world).items():
        status, _, body = send("GET", "/api/products", auth, b"")
        assert status == 200, (framework, body)
        assert json.loads(body) == {
            "kind": "async",
            "user": "alice",
            "scopes": ["products:read", "cart:write"],
        }
        status, _, body = send(
            "POST", "/api/cart", {**auth, "Content-Type": "application/json"}, b"{}"
        )
        assert status == 200 and json.loads(body)["kind"] == "sync", (framework, body)
        status, _, body = send(
            "POST", "/api/orders", {**auth, "Content-Type": "application/json"}, b"{}"
        )
        assert status == 403 and json.loads(body)["code"] == "SCOPE_NOT_APPROVED", (framework, body)
