"""The durable records' tables (SQLAlchemy Core).

Every table starts with ``issuer``: the identifier of the server that owns the row, so
several servers (a PS and an AS, or two tenants' PSes) can share one database without
seeing each other's rows.  Times are epoch seconds (``DOUBLE PRECISION``); bytes that are
hashed (mission blobs and updates) are stored as ``BLOB``/``BYTEA`` exactly as hashed.

The Alembic migrations in ``migrations/versions`` create exactly these tables; a test
compares the two, so a change here without a migration fails the suite.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Double,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()


def _issuer() -> Column[str]:
    return Column("issuer", Text, primary_key=True)


missions = Table(
    "aauth_missions",
    metadata,
    _issuer(),
    Column("s256", Text, primary_key=True),
    Column("blob", LargeBinary, nullable=False),
    Column("agent_issuer", Text, nullable=False),
    Column("agent", Text, nullable=False),
    Column("person", Text, nullable=False),
    #: ``active``, ``suspended`` (our extension) or ``terminated``.
    Column("status", Text, nullable=False),
    Column("termination_reason", Text),
    Column("approved_at", Double, nullable=False),
    Column("expires_at", Double),
    Column("status_at", Double, nullable=False),
    #: The number of the last log entry (appends take the next one under the row's lock).
    Column("log_seq", Integer, nullable=False),
    Column("update_seq", Integer, nullable=False),
    Index("ix_aauth_missions_person", "issuer", "person", "approved_at"),
    Index("ix_aauth_missions_agent", "issuer", "agent_issuer", "agent"),
)

mission_updates = Table(
    "aauth_mission_updates",
    metadata,
    _issuer(),
    Column("s256", Text, primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("blob", LargeBinary, nullable=False),
    Column("digest", Text, nullable=False),
    Column("accepted_at", Double, nullable=False),
    Column("accepted_by", Text, nullable=False),
)

mission_log = Table(
    "aauth_mission_log",
    metadata,
    _issuer(),
    Column("s256", Text, primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", Double, nullable=False),
    Column("event", Text, nullable=False),
    Column("agent", Text),
    Column("resource", Text),
    Column("scope", Text),
    Column("decision", Text),
    Column("reason", Text),
    Column("actor", Text),
    #: Everything else of the entry, as compact JSON.
    Column("detail", Text),
    Index("ix_aauth_mission_log_event", "issuer", "s256", "event", "seq"),
    Index("ix_aauth_mission_log_resource", "issuer", "s256", "resource", "seq"),
)

bindings = Table(
    "aauth_bindings",
    metadata,
    _issuer(),
    Column("agent_issuer", Text, primary_key=True),
    Column("agent", Text, primary_key=True),
    Column("person", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    Index("ix_aauth_bindings_person", "issuer", "person"),
)

issued_tokens = Table(
    "aauth_issued_tokens",
    metadata,
    _issuer(),
    Column("jti", Text, primary_key=True),
    #: ``person`` or ``auth`` (any short name a role needs).
    Column("type", Text, nullable=False),
    Column("aud", Text, nullable=False),
    Column("iat", Double, nullable=False),
    Column("exp", Double, nullable=False),
    Column("agent_issuer", Text),
    Column("agent", Text),
    Column("agent_jti", Text),
    Column("person", Text),
    Column("sub", Text),
    Column("mission", Text),
    Column("scope", Text),
    #: Chaining: the upstream token this one was issued from.
    Column("upstream_iss", Text),
    Column("upstream_jti", Text),
    #: The token the request presented (an AS records the person token's ``(iss, jti)``).
    Column("presented_iss", Text),
    Column("presented_jti", Text),
    #: Which Access Server a person token was presented to (the PS revokes it there too).
    Column("presented_to", Text),
    Column("revoked_at", Double),
    Index("ix_aauth_issued_mission", "issuer", "mission", "exp"),
    Index("ix_aauth_issued_agent", "issuer", "agent_issuer", "agent"),
    Index("ix_aauth_issued_upstream", "issuer", "upstream_iss", "upstream_jti"),
    Index("ix_aauth_issued_presented", "issuer", "presented_iss", "presented_jti"),
    Index("ix_aauth_issued_exp", "issuer", "exp"),
)

revocations = Table(
    "aauth_revocations",
    metadata,
    _issuer(),
    #: The issuer of the revoked token (the verified caller that revoked it, or ourselves).
    Column("token_iss", Text, primary_key=True),
    Column("jti", Text, primary_key=True),
    Column("exp", Double, nullable=False),
    Column("revoked_at", Double, nullable=False),
    #: Why, for the audit trail: ``caller`` (revoked at our endpoint), ``mission``, ...
    Column("source", Text),
    Index("ix_aauth_revocations_exp", "issuer", "exp"),
)

agent_cutoffs = Table(
    "aauth_agent_cutoffs",
    metadata,
    _issuer(),
    Column("agent_issuer", Text, primary_key=True),
    Column("agent", Text, primary_key=True),
    #: Tokens and requests of this agent from before ``at`` are revoked.
    Column("at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
)

seen_tokens = Table(
    "aauth_seen_tokens",
    metadata,
    _issuer(),
    Column("token_iss", Text, primary_key=True),
    Column("jti", Text, primary_key=True),
    Column("sub", Text, nullable=False),
    Column("exp", Double, nullable=False),
    Index("ix_aauth_seen_exp", "issuer", "exp"),
)

outbox = Table(
    "aauth_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("issuer", Text, nullable=False),
    #: What to send: ``revoke`` (a token revocation, digest 5.7).
    Column("kind", Text, nullable=False),
    #: The server it goes to (a resource or an Access Server identifier).
    Column("recipient", Text, nullable=False),
    Column("jti", Text, nullable=False),
    Column("exp", Double, nullable=False),
    Column("mission", Text),
    Column("token_type", Text),
    #: ``pending`` until a terminal outcome: ``revoked``, ``unsupported`` (no endpoint: the
    #: token is honoured until ``exp``), ``unavailable`` or ``expired`` (gave up at ``exp``).
    Column("status", Text, nullable=False),
    Column("detail", Text),
    Column("attempts", Integer, nullable=False),
    Column("next_at", Double, nullable=False),
    Column("lease_until", Double),
    Column("poll_url", Text),
    Column("created_at", Double, nullable=False),
    Column("finished_at", Double),
    UniqueConstraint("issuer", "kind", "recipient", "jti", name="uq_aauth_outbox_item"),
    Index("ix_aauth_outbox_due", "issuer", "status", "next_at"),
    Index("ix_aauth_outbox_mission", "issuer", "mission"),
)

__all__ = [
    "agent_cutoffs",
    "bindings",
    "issued_tokens",
    "metadata",
    "mission_log",
    "mission_updates",
    "missions",
    "outbox",
    "revocations",
    "seen_tokens",
]
