"""Schema migrations ship with the package: the migrated schema is exactly the tables the
code uses (on SQLite and PostgreSQL), ``python -m aauth_server db upgrade URL`` applies them,
an unmigrated database is refused at startup, and database outages map to 503-able errors."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from aauth_server.errors import ConfigurationError
from aauth_server.records import RecordOps, RecordStore, RecordsUnavailable
from aauth_server.records.migrate import VERSION_TABLE, current, head
from aauth_server.records.schema import metadata
from aauth_server.steps import Driver
from aauth_server.storage.memory import AsyncMemoryStore, MemoryState, MemoryStore
from tests.records.conftest import database_url

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("backend", ["sqlite-file", "postgresql"])
def test_the_migrated_schema_is_the_schema_the_code_uses(backend: str, tmp_path: Path) -> None:
    with database_url(backend, tmp_path) as url:
        store = RecordStore(url, migrate=True)
        try:
            with store.connection() as conn:
                context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
                diff = compare_metadata(context, metadata)
            assert diff == []
            assert current(store) == head()
            store.check()
        finally:
            store.close()


@pytest.mark.parametrize("backend", ["sqlite-file", "postgresql"])
def test_the_command_line_upgrades_and_reports(backend: str, tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "aauth_server", "db", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    with database_url(backend, tmp_path) as url:
        before = cli("current", url)
        assert before.returncode == 1 and "records at none" in before.stdout
        store = RecordStore(url)
        with pytest.raises(ConfigurationError, match="db upgrade"):
            store.check()  # fails at startup, naming the command
        store.close()
        done = cli("upgrade", url)
        assert done.returncode == 0, done.stderr
        assert head() in done.stdout
        after = cli("current", url)
        assert after.returncode == 0 and f"records at {head()}" in after.stdout
        assert cli("upgrade", url).returncode == 0  # idempotent
        again = RecordStore(url)
        again.check()
        again.close()
    bad = cli("upgrade", "mysql://x@y/z")
    assert bad.returncode == 2 and "unsupported database" in bad.stderr


@pytest.mark.parametrize(
    "url",
    ["redis://localhost", "sqlite+pysqlcipher:///x", "postgresql://u@h/d", "not a url"],
)
def test_unsupported_urls_fail_at_configuration(url: str) -> None:
    with pytest.raises(ConfigurationError):
        RecordStore(url)


def test_an_unreachable_database_is_unavailable_not_a_crash() -> None:
    from tests.redis_server import free_port

    store = RecordStore(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x")
    ops = RecordOps("https://ps.example")
    with pytest.raises(RecordsUnavailable):
        store.run(ops.is_revoked("a", "b"))

    async def main() -> None:
        try:
            with pytest.raises(RecordsUnavailable):
                await store.arun(ops.is_revoked("a", "b"))
        finally:
            await store.aclose()

    asyncio.run(main())
    store.close()


def test_record_transactions_run_as_steps_under_both_drivers(tmp_path: Path) -> None:
    """The PS yields ``store.op(txn)`` beside its pending-store steps; either driver runs it."""
    store = RecordStore(f"sqlite:///{tmp_path / 'r.db'}", migrate=True)
    ops = RecordOps("https://ps.example")
    state = MemoryState()
    driver = Driver(None, MemoryStore(state), AsyncMemoryStore(state))  # type: ignore[arg-type]

    def steps(jti: str):  # type: ignore[no-untyped-def]
        new = yield store.op(ops.revoke("https://ap.example", jti, exp=2e9, now=1e9))
        found = yield store.op(ops.is_revoked("https://ap.example", jti))
        return new, found

    assert driver.run(steps("a")) == (True, True)

    async def main() -> tuple[bool, bool]:
        try:
            return await driver.arun(steps("b"))
        finally:
            await store.aclose()

    assert asyncio.run(main()) == (True, True)
    assert driver.run(steps("a")) == (False, True)
    store.close()


def test_the_memory_database_is_one_database_for_both_faces() -> None:
    store = RecordStore("sqlite://", migrate=True)
    ops = RecordOps("https://ps.example")
    store.run(ops.revoke("i", "j", exp=2e9, now=1e9))
    assert asyncio.run(store.arun(ops.is_revoked("i", "j")))
    store.close()
