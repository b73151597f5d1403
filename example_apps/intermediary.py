"""An intermediary resource: serves agents and, to answer them, calls a downstream resource
as an agent of its own (call chaining, digest 9; interaction chaining, digest 6.5).

    python -m example_apps.intermediary --host 127.0.0.1 --port 8002 --dev \\
        --downstream http://127.0.0.1:8001 [--ps URL ... | --trust-any-ps]

GET /summary (person-token): calls ``{downstream}/data`` (auth-token ``data.read``) with the
caller's person token as ``upstream_token`` and answers what it got.
GET /who (person-token): calls ``{downstream}/profile`` (person-token) the same way.
GET /report (auth-token ``summary.read``): calls ``{downstream}/data`` with the caller's auth
token as ``upstream_token``.
When the downstream PS (or resource) needs the person, the answer is this intermediary's
own ``202 requirement=interaction``; the caller polls ``/aauth/chain/pending/{id}``.
The intermediary is its own agent provider: ``/.well-known/aauth-agent.json`` names this
resource's issuer, and its downstream requests are signed with self-issued agent tokens.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import httpx
import uvicorn
from aauth_server_starlette import AAuth, identity
from aauth_server_starlette.convert import to_http_request, to_response
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aauth_server.http import HttpResponse
from aauth_server.intermediary import PENDING_PREFIX, ChainedCall, Intermediary, json_response
from aauth_server.resource import PersonIdentity
from example_apps.starlette_resource import _Server, load_signing_key

SCOPES = {"summary.read": "Read a summary of your records elsewhere"}


def _caller(request: Request) -> PersonIdentity:
    who = identity(request, PersonIdentity)
    assert who is not None  # the guard let the request through with a person or auth token
    return who


def _relay(issuer: str, response: httpx.Response) -> HttpResponse:
    """What the downstream answered, as this intermediary's answer."""
    if response.status_code == 200:
        return json_response({"via": issuer, "downstream": response.json()})
    try:
        body: Any = response.json()
    except ValueError:
        body = {"error": "server_error", "detail": response.text[:200]}
    return json_response({"via": issuer, "downstream_status": response.status_code, **body}, 502)


def create_app(aauth: AAuth, intermediary: Intermediary, downstream: str) -> Starlette:
    issuer = intermediary.issuer

    def chained(path: str, mode: str = "person-token", scope: str | None = None) -> Any:
        def work(call: ChainedCall) -> HttpResponse:
            return _relay(issuer, call.request("GET", downstream + path))

        # A sync endpoint: the guard runs it in Starlette's threadpool, where the chained
        # calls (and the hold for a quick downstream answer) may block.
        def endpoint(request: Request) -> Response:
            return to_response(intermediary.run(_caller(request), work))

        return aauth.protect(mode, scope=scope)(endpoint)

    @aauth.protect("person-token")
    def pending(request: Request) -> Response:
        return to_response(intermediary.poll(request.path_params["id"], _caller(request)))

    async def provider(request: Request) -> Response:
        answer = intermediary.handle(await to_http_request(request, aauth.guard))
        return to_response(answer or HttpResponse(404, [], b""))

    return Starlette(
        routes=[
            Route("/summary", chained("/data")),
            Route("/who", chained("/profile")),
            Route("/report", chained("/data", "auth-token", "summary.read")),
            Route(PENDING_PREFIX + "{id}", pending),
            *(Route(path, provider, methods=[method]) for method, path in intermediary.routes()),
            *aauth.routes(),
        ]
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m example_apps.intermediary", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--dev", action="store_true", help="allow loopback http:// identifiers")
    parser.add_argument("--issuer", help="this resource's identifier (default with --dev: here)")
    parser.add_argument("--downstream", required=True, metavar="URL", help="the resource it calls")
    parser.add_argument(
        "--ps", action="append", default=[], metavar="URL", help="a trusted Person Server"
    )
    parser.add_argument(
        "--trust-any-ps", action="store_true", help="accept person tokens of every PS"
    )
    parser.add_argument(
        "--hold",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="how long a request waits for the downstream before answering 202",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.issuer is None and not args.dev:
        parser.error("--issuer is required unless --dev is given")
    if args.trust_any_ps == bool(args.ps):
        parser.error("give --ps URL ... or --trust-any-ps")
    issuer = args.issuer or f"http://127.0.0.1:{args.port}"
    aauth = AAuth(
        issuer=issuer,
        dev_loopback=args.dev,
        signing_key=load_signing_key(None),
        scope_descriptions=SCOPES,
        trusted_ps=tuple(args.ps),
        trust_any_ps=args.trust_any_ps,
    )
    intermediary = Intermediary(issuer, dev_loopback=args.dev, hold=args.hold)
    print(f"intermediary {issuer} (agent {intermediary.agent_id}) -> {args.downstream}")
    sys.stdout.flush()
    app = create_app(aauth, intermediary, args.downstream.rstrip("/"))
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning")
    _Server(config).run()


if __name__ == "__main__":
    main()
