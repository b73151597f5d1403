"""A Django resource protected by AAuth, served by uvicorn through Django's ASGI handler.

    python -m example_apps.django_resource --host 127.0.0.1 --port 8003 --dev

Settings are configured in code, so no project folder is needed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import django
import uvicorn
from aauth_server_django import AAuthRequest, aauth_required
from django.conf import settings
from django.core import checks
from django.core.asgi import get_asgi_application
from django.http import JsonResponse
from django.urls import include, path


@aauth_required()  # agent-token mode
async def whoami(request: AAuthRequest) -> JsonResponse:
    identity = request.aauth
    assert identity is not None  # only optional=True lets a request through without one
    return JsonResponse(
        {"agent": identity.agent, "agent_issuer": identity.issuer, "jkt": identity.jkt}
    )


urlpatterns = [
    path("whoami", whoami),
    path("", include("aauth_server_django.urls")),  # /.well-known/aauth-resource.json
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8003)
    parser.add_argument("--dev", action="store_true", help="allow loopback http identifiers")
    parser.add_argument("--issuer", help="resource identifier (default with --dev: this server)")
    args = parser.parse_args(argv)
    if args.issuer is None:
        if not args.dev:
            parser.error("--issuer is required unless --dev is given")
        args.issuer = f"http://127.0.0.1:{args.port}"
    return args


def configure(args: argparse.Namespace) -> None:
    settings.configure(
        DEBUG=args.dev,  # DEV_LOOPBACK with DEBUG off is refused (check aauth.E003)
        ALLOWED_HOSTS=[args.host, "127.0.0.1", "localhost"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["aauth_server_django"],
        AAUTH={"ISSUER": args.issuer, "DEV_LOOPBACK": args.dev},
    )
    django.setup()
    # uvicorn does not run Django's system checks, so run them before serving.
    errors = [message for message in checks.run_checks() if message.is_serious()]
    if errors:
        sys.exit("\n".join(str(message) for message in errors))


async def serve(host: str, port: int) -> None:
    config = uvicorn.Config(get_asgi_application(), host=host, port=port, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.05)
    if server.started:
        print(f"listening on http://{host}:{port}", flush=True)
    await task


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configure(args)
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
