"""Run example apps as subprocesses on free loopback ports (shared by the demo and e2e tests).

Every example prints ``listening on http://HOST:PORT`` once it accepts connections; we wait
for that line rather than polling the port, so a crashing app fails fast with its output.
"""

from __future__ import annotations

import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO

READY = re.compile(r"listening on (https?://\S+)")
LOOPBACK = "127.0.0.1"


class AppStartError(RuntimeError):
    """An example app exited or stayed silent before printing its ready line."""


@dataclass(frozen=True)
class AppSpec:
    """What to start: ``python -m <module> --host H --port P <args>``."""

    name: str
    module: str
    args: tuple[str, ...] = ()


@dataclass
class RunningApp:
    name: str
    url: str
    process: subprocess.Popen[str]
    #: Everything the app printed (stdout and stderr), for diagnostics.
    output: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def log(self) -> str:
        return "".join(self.output)


def free_port(host: str = LOOPBACK) -> int:
    # The port is released before the child binds it; another process could grab it in
    # between, which start_apps handles by retrying with a new port.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _pump(stream: IO[str], sink: list[str], lines: queue.Queue[str | None]) -> None:
    # Keep draining the pipe for the app's whole life so a chatty app never blocks on write.
    for line in iter(stream.readline, ""):
        sink.append(line)
        lines.put(line)
    lines.put(None)


@dataclass
class _Child:
    spec: AppSpec
    process: subprocess.Popen[str]
    reader: threading.Thread
    output: list[str] = field(default_factory=list)
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)


def _launch(spec: AppSpec, host: str, port: int) -> _Child:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", spec.module, "--host", host, "--port", str(port), *spec.args]
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module names
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    output: list[str] = []
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_pump, args=(process.stdout, output, lines), daemon=True)
    child = _Child(spec, process, reader, output, lines)
    child.reader.start()
    return child


def _wait_ready(child: _Child, deadline: float) -> str:
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AppStartError(f"{child.spec.name} printed no ready line in time:\n{_log(child)}")
        try:
            line = child.lines.get(timeout=remaining)
        except queue.Empty:
            continue
        if line is None:
            code = child.process.wait()
            raise AppStartError(
                f"{child.spec.name} exited ({code}) before it was ready:\n{_log(child)}"
            )
        match = READY.search(line)
        if match:
            return match.group(1).rstrip("/")


def _log(child: _Child) -> str:
    return "".join(child.output)


def stop(
    process: subprocess.Popen[str], reader: threading.Thread | None = None, timeout: float = 5.0
) -> None:
    """Ask politely (SIGTERM), then insist (SIGKILL); then let the reader finish the pipe."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if reader is not None:
        reader.join(timeout)
    # Closing under a live reader would make it raise; a grandchild still holding the pipe
    # open is the only way to get here with one, and the daemon thread dies with us.
    if process.stdout is not None and (reader is None or not reader.is_alive()):
        process.stdout.close()


def _stop_all(pairs: Sequence[tuple[subprocess.Popen[str], threading.Thread | None]]) -> None:
    # Signal all first so they shut down concurrently, then reap each.
    for process, _ in pairs:
        if process.poll() is None:
            process.terminate()
    for process, reader in pairs:
        stop(process, reader)


def start_apps(
    specs: Sequence[AppSpec], *, host: str = LOOPBACK, timeout: float = 30.0, attempts: int = 3
) -> list[RunningApp]:
    """Start every app in parallel and wait for all; on any failure stop every one launched."""
    launched: list[_Child] = []
    running: list[RunningApp] = []
    try:
        pending = list(specs)
        for attempt in range(attempts):
            batch = [_launch(spec, host, free_port(host)) for spec in pending]
            launched += batch
            deadline = time.monotonic() + timeout
            retry: list[AppSpec] = []
            for child in batch:
                try:
                    url = _wait_ready(child, deadline)
                except AppStartError:
                    lost_port = "address already in use" in _log(child).lower()
                    if not (lost_port and attempt + 1 < attempts):
                        raise
                    retry.append(child.spec)
                    continue
                running.append(
                    RunningApp(child.spec.name, url, child.process, child.output, child.reader)
                )
            if not retry:
                break
            pending = retry
    except BaseException:
        _stop_all([(child.process, child.reader) for child in launched])
        raise
    order = {spec.name: i for i, spec in enumerate(specs)}
    return sorted(running, key=lambda app: order[app.name])


def stop_apps(apps: Sequence[RunningApp]) -> None:
    _stop_all([(app.process, app.reader) for app in apps])


@contextmanager
def running_apps(
    specs: Sequence[AppSpec], *, host: str = LOOPBACK, timeout: float = 30.0
) -> Iterator[list[RunningApp]]:
    """``with running_apps([...]) as apps:`` -- the apps are stopped however the block ends."""
    apps = start_apps(specs, host=host, timeout=timeout)
    try:
        yield apps
    finally:
        stop_apps(apps)


def story_main(label: str, run: Callable[[], int]) -> int:
    """A demo script's exit status: ``run()``'s, 2 when an app did not start (its output on
    stderr), 130 on Ctrl-C (the servers are stopped either way)."""
    try:
        return run()
    except AppStartError as exc:
        print(f"\n{label} FAILED: an example app did not start.\n{exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nInterrupted; servers stopped.", file=sys.stderr)
        return 130
