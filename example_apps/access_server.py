"""An Access Server: a resource's policy engine issuing auth tokens to Person Servers
(four-party), in Starlette, Flask or Django.

    python -m example_apps.access_server --host 127.0.0.1 --port 8020 --dev \
        [--store URI] [--records URL] [--framework starlette|flask|django] \
        [--trust-ps URL ...] [--require-claims email ...] [--clarify "question"] \
        [--require-interaction] [--key FILE]

The policy of this example issues the scope the resource token asks for; with
``--require-claims`` it first asks the PS for those identity claims (and puts them in the
auth token), with ``--clarify`` it then asks one clarification question, and with
``--require-interaction`` the person must open the AS's ``/interact`` page once (with
``--dev`` no sign-in is asked there).  Without ``--trust-ps`` any Person Server may ask.
Issued auth tokens and revocations go to ``--records`` (by default a SQLite file in a new
temporary folder, deleted when the server stops).
"""

from __future__ import annotations

import argparse
import atexit
import json
import shutil
import socket
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aauth_server.access import (
    AccessRequest,
    AccessServer,
    AccessServerConfig,
    Issue,
    RequireClaims,
    RequireClarification,
    RequireInteraction,
    Verdict,
)
from aauth_server.access.policy import RESERVED_CLAIMS
from aauth_server.asgi import RequestLimits
from aauth_server.keys.jwk import PrivateKey
from aauth_server.resource.config import ConfigurationError

from ._serving import configure_django, run_bound, serve_uvicorn

FRAMEWORKS = ("starlette", "flask", "django")


class ExamplePolicy:
    """Interaction (if asked) -> claims (if asked) -> one clarification (if asked) -> issue."""

    def __init__(
        self, claims: Sequence[str], question: str | None, interaction: bool = False
    ) -> None:
        self.claims = tuple(claims)
        self.question = question
        self.interaction = interaction

    def __call__(self, request: AccessRequest) -> Verdict:
        if self.interaction and not request.interacted:
            return RequireInteraction()
        missing = [name for name in self.claims if name not in request.claims]
        if missing:
            return RequireClaims(missing)
        if self.question and not any(a is not None for _, a in request.clarifications):
            return RequireClarification(self.question)
        return Issue(claims={name: request.claims[name] for name in self.claims})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m example_apps.access_server", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8020)
    parser.add_argument("--dev", action="store_true", help="allow loopback http:// identifiers")
    parser.add_argument("--issuer", help="this AS's identifier (default with --dev: this server)")
    parser.add_argument("--framework", choices=FRAMEWORKS, default="starlette")
    parser.add_argument("--store", default="memory://", metavar="URI", help="memory:// or redis://")
    parser.add_argument(
        "--records",
        metavar="URL",
        help="durable records: sqlite:///path or postgresql+psycopg://... (default: a "
        "SQLite file in a new temporary folder, deleted when the server stops)",
    )
    parser.add_argument(
        "--trust-ps",
        action="extend",
        nargs="+",
        default=[],
        metavar="URL",
        help="Person Servers this AS takes requests from (default: any)",
    )
    parser.add_argument(
        "--require-claims",
        action="extend",
        nargs="+",
        default=[],
        metavar="CLAIM",
        help="identity claims the PS must give before a token is issued",
    )
    parser.add_argument("--clarify", metavar="QUESTION", help="ask this clarification once")
    parser.add_argument(
        "--require-interaction",
        action="store_true",
        help="the person binds their PS at this AS's /interact page once per request",
    )
    parser.add_argument(
        "--key", type=Path, metavar="FILE", help="private JWK (JSON) signing tokens"
    )
    parser.add_argument(
        "--poll-interval", type=int, default=1, metavar="SECONDS", help="Retry-After on 202s"
    )
    return parser


def build(args: argparse.Namespace, parser: argparse.ArgumentParser) -> AccessServer:
    if args.issuer is None and not args.dev:
        parser.error("--issuer is required unless --dev is given")
    if "sub" in args.require_claims:
        parser.error("an Access Server never asks for sub")
    reserved = RESERVED_CLAIMS.intersection(args.require_claims)
    if reserved:
        parser.error(f"protocol claims cannot come from the PS: {', '.join(sorted(reserved))}")
    issuer = args.issuer or f"http://127.0.0.1:{args.port}"
    if args.key is not None:
        try:
            key = PrivateKey.from_jwk(json.loads(args.key.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            parser.error(f"--key {args.key}: {exc}")
    else:
        key = PrivateKey.generate("Ed25519", kid="as-1")
    records = args.records
    if records is None:
        folder = Path(tempfile.mkdtemp(prefix="aauth-as-"))
        atexit.register(shutil.rmtree, folder, True)
        records = f"sqlite:///{folder / 'records.db'}"
    try:
        return AccessServer(_config(args, issuer, key, records))
    except ConfigurationError as exc:
        parser.error(str(exc))


def _config(
    args: argparse.Namespace, issuer: str, key: PrivateKey, records: str
) -> AccessServerConfig:
    return AccessServerConfig(
        issuer=issuer,
        signing_key=key,
        trusted_ps=tuple(args.trust_ps),
        trust_any_ps=not args.trust_ps,
        policy=ExamplePolicy(args.require_claims, args.clarify, args.require_interaction),
        dev_loopback=args.dev,
        store=args.store,
        records=records,
        records_migrate=True,
        poll_interval=args.poll_interval,
        name="Example Access Server",
    )


def announce(server: AccessServer, host: str, port: int, framework: str) -> None:
    cfg = server.config
    trusted = ", ".join(cfg.trusted_ps) or "any Person Server"
    print(f"access server {cfg.issuer} ({framework}); trusts {trusted}", flush=True)
    print(f"records: {server.records!r}", flush=True)
    print(f"listening on http://{host}:{port}", flush=True)


def serve_starlette(server: AccessServer, sock: socket.socket, host: str, port: int) -> None:
    from aauth_server_starlette.access import AccessServerApp
    from starlette.applications import Starlette

    mounted = AccessServerApp(server)
    app = Starlette(routes=mounted.mounted(), lifespan=mounted.lifespan)
    serve_uvicorn(app, sock, lambda: announce(server, host, port, "starlette"))


def serve_flask(server: AccessServer, sock: socket.socket, host: str, port: int) -> None:
    from aauth_server_flask.access import access_blueprint
    from flask import Flask
    from werkzeug.serving import make_server

    app = Flask(__name__)
    app.register_blueprint(access_blueprint(server))
    httpd = make_server(host, port, app, threaded=True, fd=sock.fileno())
    announce(server, host, port, "flask")
    httpd.serve_forever()


def serve_django(server: AccessServer, sock: socket.socket, host: str, port: int) -> None:
    allowed = configure_django(debug=server.config.dev_loopback, host=host, urlconf=__name__)
    from aauth_server_django.access import use_access_server
    from django.core.asgi import get_asgi_application
    from django.urls import include, path

    use_access_server(server)
    urlpatterns.append(path("", include("aauth_server_django.access_async_urls")))
    app = RequestLimits(
        get_asgi_application(), max_body=server.config.max_body, allowed_hosts=allowed
    )
    serve_uvicorn(app, sock, lambda: announce(server, host, port, "django"), lifespan="off")


#: Django's ROOT_URLCONF is this module; serve_django fills it once Django is set up.
urlpatterns: list[Any] = []
SERVERS = {"starlette": serve_starlette, "flask": serve_flask, "django": serve_django}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    server = build(args, parser)
    serve = SERVERS[args.framework]
    return run_bound(
        args.host, args.port, lambda sock: serve(server, sock, args.host, args.port), server.close
    )


if __name__ == "__main__":
    sys.exit(main())
