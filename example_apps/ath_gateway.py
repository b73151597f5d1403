"""An ATH gateway in front of unchanged OAuth 2 providers (Starlette, Flask or Django).

    python -m example_apps.ath_gateway --host 127.0.0.1 --port 8040 --dev \
        --provider notes=http://127.0.0.1:8030 [--provider NAME=URL ...] \
        [--client-id ID] [--client-secret SECRET] [--framework starlette|flask|django] \
        [--store URI] [--approve all|pending] [--admin-key KEY]

Each ``--provider NAME=URL`` is an upstream shaped like ``example_apps.oauth_provider``:
its authorization endpoint at ``URL/oauth/authorize``, its token endpoint at
``URL/oauth/token`` and its API under ``URL/api``.  The gateway is that provider's OAuth
client (``--client-id`` / ``--client-secret``), keeps the upstream tokens server-side, and
forwards ``/ath/proxy/NAME/...`` to ``URL/api/...`` with them, for the operations its scope
map allows.  Agents discover it at ``/.well-known/ath.json``.  ``--admin-key`` (default:
generated and printed) is the ``X-ATH-Admin-Key`` an administrator revokes tokens with.
"""

from __future__ import annotations

import argparse
import hmac
import secrets
import sys
from collections.abc import Sequence
from typing import Any

from aauth_server.ath import ATHConfig, ATHServer, ProviderConfig, approve_all, review
from aauth_server.http import HttpRequest

from ._serving import bind, serve_uvicorn
from .ath_shop import serve_wsgi

SCOPES = {
    "profile:read": "See your profile at the provider",
    "notes:read": "Read your notes at the provider",
    "notes:write": "Write notes at the provider for you",
}
#: The operator's scope map for providers shaped like example_apps.oauth_provider.
ROUTES = {
    "profile:read": ["GET /profile", "GET /echo", "POST /echo"],
    "notes:read": ["GET /notes"],
    "notes:write": ["POST /notes"],
}
FRAMEWORKS = ("starlette", "flask", "django")


def provider_from(spec: str, client_id: str, client_secret: str) -> ProviderConfig:
    name, sep, url = spec.partition("=")
    if not sep or not name or not url:
        raise ValueError(f"--provider {spec!r}: write NAME=URL")
    url = url.rstrip("/")
    return ProviderConfig(
        provider_id=name,
        display_name=name.capitalize(),
        scopes=SCOPES,
        routes=ROUTES,
        authorize_endpoint=url + "/oauth/authorize",
        token_endpoint=url + "/oauth/token",
        api_base_url=url + "/api",
        client_id=client_id,
        client_secret=client_secret,
        categories=("productivity",),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m example_apps.ath_gateway", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8040)
    parser.add_argument(
        "--dev", action="store_true", help="allow loopback http:// identifiers and providers"
    )
    parser.add_argument("--base-url", help="public base URL (default with --dev: this server)")
    parser.add_argument(
        "--provider", action="append", default=[], metavar="NAME=URL", required=True
    )
    parser.add_argument(
        "--client-id", default="ath-gateway", help="the gateway's client_id upstream"
    )
    parser.add_argument(
        "--client-secret", required=True, help="the gateway's client_secret upstream"
    )
    parser.add_argument("--framework", choices=FRAMEWORKS, default="starlette")
    parser.add_argument("--store", default="memory://", metavar="URI", help="memory:// or redis://")
    parser.add_argument(
        "--approve", choices=("all", "pending"), default="all", help="Phase A policy"
    )
    parser.add_argument(
        "--admin-key", help="X-ATH-Admin-Key for admin revocation (default: generated)"
    )
    return parser


def build(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[ATHServer, str]:
    if args.base_url is None and not args.dev:
        parser.error("--base-url is required unless --dev is given")
    try:
        providers = tuple(
            provider_from(p, args.client_id, args.client_secret) for p in args.provider
        )
    except ValueError as exc:
        parser.error(str(exc))
    admin_key = args.admin_key or secrets.token_urlsafe(18)

    def admin(request: HttpRequest) -> str | None:
        sent = request.header("x-ath-admin-key") or ""
        return "admin" if hmac.compare_digest(sent.encode(), admin_key.encode()) else None

    config = ATHConfig(
        mode="gateway",
        base_url=args.base_url or f"http://127.0.0.1:{args.port}",
        name="ATH Gateway",
        providers=providers,
        approval=approve_all() if args.approve == "all" else review(),
        admin_authenticate=admin,
        page_secret=secrets.token_bytes(32),
        store=args.store,
        dev_loopback=args.dev,
    )
    return ATHServer(config), admin_key


urlpatterns: list[Any] = []


def asgi_for(framework: str, server: ATHServer, host: str) -> Any:
    if framework == "starlette":
        from aauth_server_starlette.ath import ATH
        from starlette.applications import Starlette

        ath = ATH(server)
        return Starlette(routes=ath.routes(), lifespan=ath.lifespan)
    if framework == "flask":
        from aauth_server_flask.ath import ATH as FlaskATH
        from flask import Flask

        app = Flask(__name__)
        FlaskATH(server, app)
        return app
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=server.config.dev_loopback,
        ALLOWED_HOSTS=[host, "127.0.0.1", "localhost"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["aauth_server_django"],
        MIDDLEWARE=[],
    )
    django.setup()
    from aauth_server_django.ath import use_ath
    from django.core.asgi import get_asgi_application
    from django.urls import include, path

    use_ath(server)
    urlpatterns.append(path("", include("aauth_server_django.ath_async_urls")))
    return get_asgi_application()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    server, admin_key = build(args, parser)
    sock = bind(args.host, args.port)
    if sock is None:
        return 1

    def announce() -> None:
        names = ", ".join(p.provider_id for p in server.config.providers)
        print(
            f"ath gateway {server.config.base_url} ({args.framework}; providers: {names})",
            flush=True,
        )
        print(f"admin key: {admin_key}", flush=True)
        print(f"listening on http://{args.host}:{args.port}", flush=True)

    try:
        app = asgi_for(args.framework, server, args.host)
        if args.framework == "flask":
            serve_wsgi(app, sock, announce)
        else:
            serve_uvicorn(
                app, sock, announce, lifespan="off" if args.framework == "django" else "on"
            )
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        if args.framework != "starlette":
            server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
