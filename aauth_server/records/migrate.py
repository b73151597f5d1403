"""Schema migrations (Alembic), shipped with the package.

``python -m aauth_server db upgrade URL`` runs :func:`upgrade`; a store opened with
``migrate=True`` runs it at startup.  The version lives in ``aauth_alembic_version`` so the
records can share a database with an application that uses Alembic itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from .store import RecordStore

VERSION_TABLE = "aauth_alembic_version"
SCRIPTS = Path(__file__).with_name("migrations")


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    return config


def head() -> str:
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert revision is not None
    return revision


def current(store: RecordStore) -> str | None:
    """The revision the database is at (None: never migrated)."""
    with store.connection() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def upgrade(store: RecordStore, revision: str = "head") -> None:
    config = alembic_config()
    with store.connection() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def check_schema(store: RecordStore) -> None:
    at, expected = current(store), head()
    if at != expected:
        found = "no schema" if at is None else f"schema {at}"
        raise ConfigurationError(
            f"the records database has {found}, this code needs {expected}: run "
            f"`python -m aauth_server db upgrade URL` (or open the store with migrate=True)"
        )


__all__ = [
    "SCRIPTS",
    "VERSION_TABLE",
    "alembic_config",
    "check_schema",
    "current",
    "head",
    "upgrade",
]
