"""Serving an example server in the framework asked for: the socket, the ready line, Django's
settings, and shutting down cleanly.  Shared by the Person Server and Access Server examples,
which differ only in what they mount."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any, Literal


def bind(host: str, port: int) -> socket.socket | None:
    """A listening socket on ``host:port``; None (the reason on stderr) when it cannot bind."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        print(f"cannot bind {host}:{port}: {exc}", file=sys.stderr)
        return None
    sock.listen(128)
    return sock


def run_bound(
    host: str, port: int, serve: Callable[[socket.socket], None], close: Callable[[], None]
) -> int:
    """Bind ``host:port``, ``serve`` on the socket until Ctrl-C or SIGTERM, then ``close``
    the server; 1 (with the reason on stderr) when the address cannot be bound."""
    sock = bind(host, port)
    if sock is None:
        return 1
    # SIGTERM ends the server like Ctrl-C, so the exit handlers run (uvicorn installs its
    # own graceful handler while it serves; Werkzeug does not).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        serve(sock)
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        close()
    return 0


def serve_uvicorn(
    app: Any,
    sock: socket.socket,
    ready: Callable[[], None],
    *,
    lifespan: Literal["on", "off"] = "on",
) -> None:
    """uvicorn on ``sock``, calling ``ready`` (the ready line) once it accepts connections."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if not self.should_exit:
                ready()

    server = Server(uvicorn.Config(app, log_level="warning", lifespan=lifespan))
    asyncio.run(server.serve(sockets=[sock]))


def configure_django(*, debug: bool, host: str, urlconf: str) -> list[str]:
    """Django settings for an example mount (no middleware, the adapter's app), set up;
    returns ``ALLOWED_HOSTS``."""
    import django
    from django.conf import settings

    allowed = [host, "127.0.0.1", "localhost"]
    settings.configure(
        DEBUG=debug,  # the mounts refuse DEV_LOOPBACK without DEBUG
        # Django's error pages (404, DisallowedHost's 400) need one, under DEBUG too.
        SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50),
        ALLOWED_HOSTS=allowed,
        ROOT_URLCONF=urlconf,
        INSTALLED_APPS=["aauth_server_django"],
        MIDDLEWARE=[],
    )
    django.setup()
    return allowed
