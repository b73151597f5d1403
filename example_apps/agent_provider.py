"""Example agent provider: serves AP metadata and JWKS (and, with --dev, agent enrollment).

    python -m example_apps.agent_provider --host 127.0.0.1 --port 8000 --dev

``--dev`` admits ``http://127.0.0.1:PORT`` as the issuer and turns on the development-only
``POST /dev/agent-token`` endpoint, which hands an agent token to anyone who asks: never
expose it beyond loopback.
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence

import uvicorn

from aauth_server.agent import ENROLL_PATH, AgentProvider
from aauth_server.asgi import asgi_app

LOOPBACK_NAMES = ("127.0.0.1", "localhost")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m example_apps.agent_provider",
        description="Run a minimal AAuth agent provider under uvicorn.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument(
        "--dev",
        action="store_true",
        help=f"loopback issuer and open enrollment at POST {ENROLL_PATH} (development only)",
    )
    parser.add_argument(
        "--issuer", help="server identifier (default with --dev: http://127.0.0.1:PORT)"
    )
    parser.add_argument("--ps", help="person server URL to put in the ps claim of agent tokens")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Bind before building the provider: the default issuer needs the real port (--port 0),
    # and the ready line must not be printed before connections can be accepted.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        sock.close()
        print(f"cannot bind {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    sock.listen(128)
    port = int(sock.getsockname()[1])
    issuer = args.issuer
    if issuer is None:
        if not args.dev:
            sock.close()
            parser.error("--issuer is required without --dev (an https server identifier)")
        name = args.host if args.host in LOOPBACK_NAMES else "127.0.0.1"
        issuer = f"http://{name}:{port}"
    try:
        provider = AgentProvider(issuer, dev_loopback=args.dev, dev_enrollment=args.dev, ps=args.ps)
    except ValueError as exc:
        sock.close()
        parser.error(str(exc))
    server = uvicorn.Server(
        uvicorn.Config(asgi_app(provider.handle), log_level="warning", lifespan="off")
    )
    print(f"agent provider {issuer} (dev={'on' if args.dev else 'off'})", flush=True)
    print(f"listening on http://{args.host}:{port}", flush=True)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
