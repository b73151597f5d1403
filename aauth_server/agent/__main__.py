"""A development agent provider on loopback: ``python -m aauth_server.agent --dev``.

Serves the provider metadata and JWKS and the development enrollment
``POST /dev/agent-token`` (``{"local": "...", "jwk": {...}}`` -> an agent token for that
key), which hands a token to anyone who asks: loopback only, never in production.  Needs
uvicorn (``pip install "aauth-server[starlette]"``).  An agent gets its token with
``Agent.enroll_dev("http://127.0.0.1:8000", "my-agent")``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .provider import ENROLL_PATH, AgentProvider


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aauth_server.agent", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--dev",
        action="store_true",
        required=True,
        help=f"loopback issuer and open enrollment at POST {ENROLL_PATH}",
    )
    parser.add_argument("--host", default="127.0.0.1", choices=("127.0.0.1", "localhost"))
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--ps", help="a Person Server URL for the agent tokens' ps claim")
    args = parser.parse_args(argv)
    try:
        import uvicorn
    except ImportError:
        parser.error('needs uvicorn: pip install "aauth-server[starlette]"')
    issuer = f"http://{args.host}:{args.port}"
    try:
        provider = AgentProvider(issuer, dev_loopback=True, dev_enrollment=True, ps=args.ps)
    except ValueError as exc:
        parser.error(str(exc))
    print(f"development agent provider {issuer}: enroll at POST {issuer}{ENROLL_PATH}", flush=True)
    uvicorn.run(
        provider.asgi(), host=args.host, port=args.port, log_level="warning", lifespan="off"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
