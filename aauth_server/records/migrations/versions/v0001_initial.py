"""The records' first schema: missions, their updates and log, bindings, issued tokens,
revocations, agent cut-offs, seen agent tokens and the revocation outbox.

Revision ID: 0001
Revises:
Create Date: 2027-01-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "aauth_agent_cutoffs",
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("agent_issuer", sa.Text(), nullable=False),
        sa.Column("agent", sa.Text(), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("issuer", "agent_issuer", "agent"),
    )
    op.create_table(
        "aauth_bindings",
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("agent_issuer", sa.Text(), nullable=False),
        sa.Column("agent", sa.Text(), nullable=False),
        sa.Column("person", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("issuer", "agent_issuer", "agent"),
    )
    op.create_index(
        "ix_aauth_bindings_person", "aauth_bindings", ["issuer", "person"], unique=False
    )
    op.create_table(
        "aauth_issued_tokens",
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("jti", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("aud", sa.Text(), nullable=False),
        sa.Column("iat", sa.Double(), nullable=False),
        sa.Column("exp", sa.Double(), nullable=False),
        sa.Column("agent_issuer", sa.Text(), nullable=True),
        sa.Column("agent", sa.Text(), nullable=True),
        sa.Column("agent_jti", sa.Text(), nullable=True),
        sa.Column("person", sa.Text(), nullable=True),
        sa.Column("sub", sa.Text(), nullable=True),
        sa.Column("mission", sa.Text(), nullable=True),
        sa.Column("scope", sa.Text(), nullable=True),
        sa.Column("upstream_iss", sa.Text(), nullable=True),
        sa.Column("upstream_jti", sa.Text(), nullable=True),
        sa.Column("presented_iss", sa.Text(), nullable=True),
        sa.Column("presented_jti", sa.Text(), nullable=True),
        sa.Column("presented_to", sa.Text(), nullable=True),
        sa.Column("revoked_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("issuer", "jti"),
    )
    op.create_index(
        "ix_aauth_issued_agent",
        "aauth_issued_tokens",
        ["issuer", "agent_issuer", "agent"],
        unique=False,
    )
    op.create_index("ix_aauth_issued_exp", "aauth_issued_tokens", ["issuer", "exp"], unique=False)
    op.create_index(
        "ix_aauth_issued_mission", "aauth_issued_tokens", ["issuer", "mission", "exp"], unique=False
    )
    op.create_index(
        "ix_aauth_issued_presented",
        "aauth_issued_tokens",
        ["issuer", "presented_iss", "presented_jti"],
        unique=False,
    )
    op.create_index(
        "ix_aauth_issued_upstream",
        "aauth_issued_tokens",
        ["issuer", "upstream_iss", "upstream_jti"],
        unique=False,
    )
    op.create_table(
        "aauth_mission_log",
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("s256", sa.Text(), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("agent", sa.Text(), nullable=True),
        sa.Column("resource", sa.Text(), nullable=True),
        sa.Column("scope", sa.Text(), nullable=True),
        sa.Column("decision", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("actor", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("issuer", "s256", "seq"),
    )
    op.create_index(
        "ix_aauth_mission_log_event",
        "aauth_mission_log",
        ["issuer", "s256", "event", "seq"],
        unique=False,
    )
    op.create_index(
        "ix_aauth_mission_log_resource",
        "aauth_mission_log",
        ["issuer", "s256", "resource", "seq"],
        unique=False,
    )
    op.create_table(
        "aauth_mission_updates",
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("s256", sa.Text(), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("blob", sa.LargeBinary(), nullable=False),
        sa.Column("digest", sa.Text(), nullable=False),
        sa.Column("accepted_at", sa.Double(), nullable=False),
        sa.Column("accepted_by", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("issuer", "s256", "seq"),
    )
    op.create_table(
        "aauth_missions",
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("s256", sa.Text(), nullable=False),
        sa.Column("blob", sa.LargeBinary(), nullable=False),
        sa.Column("agent_issuer", sa.Text(), nullable=False),
        sa.Column("agent", sa.Text(), nullable=False),
        sa.Column("person", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("termination_reason", sa.Text(), nullable=True),
        sa.Column("approved_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=True),
        sa.Column("status_at", sa.Double(), nullable=False),
        sa.Column("log_seq", sa.Integer(), nullable=False),
        sa.Column("update_seq", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("issuer", "s256"),
    )
    op.create_index(
        "ix_aauth_missions_agent",
        "aauth_missions",
        ["issuer", "agent_issuer", "agent"],
        unique=False,
    )
    op.create_index(
        "ix_aauth_missions_person",
        "aauth_missions",
        ["issuer", "person", "approved_at"],
        unique=False,
    )
    op.create_table(
        "aauth_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("recipient", sa.Text(), nullable=False),
        sa.Column("jti", sa.Text(), nullable=False),
        sa.Column("exp", sa.Double(), nullable=False),
        sa.Column("mission", sa.Text(), nullable=True),
        sa.Column("token_type", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.Double(), nullable=False),
        sa.Column("lease_until", sa.Double(), nullable=True),
        sa.Column("poll_url", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("finished_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("issuer", "kind", "recipient", "jti", name="uq_aauth_outbox_item"),
    )
    op.create_index(
        "ix_aauth_outbox_due", "aauth_outbox", ["issuer", "status", "next_at"], unique=False
    )
    op.create_index("ix_aauth_outbox_mission", "aauth_outbox", ["issuer", "mission"], unique=False)
    op.create_table(
        "aauth_revocations",
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("token_iss", sa.Text(), nullable=False),
        sa.Column("jti", sa.Text(), nullable=False),
        sa.Column("exp", sa.Double(), nullable=False),
        sa.Column("revoked_at", sa.Double(), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("issuer", "token_iss", "jti"),
    )
    op.create_index(
        "ix_aauth_revocations_exp", "aauth_revocations", ["issuer", "exp"], unique=False
    )
    op.create_table(
        "aauth_seen_tokens",
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("token_iss", sa.Text(), nullable=False),
        sa.Column("jti", sa.Text(), nullable=False),
        sa.Column("sub", sa.Text(), nullable=False),
        sa.Column("exp", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("issuer", "token_iss", "jti"),
    )
    op.create_index("ix_aauth_seen_exp", "aauth_seen_tokens", ["issuer", "exp"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_aauth_seen_exp", table_name="aauth_seen_tokens")
    op.drop_table("aauth_seen_tokens")
    op.drop_index("ix_aauth_revocations_exp", table_name="aauth_revocations")
    op.drop_table("aauth_revocations")
    op.drop_index("ix_aauth_outbox_mission", table_name="aauth_outbox")
    op.drop_index("ix_aauth_outbox_due", table_name="aauth_outbox")
    op.drop_table("aauth_outbox")
    op.drop_index("ix_aauth_missions_person", table_name="aauth_missions")
    op.drop_index("ix_aauth_missions_agent", table_name="aauth_missions")
    op.drop_table("aauth_missions")
    op.drop_table("aauth_mission_updates")
    op.drop_index("ix_aauth_mission_log_resource", table_name="aauth_mission_log")
    op.drop_index("ix_aauth_mission_log_event", table_name="aauth_mission_log")
    op.drop_table("aauth_mission_log")
    op.drop_index("ix_aauth_issued_upstream", table_name="aauth_issued_tokens")
    op.drop_index("ix_aauth_issued_presented", table_name="aauth_issued_tokens")
    op.drop_index("ix_aauth_issued_mission", table_name="aauth_issued_tokens")
    op.drop_index("ix_aauth_issued_exp", table_name="aauth_issued_tokens")
    op.drop_index("ix_aauth_issued_agent", table_name="aauth_issued_tokens")
    op.drop_table("aauth_issued_tokens")
    op.drop_index("ix_aauth_bindings_person", table_name="aauth_bindings")
    op.drop_table("aauth_bindings")
    op.drop_table("aauth_agent_cutoffs")
