"""Durable records in SQL: missions, their logs, bindings, issued tokens, revocations and
the outbound-revocation outbox (SQLAlchemy 2 Core; SQLite embedded, PostgreSQL with psycopg 3).

::

    from aauth_server.records import RecordOps, RecordStore

    store = RecordStore("sqlite:///records.db", migrate=True)
    ops = RecordOps("https://ps.example")          # every row is this issuer's
    store.run(ops.revoke("https://ap.example", "jti-1", exp=..., now=...))
    await store.arun(ops.is_revoked("https://ap.example", "jti-1"))

See ``docs/records.md``.  Importing this package needs the ``records`` extra.
"""

from __future__ import annotations

from .ops import (
    ACTIVE,
    OUTBOX_TERMINAL,
    PENDING,
    STATUSES,
    SUSPENDED,
    TERMINATED,
    RecordOps,
    RequestFacts,
)
from .rows import IssuedToken, LogEntry, MissionRow, MissionUpdateRow, OutboxItem
from .store import (
    RecordConflict,
    RecordOp,
    RecordStore,
    RecordsUnavailable,
    open_record_store,
)
from .txn import InsertIgnore, Rows, Sql, Txn, Work, transaction

__all__ = [
    "ACTIVE",
    "OUTBOX_TERMINAL",
    "PENDING",
    "STATUSES",
    "SUSPENDED",
    "TERMINATED",
    "InsertIgnore",
    "IssuedToken",
    "LogEntry",
    "MissionRow",
    "MissionUpdateRow",
    "OutboxItem",
    "RecordConflict",
    "RecordOp",
    "RecordOps",
    "RecordStore",
    "RecordsUnavailable",
    "RequestFacts",
    "Rows",
    "Sql",
    "Txn",
    "Work",
    "open_record_store",
    "transaction",
]
