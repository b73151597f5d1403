"""uvicorn serving an ASGI app from a thread of the test process, on 127.0.0.1.

The socket is bound and listening before uvicorn starts, so a test may connect at once:
early connections wait in the backlog and the test never polls for readiness.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Literal


class ThreadedUvicorn:
    def __init__(self, app: Any, *, lifespan: Literal["auto", "on", "off"] = "on") -> None:
        import uvicorn  # the adapters' extra; only tests that serve over HTTP need it

        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)
        self.port: int = self.socket.getsockname()[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, interface="asgi3", log_level="warning", ws="none", lifespan=lifespan
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def wait_started(self, timeout: float) -> None:
        """Until uvicorn has run the app's lifespan startup (for tests that watch it)."""
        deadline = time.monotonic() + timeout
        while not self.server.started:
            assert time.monotonic() < deadline, "timed out waiting for uvicorn to start"
            time.sleep(0.01)

    def stop(self, timeout: float = 10) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.socket.close()
