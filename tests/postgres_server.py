"""A real PostgreSQL for tests, never one the suite did not create a database in.

``fresh_database()`` yields a ``postgresql+psycopg://`` URL of a database made for the caller
(unique name ``aauth_test_<hex>``) and drops it afterwards.  The server is, in order:

1. whatever answers on 127.0.0.1:5432 and lets the ``postgres`` role in without a password
   (the machine's own cluster, as ``make sysdeps`` installs it): only databases this suite
   creates are written to, and each is dropped at the end;
2. otherwise a private cluster started once per test process: ``initdb`` and ``pg_ctl`` from
   ``/usr/lib/postgresql/*/bin`` (run as the ``postgres`` user when we are root, since
   ``initdb`` refuses root), data and socket in a temporary folder, a free port on
   127.0.0.1, trust authentication on loopback only; stopped and deleted at exit.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

SYSTEM = ("127.0.0.1", 5432)
_servers: list[PrivateCluster] = []
_base: list[str] = []


def _admin_dsn(host: str, port: int) -> str:
    return f"host={host} port={port} user=postgres dbname=postgres connect_timeout=3"


def _lets_postgres_in(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            pass
    except OSError:
        return False
    try:
        with psycopg.connect(_admin_dsn(host, port), autocommit=True) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    which = shutil.which(name)
    if which is None:
        raise RuntimeError(f"{name} not found: install postgresql (make sysdeps)")
    return which


class PrivateCluster:
    """A throwaway PostgreSQL cluster in a temporary folder."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="aauth-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.user: str | None = "postgres" if os.geteuid() == 0 else None

    def _run(self, *args: str) -> None:
        env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        command = list(args)
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        result = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=120, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {result.stdout}{result.stderr}")

    def start(self) -> PrivateCluster:
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self._run(
            _bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"
        )
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-w", "-t", "60", "start")
        return self

    def stop(self) -> None:
        if self.data.exists():
            try:
                self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
            except RuntimeError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


def server() -> tuple[str, int]:
    """Host and port of a PostgreSQL that lets ``postgres`` in (started on first use)."""
    if _lets_postgres_in(*SYSTEM):
        return SYSTEM
    if not _servers:
        cluster = PrivateCluster().start()
        _servers.append(cluster)
        atexit.register(cluster.stop)
    return "127.0.0.1", _servers[0].port


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty database for the caller; dropped (connections and all) at the end."""
    host, port = server()
    name = "aauth_test_" + uuid.uuid4().hex
    with psycopg.connect(_admin_dsn(host, port), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@{host}:{port}/{name}"
    finally:
        with psycopg.connect(_admin_dsn(host, port), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


__all__ = ["PrivateCluster", "fresh_database", "server"]
