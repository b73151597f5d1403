"""Alembic environment for the records: runs on the connection the caller hands over
(``config.attributes["connection"]``), or on ``sqlalchemy.url`` when run by ``alembic``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from aauth_server.records.migrate import VERSION_TABLE
from aauth_server.records.schema import metadata


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        url = context.config.get_main_option("sqlalchemy.url")
        assert url, "set sqlalchemy.url or pass a connection"
        with create_engine(url).begin() as own:
            _migrate(own)
    else:
        _migrate(connection)


def _migrate(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
