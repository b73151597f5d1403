"""A Person Server with a demo person, consent pages and a login form (Starlette, Flask or Django).

    python -m example_apps.person_server --host 127.0.0.1 --port 8010 --dev \
        [--store URI] [--store-prefix PREFIX] [--records URL] [--framework starlette|flask|django] \
        [--auto-approve AGENT_ID ...] [--auto-approve-scope SCOPE ...] [--password PW] \
        [--key FILE] [--trust-as URL ...]

The demo person is ``alice``; her password is ``--password`` or generated and printed at
start.  Missions, their logs, bindings and revocations go to ``--records`` (by default a
SQLite file in a new temporary folder, printed at start and deleted when the server stops;
the schema is migrated at start), so a restart with the same ``--records`` keeps them.  The
subject secret (directed ``sub``) and, without ``--key``, the signing key are generated at
start: person and auth tokens stop verifying, and directed ``sub`` values change, when the
process restarts.

With ``--trust-as`` the PS federates to those Access Servers (four-party): a resource token
whose ``aud`` is one of them goes on to that AS, which may ask for alice's claims (the PS
answers from ``DEMO_CLAIMS``, never ``sub``) and ask clarifications (passed on to the agent).
"""

from __future__ import annotations

import argparse
import atexit
import json
import secrets
import shutil
import socket
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aauth_server.asgi import RequestLimits
from aauth_server.identifiers import is_server_identifier
from aauth_server.keys.jwk import PrivateKey
from aauth_server.missions.control import MissionControl
from aauth_server.person import DefaultPolicy, PersonServer, PersonServerConfig
from aauth_server.person.pages import ConsentPages, DemoLogin
from aauth_server.resource.config import ConfigurationError
from aauth_server.storage.uri import open_async_store, open_store

from ._serving import configure_django, run_bound, serve_uvicorn

PERSON = "alice"
#: What this PS knows about alice and releases to a trusted Access Server that asks.
DEMO_CLAIMS: dict[str, dict[str, Any]] = {
    PERSON: {"email": "alice@example.com", "email_verified": True, "name": "Alice Example"}
}
FRAMEWORKS = ("starlette", "flask", "django")


@dataclass
class Built:
    ps: PersonServer
    pages: ConsentPages
    login: DemoLogin
    password: str
    control: MissionControl

    @property
    def handlers(self) -> list[Any]:
        """Every page family, in the order the adapters mount them."""
        return [self.pages, self.control, self.login]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m example_apps.person_server", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8010)
    parser.add_argument("--dev", action="store_true", help="allow loopback http:// identifiers")
    parser.add_argument("--issuer", help="this PS's identifier (default with --dev: this server)")
    parser.add_argument("--framework", choices=FRAMEWORKS, default="starlette")
    parser.add_argument("--store", default="memory://", metavar="URI", help="memory:// or redis://")
    parser.add_argument(
        "--store-prefix", metavar="PREFIX", help="key prefix in a shared Redis (default: aauth)"
    )
    parser.add_argument(
        "--records",
        metavar="URL",
        help="durable records: sqlite:///path or postgresql+psycopg://... "
        "(default: a SQLite file in a new temporary folder, printed at start and deleted "
        "when the server stops; name a file to keep them across restarts)",
    )
    parser.add_argument(
        "--auto-approve",
        action="extend",
        nargs="+",
        default=[],
        metavar="AGENT_ID",
        help="agents approved without asking alice (once bound to her)",
    )
    parser.add_argument(
        "--auto-approve-scope",
        action="extend",
        nargs="+",
        default=[],
        metavar="SCOPE",
        help="scopes those agents get without asking",
    )
    parser.add_argument(
        "--mission-scope",
        action="extend",
        nargs="+",
        default=[],
        metavar="SCOPE",
        help="within an active mission, auth tokens for its resources with these scopes "
        "are granted without asking",
    )
    parser.add_argument("--password", help="alice's password (default: generated and printed)")
    parser.add_argument(
        "--key", type=Path, metavar="FILE", help="private JWK (JSON) signing tokens"
    )
    parser.add_argument(
        "--poll-interval", type=int, default=5, metavar="SECONDS", help="Retry-After on 202s"
    )
    parser.add_argument(
        "--trust-as",
        action="extend",
        nargs="+",
        default=[],
        metavar="URL",
        help="Access Servers this PS federates to (four-party)",
    )
    return parser


def demo_claims(request: Any) -> dict[str, Any]:
    """The ``access_claims`` hook: alice's claims an Access Server asked for (logged)."""
    known = DEMO_CLAIMS.get(request.person, {})
    released = sorted(n for n in request.names if n in known)
    print(f"released {', '.join(released) or 'nothing'} to {request.access_server}", flush=True)
    return known


def build(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Built:
    if args.issuer is None and not args.dev:
        parser.error("--issuer is required unless --dev is given")
    issuer = args.issuer or f"http://127.0.0.1:{args.port}"
    if args.key is not None:
        try:
            key = PrivateKey.from_jwk(json.loads(args.key.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            parser.error(f"--key {args.key}: {exc}")
    else:
        key = PrivateKey.generate("Ed25519", kid="ps-1")
    stores: dict[str, Any] = {"store": args.store}
    if args.store_prefix:
        if args.store == "memory://":
            parser.error("--store-prefix applies to a shared store (redis://...)")
        try:
            stores = {
                "store": open_store(args.store, prefix=args.store_prefix),
                "async_store": open_async_store(args.store, prefix=args.store_prefix),
            }
        except ValueError as exc:
            parser.error(f"--store {args.store}: {exc}")
    for access in args.trust_as:
        if not is_server_identifier(access, dev_loopback=args.dev):
            parser.error(f"--trust-as {access}: not a server identifier (https://host)")
    records = args.records
    if records is None:
        # A file of this run's own, deleted when the server stops (--records keeps them).
        folder = Path(tempfile.mkdtemp(prefix="aauth-ps-"))
        atexit.register(shutil.rmtree, folder, True)
        records = f"sqlite:///{folder / 'records.db'}"
    try:
        ps = PersonServer(_config(args, issuer, key, records, stores))
    except ConfigurationError as exc:
        parser.error(str(exc))
    password = args.password or secrets.token_urlsafe(12)
    secret = secrets.token_bytes(32)
    name = ps.config.name or "Person Server"
    login = DemoLogin({PERSON: password}, secret, server_name=name)
    pages = ConsentPages(ps, authenticate=login.authenticate, secret=secret)
    control = MissionControl(
        ps, authenticate=login.authenticate, secret=secret, base="/missions", server_name=name
    )
    return Built(ps, pages, login, password, control)


def _config(
    args: argparse.Namespace, issuer: str, key: PrivateKey, records: str, stores: dict[str, Any]
) -> PersonServerConfig:
    return PersonServerConfig(
        issuer=issuer,
        signing_key=key,
        subject_secret=secrets.token_bytes(32),
        dev_loopback=args.dev,
        policy=DefaultPolicy(
            auto_approve_agents=tuple(args.auto_approve),
            auto_approve_scopes=tuple(args.auto_approve_scope),
            mission_scopes=tuple(args.mission_scope),
        ),
        poll_interval=args.poll_interval,
        name="Example Person Server",
        scopes_supported=("openid", "profile"),
        claims_supported=("sub", "name"),
        records=records,
        records_migrate=True,
        trusted_access_servers=tuple(args.trust_as),
        access_claims=demo_claims,
        **stores,
    )


def announce(built: Built, host: str, port: int, framework: str) -> None:
    print(f"person server {built.ps.config.issuer} ({framework})", flush=True)
    print(f"demo person: {PERSON} / {built.password}", flush=True)
    print(f"records: {built.ps.records!r}", flush=True)
    for access in built.ps.config.trusted_access_servers:
        print(f"trusts access server {access}", flush=True)
    print(f"listening on http://{host}:{port}", flush=True)


# -- servers ----------------------------------------------------------------------------------


def serve_starlette(built: Built, sock: socket.socket, host: str, port: int) -> None:
    from aauth_server_starlette.person import PersonServerApp
    from starlette.applications import Starlette

    mounted = PersonServerApp(built.ps, pages=built.handlers)
    app = Starlette(routes=mounted.mounted(), lifespan=mounted.lifespan)
    serve_uvicorn(app, sock, lambda: announce(built, host, port, "starlette"))


def serve_flask(built: Built, sock: socket.socket, host: str, port: int) -> None:
    from aauth_server_flask.person import person_blueprint
    from flask import Flask
    from werkzeug.serving import make_server

    app = Flask(__name__)
    app.register_blueprint(person_blueprint(built.ps, pages=built.handlers))
    # Werkzeug keeps the raw request-target the signature covers (see flask_resource).
    server = make_server(host, port, app, threaded=True, fd=sock.fileno())
    announce(built, host, port, "flask")
    server.serve_forever()


def serve_django(built: Built, sock: socket.socket, host: str, port: int) -> None:
    allowed = configure_django(debug=built.ps.config.dev_loopback, host=host, urlconf=__name__)
    from aauth_server_django.person import PersonServerLifespan, use_person_server
    from django.core.asgi import get_asgi_application
    from django.urls import include, path

    use_person_server(built.ps, pages=built.handlers)
    # uvicorn serves Django's ASGI handler, so the async views (and the async store) answer.
    urlpatterns.append(path("", include("aauth_server_django.person_async_urls")))
    # Django has no lifespan: the wrapper checks the store at start and closes the stores
    # on uvicorn's loop at shutdown, where the async store's connections live.
    # Django's ASGI handler receives a whole body before any view runs: keep the PS's
    # body limit at the server (the mount keeps it too, for WSGI deployments).
    # Django's error pages under DEBUG fail on a Host it does not allow: refuse it first.
    app = PersonServerLifespan(
        RequestLimits(
            get_asgi_application(), max_body=built.ps.config.max_body, allowed_hosts=allowed
        )
    )
    serve_uvicorn(app, sock, lambda: announce(built, host, port, "django"))


#: Django's ROOT_URLCONF is this module; serve_django fills it once Django is set up.
urlpatterns: list[Any] = []
SERVERS = {"starlette": serve_starlette, "flask": serve_flask, "django": serve_django}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    built = build(args, parser)
    serve = SERVERS[args.framework]
    return run_bound(
        args.host, args.port, lambda sock: serve(built, sock, args.host, args.port), built.ps.close
    )


if __name__ == "__main__":
    sys.exit(main())
