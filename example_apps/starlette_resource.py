"""A Starlette resource that answers only AAuth-signed agents.

python -m example_apps.starlette_resource --host 127.0.0.1 --port 8001 --dev
"""

from __future__ import annotations

import argparse
import socket

import uvicorn
from aauth_server_starlette import AAuth
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def create_app(aauth: AAuth) -> Starlette:
    @aauth.protect("agent-token")
    async def whoami(request: Request) -> JSONResponse:
        agent = request.state.aauth  # the verified AgentIdentity
        return JSONResponse({"agent": agent.agent, "agent_issuer": agent.issuer, "jkt": agent.jkt})

    return Starlette(routes=[Route("/whoami", whoami), *aauth.routes()])


class _Server(uvicorn.Server):
    """Announces the address once the socket is bound, so scripts know when to connect."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            print(f"listening on http://{self.config.host}:{self.config.port}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--dev", action="store_true", help="allow loopback http:// identifiers")
    parser.add_argument("--issuer", help="this resource's identifier, e.g. https://api.example")
    args = parser.parse_args(argv)
    if args.issuer is None and not args.dev:
        parser.error("--issuer is required unless --dev is given")
    issuer = args.issuer or f"http://127.0.0.1:{args.port}"

    aauth = AAuth(issuer=issuer, dev_loopback=args.dev)
    config = uvicorn.Config(create_app(aauth), host=args.host, port=args.port, log_level="warning")
    _Server(config).run()


if __name__ == "__main__":
    main()
