"""A Django resource protected by AAuth, served by uvicorn through Django's ASGI handler.

    python -m example_apps.django_resource --host 127.0.0.1 --port 8003 --dev

Routes: ``/whoami`` (agent-token), ``/profile`` (person-token), ``GET /data`` (auth-token
``data.read``), ``POST /data`` (``data.write``), ``/deferred`` (``data.read``, deferred
delivery), ``/health`` (unprotected), and the guard's own endpoints.  Settings are configured
in code, so no project folder is needed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
from pathlib import Path

import django
import uvicorn
from aauth_server_django import AAuthPersonRequest, AAuthRequest, aauth_required
from aauth_server_django.conf import get_guard
from django.conf import settings
from django.core import checks
from django.core.asgi import get_asgi_application
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from aauth_server.asgi import RequestLimits
from aauth_server.keys.jwk import PrivateKey

SCOPES = {"data.read": "Read your data", "data.write": "Change your data"}


@aauth_required()  # agent-token mode
async def whoami(request: AAuthRequest) -> JsonResponse:
    identity = request.aauth
    assert identity is not None  # only optional=True lets a request through without one
    return JsonResponse(
        {"agent": identity.agent, "agent_issuer": identity.issuer, "jkt": identity.jkt}
    )


@aauth_required("person-token")
async def profile(request: AAuthPersonRequest) -> JsonResponse:
    return JsonResponse({"ps": request.aauth.ps, "sub": request.aauth.sub})


# One URL, a scope per method.  Signed requests cannot come from a cross-site form, so
# the class is CSRF-exempt (a function view protected by aauth_required already is).
@method_decorator(csrf_exempt, name="dispatch")
class Data(View):
    @method_decorator(aauth_required("auth-token", scope="data.read"))
    async def get(self, request: AAuthPersonRequest) -> JsonResponse:
        return JsonResponse({"scope": request.aauth.scope})

    @method_decorator(aauth_required("auth-token", scope="data.write"))
    async def post(self, request: AAuthPersonRequest) -> JsonResponse:
        return JsonResponse({"scope": request.aauth.scope, "written": True})


@aauth_required("auth-token", scope="data.read", deferred=True)
async def deferred(request: AAuthPersonRequest) -> JsonResponse:
    # Runs once, when the agent polls the pending URL with an auth token.
    return JsonResponse({"scope": request.aauth.scope, "deferred": True})


async def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})  # unprotected: what the server costs without AAuth


urlpatterns = [
    path("health", health),
    path("whoami", whoami),
    path("profile", profile),
    path("data", Data.as_view()),
    path("deferred", deferred),
    # /.well-known/aauth-resource.json, JWKS, /aauth/authorize, /aauth/revoke, pending URLs
    path("", include("aauth_server_django.async_urls")),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8003)
    parser.add_argument("--dev", action="store_true", help="allow loopback http identifiers")
    parser.add_argument("--issuer", help="resource identifier (default with --dev: this server)")
    parser.add_argument(
        "--ps", action="append", default=[], metavar="URL", help="trusted Person Server (repeat)"
    )
    parser.add_argument(
        "--trust-any-ps",
        action="store_true",
        help="accept person and auth tokens of every Person Server (instead of --ps)",
    )
    parser.add_argument("--as", dest="access_server", metavar="URL", help="Access Server")
    parser.add_argument("--store", default="memory://", help="memory:// or redis://...")
    parser.add_argument("--signing-key", metavar="FILE", help="private JWK (JSON) for tokens")
    parser.add_argument("--replay-cache", action="store_true", help="refuse replayed requests")
    args = parser.parse_args(argv)
    if args.trust_any_ps and args.ps:
        parser.error("--ps and --trust-any-ps exclude each other")
    if args.issuer is None:
        if not args.dev:
            parser.error("--issuer is required unless --dev is given")
        args.issuer = f"http://127.0.0.1:{args.port}"
    return args


def signing_key(file: str | None) -> PrivateKey:
    if file is not None:
        return PrivateKey.from_jwk(json.loads(Path(file).read_text()))
    key = PrivateKey.generate("Ed25519", kid="resource-1")
    print(
        "no --signing-key: generated an Ed25519 key for this run (resource tokens issued "
        "now will not verify after a restart)",
        file=sys.stderr,
        flush=True,
    )
    return key


def configure(args: argparse.Namespace) -> None:
    aauth = {
        "ISSUER": args.issuer,
        "DEV_LOOPBACK": args.dev,
        "SIGNING_KEY": signing_key(args.signing_key),
        "SCOPE_DESCRIPTIONS": SCOPES,
        "AUTHORIZATION_PATH": "/aauth/authorize",
        "REVOCATION_PATH": "/aauth/revoke",
        "TRUSTED_PS": tuple(args.ps),
        "TRUST_ANY_PS": args.trust_any_ps,
        "ACCESS_SERVER": args.access_server,
        "STORE": args.store,
        "REPLAY_CACHE": args.replay_cache,
    }
    settings.configure(
        DEBUG=args.dev,  # DEV_LOOPBACK with DEBUG off is refused (check aauth.E003)
        # Django's error pages (404, DisallowedHost's 400) need one, under DEBUG too.
        SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50),
        ALLOWED_HOSTS=[args.host, "127.0.0.1", "localhost"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["aauth_server_django"],
        AAUTH=aauth,
    )
    django.setup()
    # uvicorn does not run Django's system checks, so run them before serving.
    errors = [message for message in checks.run_checks() if message.is_serious()]
    if errors:
        sys.exit("\n".join(str(message) for message in errors))


async def serve(config: uvicorn.Config) -> None:
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.05)
    if server.started:
        print(f"listening on http://{config.host}:{config.port}", flush=True)
    await task


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configure(args)
    # Django's ASGI handler receives a whole body before any view runs: the limit is kept
    # at the server instead (the decorator keeps it too, for WSGI deployments).
    # Django's error pages under DEBUG fail on a Host it does not allow: refuse it first.
    app = RequestLimits(
        get_asgi_application(),
        max_body=get_guard().body_limit,
        allowed_hosts=settings.ALLOWED_HOSTS,
    )
    config = uvicorn.Config(app, host=args.host, port=args.port, lifespan="off")
    # uvicorn's own loop choice (uvloop with uvicorn[standard]), as uvicorn.Server.run makes it.
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(serve(config))


if __name__ == "__main__":
    main()
