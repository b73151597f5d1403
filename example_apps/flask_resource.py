"""A Flask resource that answers who is calling, for agents that sign with AAuth.

python -m example_apps.flask_resource --host 127.0.0.1 --port 8002 --dev
"""

from __future__ import annotations

import argparse

from aauth_server_flask import AAuth
from flask import Flask, Response, g, jsonify
from werkzeug.serving import make_server

aauth = AAuth()


def create_app(issuer: str, *, dev: bool = False) -> Flask:
    app = Flask(__name__)
    app.config.update(AAUTH_ISSUER=issuer, AAUTH_DEV_LOOPBACK=dev)
    aauth.init_app(app)  # also serves /.well-known/aauth-resource.json

    @app.get("/whoami")
    @aauth.protect("agent-token")
    def whoami() -> Response:
        identity = g.aauth
        return jsonify(agent=identity.agent, agent_issuer=identity.issuer, jkt=identity.jkt)

    return app


def serve(app: Flask, host: str, port: int) -> None:
    # Werkzeug's threaded server keeps the raw request-target the signature covers. In
    # production run `app` under gunicorn instead (it keeps it too, in RAW_URI).
    server = make_server(host, port, app, threaded=True)
    print(f"listening on http://{host}:{port}", flush=True)
    server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--dev", action="store_true", help="allow http://127.0.0.1 identifiers")
    parser.add_argument("--issuer", help="this resource's identifier, https://host")
    args = parser.parse_args(argv)
    issuer = args.issuer or (f"http://{args.host}:{args.port}" if args.dev else None)
    if issuer is None:
        parser.error("--issuer is required unless --dev is given")
    serve(create_app(issuer, dev=args.dev), args.host, args.port)


if __name__ == "__main__":
    main()
