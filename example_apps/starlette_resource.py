"""A Starlette resource protected by AAuth in every access mode.

python -m example_apps.starlette_resource --host 127.0.0.1 --port 8001 --dev

GET /whoami (agent-token), GET /profile (person-token), GET /data (auth-token data.read),
POST /data (auth-token data.write), GET /deferred (auth-token data.read, deferred 202),
GET /health (unprotected).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path
from typing import Any

import uvicorn
from aauth_server_starlette import AAuth, identity
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aauth_server.http import json_bytes
from aauth_server.keys.jwk import PrivateKey
from aauth_server.resource import PersonIdentity
from aauth_server.storage.uri import open_async_store, open_store

SCOPES = {
    "data.read": "Read the records this API keeps for you",
    "data.write": "Create and change the records this API keeps for you",
}


def _json(payload: Any) -> Response:
    return Response(json_bytes(payload), media_type="application/json")


def _person(request: Request) -> PersonIdentity:
    who = identity(request, PersonIdentity)
    assert who is not None  # the guard let the request through, so it carries a person
    return who


def create_app(aauth: AAuth) -> Starlette:
    @aauth.protect("agent-token")
    async def whoami(request: Request) -> Response:
        agent = request.state.aauth  # the verified AgentIdentity
        return _json({"agent": agent.agent, "agent_issuer": agent.issuer, "jkt": agent.jkt})

    @aauth.protect("person-token")
    async def profile(request: Request) -> Response:
        who = _person(request)
        return _json({"ps": who.ps, "sub": who.sub})

    @aauth.protect("auth-token", scope="data.read")
    async def read_data(request: Request) -> Response:
        return _json({"scope": _person(request).scope})

    @aauth.protect("auth-token", scope="data.write")
    async def write_data(request: Request) -> Response:
        return _json({"scope": _person(request).scope, "written": True})

    @aauth.protect("auth-token", scope="data.read", deferred=True)
    async def deferred(request: Request) -> Response:
        return _json({"scope": _person(request).scope, "deferred": True})

    async def health(request: Request) -> Response:
        return _json({"status": "ok"})  # unprotected: what the server costs without AAuth

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/whoami", whoami),
            Route("/profile", profile),
            Route("/data", read_data, methods=["GET"]),
            Route("/data", write_data, methods=["POST"]),
            Route("/deferred", deferred),
            *aauth.routes(),
        ]
    )


class _Server(uvicorn.Server):
    """Announces the address once the socket is bound, so scripts know when to connect."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            print(f"listening on http://{self.config.host}:{self.config.port}", flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--dev", action="store_true", help="allow loopback http:// identifiers")
    parser.add_argument("--issuer", help="this resource's identifier, e.g. https://api.example")
    parser.add_argument(
        "--ps", action="append", default=[], metavar="URL", help="a trusted Person Server"
    )
    parser.add_argument(
        "--trust-any-ps",
        action="store_true",
        help="accept person and auth tokens of every Person Server (instead of --ps)",
    )
    parser.add_argument(
        "--as", dest="access_server", metavar="URL", help="the Access Server (four-party)"
    )
    parser.add_argument("--store", default="memory://", metavar="URI", help="memory:// or redis://")
    parser.add_argument(
        "--store-prefix", metavar="PREFIX", help="key prefix in a shared Redis (default: aauth)"
    )
    parser.add_argument(
        "--signing-key",
        type=Path,
        metavar="FILE",
        help="private JWK (JSON) signing resource tokens",
    )
    parser.add_argument("--replay-cache", action="store_true", help="reject replayed requests")
    return parser


def load_signing_key(path: Path | None) -> PrivateKey:
    if path is None:
        # Fine for one process; workers sharing a store must share the key (--signing-key).
        print("no --signing-key: generated an Ed25519 key for this run", file=sys.stderr)
        return PrivateKey.generate("Ed25519", kid="rs-1")
    return PrivateKey.from_jwk(json.loads(path.read_text(encoding="utf-8")))


def settings_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    if args.issuer is None and not args.dev:
        parser.error("--issuer is required unless --dev is given")
    if args.trust_any_ps and args.ps:
        parser.error("--ps and --trust-any-ps exclude each other")
    settings: dict[str, Any] = {
        "issuer": args.issuer or f"http://127.0.0.1:{args.port}",
        "dev_loopback": args.dev,
        "signing_key": load_signing_key(args.signing_key),
        "scope_descriptions": SCOPES,
        "authorization_path": "/aauth/authorize",
        "revocation_path": "/aauth/revoke",
        "trusted_ps": tuple(args.ps),
        "trust_any_ps": args.trust_any_ps,
        "access_server": args.access_server,
        "replay_cache": args.replay_cache,
        "store": args.store,
    }
    if args.store_prefix:
        if args.store == "memory://":
            parser.error("--store-prefix applies to a shared store (redis://...)")
        settings["store"] = open_store(args.store, prefix=args.store_prefix)
        settings["async_store"] = open_async_store(args.store, prefix=args.store_prefix)
    return settings


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    aauth = AAuth(**settings_from(args, parser))
    config = uvicorn.Config(create_app(aauth), host=args.host, port=args.port, log_level="warning")
    _Server(config).run()


if __name__ == "__main__":
    main()
