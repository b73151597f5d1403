"""ATH Shop: a native ATH service with a demo user, in Starlette, Flask or Django.

    python -m example_apps.ath_shop --host 127.0.0.1 --port 8020 --dev \
        [--framework starlette|flask|django] [--store URI] [--approve all|subset|pending] \
        [--password PW] [--admin-password PW] [--base-url URL] [--page-secret HEX]

Agents discover it at ``/.well-known/ath-app.json``, register at ``/ath/agents/register`` and
call ``GET /api/products`` (``products:read``), ``POST /api/cart`` (``cart:write``) and
``POST /api/orders`` (``orders:write``) with the ATH token they get.  The demo user is
``alice`` (password ``--password`` or generated and printed); ``admin`` reviews pending
agents at ``/ath/admin`` when ``--approve pending``.  ``--approve subset`` approves
``products:read`` and ``cart:write`` only.
"""

from __future__ import annotations

import argparse
import secrets
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aauth_server.ath import (
    ApprovalPolicy,
    ATHConfig,
    ATHServer,
    ProviderConfig,
    TokenInfo,
    approve_all,
    approve_subset,
    review,
)
from aauth_server.http import HttpRequest, HttpResponse, json_bytes
from aauth_server.pagekit import origin_of
from aauth_server.person.pages import DemoLogin

from ._serving import bind, serve_uvicorn

APP_ID = "com.example.ath-shop"
FRAMEWORKS = ("starlette", "flask", "django")
SCOPES = {
    "products:read": "See the product catalogue",
    "cart:write": "Add items to your shopping cart",
    "orders:write": "Place orders in your name",
}
#: scope -> operations it allows, relative to api_base (/api)
ROUTES = {
    "products:read": ["GET /products"],
    "cart:write": ["POST /cart"],
    "orders:write": ["POST /orders"],
}
PRODUCTS = [
    {"id": "apple", "name": "Apples (1 kg)", "price": 3.2},
    {"id": "bread", "name": "Sourdough bread", "price": 4.5},
    {"id": "coffee", "name": "Coffee beans (250 g)", "price": 7.9},
]
APPROVALS: dict[str, Callable[[], ApprovalPolicy]] = {
    "all": approve_all,
    "subset": lambda: approve_subset({"products:read", "cart:write"}),
    "pending": review,
}


@dataclass
class Shop:
    """The service: its ATH server, its login, and the carts and orders it keeps."""

    server: ATHServer
    login: DemoLogin
    password: str
    admin_password: str
    carts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    orders: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # Framework-neutral handlers: each adapter's view calls one with the validated token.

    def products(self, token: TokenInfo) -> tuple[int, Any]:
        return 200, {"products": PRODUCTS, "for": token.user_id}

    def add_to_cart(self, token: TokenInfo, body: bytes) -> tuple[int, Any]:
        item = _json_object(body)
        product = next((p for p in PRODUCTS if p["id"] == item.get("product_id")), None)
        quantity = item.get("quantity", 1)
        if product is None or not isinstance(quantity, int) or not 1 <= quantity <= 99:
            return 400, {"error": "unknown product or bad quantity"}
        with self.lock:
            cart = self.carts.setdefault(token.user_id, [])
            cart.append({"product_id": product["id"], "quantity": quantity})
            return 200, {"cart": list(cart), "user": token.user_id}

    def place_order(self, token: TokenInfo) -> tuple[int, Any]:
        with self.lock:
            cart = self.carts.pop(token.user_id, [])
            if not cart:
                return 409, {"error": "the cart is empty"}
            order = {
                "order_id": "ord_" + secrets.token_hex(4),
                "items": cart,
                "agent": token.agent_id,
            }
            self.orders.setdefault(token.user_id, []).append(order)
            return 201, order


def _json_object(body: bytes) -> dict[str, Any]:
    import json

    try:
        value = json.loads(body or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def build_parser(prog: str = "python -m example_apps.ath_shop") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8020)
    parser.add_argument("--dev", action="store_true", help="allow loopback http:// identifiers")
    parser.add_argument("--base-url", help="public base URL (default with --dev: this server)")
    parser.add_argument("--framework", choices=FRAMEWORKS, default="starlette")
    parser.add_argument("--store", default="memory://", metavar="URI", help="memory:// or redis://")
    parser.add_argument(
        "--approve", choices=sorted(APPROVALS), default="all", help="Phase A policy"
    )
    parser.add_argument("--password", help="alice's password (default: generated and printed)")
    parser.add_argument("--admin-password", help="admin's password (default: generated)")
    parser.add_argument(
        "--page-secret",
        metavar="HEX",
        help="64+ hex digits keying page forms and sign-in cookies; workers behind one "
        "base URL must share it (default: generated)",
    )
    return parser


def base_url(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    if args.base_url is None and not args.dev:
        parser.error("--base-url is required unless --dev is given")
    return str(args.base_url or f"http://127.0.0.1:{args.port}")


def build(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Shop:
    secret = secrets.token_bytes(32)
    if args.page_secret is not None:
        try:
            secret = bytes.fromhex(args.page_secret)
        except ValueError:
            parser.error("--page-secret must be hex digits")
        if len(secret) < 32:
            parser.error("--page-secret must hold at least 32 bytes (64 hex digits)")
    password = args.password or secrets.token_urlsafe(12)
    admin_password = args.admin_password or secrets.token_urlsafe(12)
    login = DemoLogin(
        {"alice": password, "admin": admin_password},
        secret,
        server_name="ATH Shop",
        default_next="/",
    )

    def admin(request: HttpRequest) -> str | None:
        return "admin" if login.authenticate(request) == "admin" else None

    config = ATHConfig(
        mode="native",
        base_url=base_url(args, parser),
        name="ATH Shop",
        app_id=APP_ID,
        providers=(ProviderConfig(APP_ID, "ATH Shop", SCOPES, ROUTES),),
        provider_aliases=("ath-shop", "default"),
        approval=APPROVALS[args.approve](),
        authenticate=login.authenticate,
        admin_authenticate=admin,
        page_secret=secret,
        store=args.store,
        dev_loopback=args.dev,
    )
    return Shop(ATHServer(config), login, password, admin_password)


def home(shop: Shop, request: HttpRequest) -> HttpResponse:
    user = shop.login.authenticate(request)
    text = f"ATH Shop. Signed in as {user}." if user else "ATH Shop. Sign in at /login."
    return HttpResponse(200, [("Content-Type", "text/plain; charset=utf-8")], text.encode())


def _answer(result: tuple[int, Any]) -> HttpResponse:
    status, payload = result
    return HttpResponse(status, [("Content-Type", "application/json")], json_bytes(payload))


# -- Starlette ---------------------------------------------------------------------------------


def starlette_app(shop: Shop) -> Any:
    from aauth_server_starlette.ath import ATH, ath_token
    from aauth_server_starlette.convert import raw_target, to_response
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    ath = ATH(shop.server)
    base = origin_of(shop.server.config.base_url)

    async def neutral(request: Request) -> HttpRequest:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]]
        return HttpRequest(
            request.method, base + raw_target(request), headers, await request.body()
        )

    def token(request: Request) -> TokenInfo:
        found = ath_token(request)
        assert found is not None  # @ath.require put it there
        return found

    @ath.require(scopes=["products:read"])
    async def products(request: Request) -> Response:
        return to_response(_answer(shop.products(token(request))))

    @ath.require(scopes=["cart:write"])
    async def cart(request: Request) -> Response:
        return to_response(_answer(shop.add_to_cart(token(request), await request.body())))

    @ath.require(scopes=["orders:write"])
    def orders(request: Request) -> Response:  # a sync endpoint: run in the threadpool
        return to_response(_answer(shop.place_order(token(request))))

    async def login(request: Request) -> Response:
        answer = await shop.login.ahandle(await neutral(request))
        assert answer is not None
        return to_response(answer)

    async def index(request: Request) -> Response:
        return to_response(home(shop, await neutral(request)))

    return Starlette(
        routes=[
            *ath.routes(),
            Route("/", index),
            Route("/login", login, methods=["GET", "POST"]),
            Route("/api/products", products, methods=["GET"]),
            Route("/api/cart", cart, methods=["POST"]),
            Route("/api/orders", orders, methods=["POST"]),
        ],
        lifespan=ath.lifespan,
    )


# -- Flask -------------------------------------------------------------------------------------


def flask_app(shop: Shop) -> Any:
    from aauth_server_flask.ath import ATH, ath_token
    from aauth_server_flask.convert import raw_target, to_flask_response
    from flask import Flask, Response, request

    app = Flask(__name__)
    ath = ATH(shop.server, app)
    base = origin_of(shop.server.config.base_url)

    def neutral() -> HttpRequest:
        target = raw_target(request.environ)
        return HttpRequest(
            request.method, base + target, list(request.headers.items()), request.get_data()
        )

    def token() -> TokenInfo:
        found = ath_token()
        assert found is not None
        return found

    @app.get("/api/products")
    @ath.require(scopes=["products:read"])
    async def products() -> Response:  # an async view
        return to_flask_response(_answer(shop.products(token())))

    @app.post("/api/cart")
    @ath.require(scopes=["cart:write"])
    def cart() -> Response:
        return to_flask_response(_answer(shop.add_to_cart(token(), request.get_data())))

    @app.post("/api/orders")
    @ath.require(scopes=["orders:write"])
    def orders() -> Response:
        return to_flask_response(_answer(shop.place_order(token())))

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Response:
        answer = shop.login.handle(neutral())
        assert answer is not None
        return to_flask_response(answer)

    @app.get("/")
    def index() -> Response:
        return to_flask_response(home(shop, neutral()))

    return app


# -- Django ------------------------------------------------------------------------------------

#: Django's ROOT_URLCONF is this module; django_app fills it once Django is set up.
urlpatterns: list[Any] = []


def django_app(shop: Shop, host: str) -> Any:
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=shop.server.config.dev_loopback,
        ALLOWED_HOSTS=[host, "127.0.0.1", "localhost"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["aauth_server_django"],
        MIDDLEWARE=[],
        DATA_UPLOAD_MAX_MEMORY_SIZE=shop.server.config.max_body,
    )
    django.setup()
    from aauth_server_django.ath import ath_required, ath_token, use_ath
    from aauth_server_django.convert import raw_target, request_headers, to_django
    from django.core.asgi import get_asgi_application
    from django.http import HttpRequest as DjangoRequest
    from django.http.response import HttpResponseBase
    from django.urls import include, path
    from django.views.decorators.csrf import csrf_exempt

    use_ath(shop.server)
    base = origin_of(shop.server.config.base_url)

    def neutral(request: DjangoRequest) -> HttpRequest:
        method = request.method or "GET"
        return HttpRequest(
            method, base + raw_target(request), request_headers(request), request.body
        )

    def token(request: DjangoRequest) -> TokenInfo:
        found = ath_token(request)
        assert found is not None
        return found

    @ath_required(scopes=["products:read"])
    async def products(request: DjangoRequest) -> HttpResponseBase:  # an async view
        return to_django(_answer(shop.products(token(request))))

    @ath_required(scopes=["cart:write"])
    def cart(request: DjangoRequest) -> HttpResponseBase:
        return to_django(_answer(shop.add_to_cart(token(request), request.body)))

    @ath_required(scopes=["orders:write"])
    def orders(request: DjangoRequest) -> HttpResponseBase:
        return to_django(_answer(shop.place_order(token(request))))

    @csrf_exempt  # DemoLogin carries its own CSRF token bound to a pre-session cookie
    def login(request: DjangoRequest) -> HttpResponseBase:
        answer = shop.login.handle(neutral(request))
        assert answer is not None
        return to_django(answer)

    def index(request: DjangoRequest) -> HttpResponseBase:
        return to_django(home(shop, neutral(request)))

    urlpatterns.extend(
        [
            path("api/products", products),
            path("api/cart", cart),
            path("api/orders", orders),
            path("login", login),
            path("", index),
            path("", include("aauth_server_django.ath_async_urls")),
        ]
    )
    return get_asgi_application()


# -- serving -----------------------------------------------------------------------------------


def asgi_for(framework: str, shop: Shop, host: str) -> Any:
    """The ASGI app uvicorn serves (Starlette, Django); Flask goes to :func:`serve_wsgi`."""
    if framework == "starlette":
        return starlette_app(shop)
    return django_app(shop, host)


def serve_wsgi(app: Any, sock: socket.socket, announce: Callable[[], None]) -> None:
    """A WSGI app on Werkzeug's threaded server (as the other Flask examples), which keeps the
    raw request target (``RAW_URI``) the ATH proxy judges paths by, as gunicorn does."""
    from werkzeug.serving import make_server

    host, port = sock.getsockname()[:2]
    server = make_server(host, port, app, threaded=True, fd=sock.fileno())
    announce()
    server.serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    shop = build(args, parser)
    sock = bind(args.host, args.port)
    if sock is None:
        return 1
    config = shop.server.config

    def announce() -> None:
        print(f"ath shop {config.base_url} ({args.framework}, approve={args.approve})", flush=True)
        print(f"demo user: alice / {shop.password}", flush=True)
        print(f"admin: admin / {shop.admin_password}", flush=True)
        print(f"listening on http://{args.host}:{args.port}", flush=True)

    try:
        if args.framework == "flask":
            serve_wsgi(flask_app(shop), sock, announce)
        else:
            app = asgi_for(args.framework, shop, args.host)
            serve_uvicorn(
                app, sock, announce, lifespan="off" if args.framework == "django" else "on"
            )
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        if args.framework != "starlette":
            shop.server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
