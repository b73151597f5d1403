"""Real redis-server processes for tests.

``ensure_redis()`` answers with the URL of a throwaway redis-server started on a free port for
this test run (once per process), so the suite never writes into a Redis it did not start and
passes beside any other user of 6379. ``RedisProcess`` is a server the
test owns (start, stop, start again on the same port and data directory) for outage tests.
Tests sharing a Redis keep apart by a unique key prefix, never by flushing the database.
"""

from __future__ import annotations

import atexit
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path
from types import TracebackType

_STARTUP_TIMEOUT = 10.0
_started: list[RedisProcess] = []


def _ping(host: str, port: int, timeout: float = 0.5) -> bool:
    # A raw RESP PING keeps this helper free of the client library under test.
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _drain(process: subprocess.Popen[bytes], ready: threading.Event, log: list[str]) -> None:
    # Readiness comes from the server log line; reading to EOF keeps the pipe from filling up.
    assert process.stdout is not None
    for raw in process.stdout:
        line = raw.decode("utf-8", "replace").rstrip()
        log.append(line)
        del log[:-50]
        if "Ready to accept connections" in line:
            ready.set()
    ready.set()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_server_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed; the storage tests need a real Redis")
    return binary


class RedisProcess:
    """A redis-server on 127.0.0.1 that the test starts and stops."""

    def __init__(
        self, port: int | None = None, dir: Path | None = None, *, appendonly: bool = True
    ) -> None:
        self.port = port if port is not None else free_port()
        self._own_dir = dir is None
        self.dir = dir if dir is not None else Path(tempfile.mkdtemp(prefix="aauth-redis-"))
        self.appendonly = appendonly
        self._process: subprocess.Popen[bytes] | None = None
        self._drainer: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        if self._process is not None:
            return self
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.appendonly
            else ["--appendonly", "no"]
        )
        command = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--dir", str(self.dir), *persistence]
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        ready = threading.Event()
        log: list[str] = []
        threading.Thread(target=_drain, args=(self._process, ready, log), daemon=True).start()
        if not ready.wait(_STARTUP_TIMEOUT) or not _ping("127.0.0.1", self.port):
            self.stop()
            raise RuntimeError(f"redis-server did not start on port {self.port}: {log[-5:]}")
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if self._drainer is not None:
            self._drainer.join(timeout=10)
            self._drainer = None
        if process.stdout is not None:
            process.stdout.close()

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


def ensure_redis() -> str:
    """The URL of this process's private redis-server, started on first use."""
    if _started:
        return _started[0].url
    server = RedisProcess(appendonly=False).start()
    _started.append(server)
    atexit.register(server.cleanup)
    return server.url
