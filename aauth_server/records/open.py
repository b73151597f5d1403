"""Opening a server's durable records from its configuration value (a URL, a
``RecordStore``, or None for a database in this process's memory).  Shared by the Access
Server; the Person Server's config does the same inline."""

from __future__ import annotations

import logging

from .store import RecordStore

log = logging.getLogger("aauth_server.records")
MEMORY_RECORDS = "sqlite://"


def open_records(records: str | RecordStore | None, *, migrate: bool, who: str) -> RecordStore:
    """The records ``records`` names, schema checked (``ConfigurationError`` otherwise).

    In memory (None or ``sqlite://``) the schema is always migrated; a file or server
    database is migrated only with ``migrate`` (else it must be current).
    """
    if isinstance(records, RecordStore):
        store = records
    elif records is None:
        log.warning(
            "aauth_server: %s keeps its records in memory: issued tokens and revocations "
            "are lost on restart (set records=sqlite:///path)",
            who,
        )
        store = RecordStore(MEMORY_RECORDS, migrate=True)
    else:
        store = RecordStore(records, migrate=migrate)
        if store.memory and not migrate:
            from .migrate import upgrade

            upgrade(store)
    store.check()
    return store
