"""A Flask resource protected by AAuth: agent, person and auth tokens, deferred delivery.

python -m example_apps.flask_resource --host 127.0.0.1 --port 8002 --dev \
    [--ps URL ... | --trust-any-ps] [--as URL] [--store URI] [--signing-key FILE] [--replay-cache] \
    [--server werkzeug|gunicorn] [--workers N]

Routes: GET /whoami (agent-token), GET /profile (person-token), GET /data (auth-token,
data.read), POST /data (data.write), GET /deferred (data.read, deferred 202 delivery),
GET /health (unprotected), and the guard's own: metadata, JWKS, /aauth/authorize,
/aauth/revoke, /aauth/pending/.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aauth_server_flask import AAuth
from flask import Flask, Response, g, jsonify
from werkzeug.serving import make_server

from aauth_server.keys.jwk import PrivateKey

SCOPES = {
    "data.read": "Read your **data**",
    "data.write": "Create and change your data",
}

aauth = AAuth()


def create_app(
    issuer: str,
    *,
    dev: bool = False,
    trusted_ps: Sequence[str] = (),
    trust_any_ps: bool = False,
    access_server: str | None = None,
    store: str = "memory://",
    signing_key: PrivateKey | None = None,
    replay_cache: bool = False,
    **settings: Any,
) -> Flask:
    """The example app; ``settings`` are further ResourceConfig fields (``discovery=...``)."""
    app = Flask(__name__)
    app.config.update(
        AAUTH_ISSUER=issuer,
        AAUTH_DEV_LOOPBACK=dev,
        AAUTH_TRUSTED_PS=tuple(trusted_ps),
        AAUTH_TRUST_ANY_PS=trust_any_ps,
        AAUTH_ACCESS_SERVER=access_server,
        AAUTH_STORE=store,
        # Resource tokens are signed with it; a fresh one per start if none is given.
        AAUTH_SIGNING_KEY=signing_key or PrivateKey.generate("Ed25519", kid="resource-1"),
        AAUTH_REPLAY_CACHE=replay_cache,
        AAUTH_SCOPE_DESCRIPTIONS=SCOPES,
        AAUTH_AUTHORIZATION_PATH="/aauth/authorize",
        AAUTH_REVOCATION_PATH="/aauth/revoke",
    )
    app.config.update({"AAUTH_" + name.upper(): value for name, value in settings.items()})
    aauth.init_app(app)  # also serves the metadata, JWKS, authorize, revoke and pending URLs

    @app.get("/health")
    def health() -> Response:
        return jsonify(status="ok")  # unprotected: what the server costs without AAuth

    @app.get("/whoami")
    @aauth.protect("agent-token")
    def whoami() -> Response:
        identity = g.aauth
        return jsonify(agent=identity.agent, agent_issuer=identity.issuer, jkt=identity.jkt)

    @app.get("/profile")
    @aauth.protect("person-token")
    def profile() -> Response:
        return jsonify(ps=g.aauth.ps, sub=g.aauth.sub)

    @app.get("/data")
    @aauth.protect("auth-token", scope="data.read")
    def read_data() -> Response:
        return jsonify(scope=g.aauth.scope)

    @app.post("/data")
    @aauth.protect("auth-token", scope="data.write")
    def write_data() -> Response:
        return jsonify(scope=g.aauth.scope, written=True)

    @app.get("/deferred")
    @aauth.protect("auth-token", scope="data.read", deferred=True)
    def deferred() -> Response:
        # Runs once, on the first poll of the pending URL that brings an auth token.
        return jsonify(scope=g.aauth.scope, deferred=True)

    return app


def load_signing_key(path: str | None) -> PrivateKey | None:
    if path is None:
        return None
    return PrivateKey.from_jwk(json.loads(Path(path).read_text(encoding="utf-8")))


def serve(app: Flask, host: str, port: int) -> None:
    # Werkzeug's threaded server keeps the raw request-target the signature covers. In
    # production run `app` under gunicorn instead (it keeps it too, in RAW_URI).
    server = make_server(host, port, app, threaded=True)
    print(f"listening on http://{host}:{port}", flush=True)
    server.serve_forever()


def serve_gunicorn(app: Flask, host: str, port: int, workers: int) -> None:
    """The production server: gunicorn's sync workers (``pip install aauth-server[flask]``).

    With ``memory://`` each worker has its own store: use one worker, or a Redis store.
    """
    from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]

    def ready(server: object) -> None:
        print(f"listening on http://{host}:{port}", flush=True)

    class Gunicorn(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for name, value in {
                "bind": f"{host}:{port}",
                "workers": workers,
                "worker_class": "sync",
                "loglevel": "warning",
                "when_ready": ready,
            }.items():
                self.cfg.set(name, value)

        def load(self) -> Flask:
            return app

    Gunicorn().run()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--dev", action="store_true", help="allow http://127.0.0.1 identifiers")
    parser.add_argument("--issuer", help="this resource's identifier, https://host")
    parser.add_argument(
        "--ps",
        action="append",
        default=[],
        metavar="URL",
        help="a trusted Person Server (repeatable)",
    )
    parser.add_argument(
        "--trust-any-ps",
        action="store_true",
        help="accept person and auth tokens of every Person Server (instead of --ps)",
    )
    parser.add_argument(
        "--as", dest="access_server", metavar="URL", help="this resource's Access Server"
    )
    parser.add_argument(
        "--store", default="memory://", help="shared state: memory:// or redis://host:port/db"
    )
    parser.add_argument(
        "--signing-key", metavar="FILE", help="private JWK (JSON) that signs resource tokens"
    )
    parser.add_argument(
        "--replay-cache", action="store_true", help="reject a signed request seen before"
    )
    parser.add_argument(
        "--server",
        choices=("werkzeug", "gunicorn"),
        default="werkzeug",
        help="werkzeug's threaded server (default) or gunicorn (production)",
    )
    parser.add_argument("--workers", type=int, default=1, help="gunicorn worker processes")
    args = parser.parse_args(argv)
    if args.server == "gunicorn" and args.workers > 1 and args.store == "memory://":
        parser.error("several gunicorn workers need a shared --store (redis://...)")
    issuer = args.issuer or (f"http://{args.host}:{args.port}" if args.dev else None)
    if issuer is None:
        parser.error("--issuer is required unless --dev is given")
    if args.trust_any_ps and args.ps:
        parser.error("--ps and --trust-any-ps exclude each other")
    try:
        signing_key = load_signing_key(args.signing_key)
    except (OSError, ValueError) as exc:
        parser.error(f"--signing-key {args.signing_key}: {exc}")
    if signing_key is None:
        print(
            "no --signing-key: generated a signing key for this run; resource tokens it "
            "issued stop verifying when the process ends",
            file=sys.stderr,
            flush=True,
        )
    app = create_app(
        issuer,
        dev=args.dev,
        trusted_ps=args.ps,
        trust_any_ps=args.trust_any_ps,
        access_server=args.access_server,
        store=args.store,
        signing_key=signing_key,
        replay_cache=args.replay_cache,
    )
    if args.server == "gunicorn":
        serve_gunicorn(app, args.host, args.port, args.workers)
    else:
        serve(app, args.host, args.port)


if __name__ == "__main__":
    main()
