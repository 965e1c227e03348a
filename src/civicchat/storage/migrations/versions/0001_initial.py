"""Initial schema: inbox, outbox, contacts, conversations, operators, media, audit, stats.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-28 08:40:09.459532
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import civicchat.storage.schema  # UTCDateTime: zone-aware on SQLite too

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", civicchat.storage.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("account", sa.String(length=128), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_account_at", ["account", "at"], unique=False)

    op.create_table(
        "contacts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column(
            "created_at", civicchat.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contacts")),
    )
    op.create_table(
        "inbox_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("sender_id", sa.String(length=255), nullable=False),
        sa.Column("conversation_key", sa.String(length=512), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column(
            "received_at", civicchat.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "next_attempt_at", civicchat.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "lease_until", civicchat.storage.schema.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("worker_id", sa.String(length=128), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "conversation_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "processed_at", civicchat.storage.schema.UTCDateTime(timezone=True), nullable=True
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_events")),
        sa.UniqueConstraint("channel", "account", "key", name="uq_inbox_events_key"),
    )
    with op.batch_alter_table("inbox_events", schema=None) as batch_op:
        batch_op.create_index("ix_inbox_events_conversation", ["conversation_id"], unique=False)
        batch_op.create_index(
            "ix_inbox_events_due",
            ["id"],
            unique=False,
            postgresql_where=sa.text("state IN ('pending', 'processing', 'failed')"),
            sqlite_where=sa.text("state IN ('pending', 'processing', 'failed')"),
        )
        batch_op.create_index(
            "ix_inbox_events_open",
            ["conversation_key", "id"],
            unique=False,
            postgresql_where=sa.text("state IN ('pending', 'processing', 'failed')"),
            sqlite_where=sa.text("state IN ('pending', 'processing', 'failed')"),
        )
        batch_op.create_index(
            "ix_inbox_events_sender", ["channel", "account", "sender_id"], unique=False
        )

    op.create_table(
        "keyword_counts",
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("keyword_id", sa.String(length=128), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("account", "keyword_id", "day", name=op.f("pk_keyword_counts")),
    )
    op.create_table(
        "media_refs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("media_id", sa.String(length=512), nullable=False),
        sa.Column("event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column(
            "created_at", civicchat.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "next_attempt_at", civicchat.storage.schema.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "lease_until", civicchat.storage.schema.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("worker_id", sa.String(length=128), nullable=True),
        sa.Column("mime_type", sa.String(length=255), nullable=True),
        sa.Column("blob_key", sa.String(length=512), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_media_refs")),
        sa.UniqueConstraint("channel", "account", "media_id", name="uq_media_refs_media"),
    )
    with op.batch_alter_table("media_refs", schema=None) as batch_op:
        batch_op.create_index("ix_media_refs_due", ["state", "next_attempt_at"], unique=False)
        batch_op.create_index("ix_media_refs_event", ["event_id"], unique=False)

    op.create_table(
        "operators",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("login", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=True),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("languages", sa.String(length=255), nullable=False),
        sa.Column("teams", sa.Text(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("presence", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operators")),
        sa.UniqueConstraint("login", name="uq_operators_login"),
    )
    with op.batch_alter_table("operators", schema=None) as batch_op:
        batch_op.create_index("ix_operators_account", ["account"], unique=False)

    op.create_table(
        "outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column(
            "inbound_event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "conversation_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("recipient_id", sa.String(length=255), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column(
            "created_at", civicchat.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "next_attempt_at", civicchat.storage.schema.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "lease_until", civicchat.storage.schema.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("worker_id", sa.String(length=128), nullable=True),
        sa.Column("provider_message_id", sa.String(length=255), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", civicchat.storage.schema.UTCDateTime(timezone=True), nullable=True),
        sa.Column("status_at", civicchat.storage.schema.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("key", name="uq_outbox_key"),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_conversation", ["conversation_id"], unique=False)
        batch_op.create_index(
            "ix_outbox_due",
            ["id"],
            unique=False,
            postgresql_where=sa.text("status = 'queued'"),
            sqlite_where=sa.text("status = 'queued'"),
        )
        batch_op.create_index(
            "ix_outbox_provider_id", ["channel", "account", "provider_message_id"], unique=False
        )
        batch_op.create_index(
            "ix_outbox_queued",
            ["channel", "account", "recipient_id", "id"],
            unique=False,
            postgresql_where=sa.text("status = 'queued'"),
            sqlite_where=sa.text("status = 'queued'"),
        )

    op.create_table(
        "conversations",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column(
            "contact_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("recipient_id", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column(
            "created_at", civicchat.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column(
            "assigned_operator", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("queued_at", civicchat.storage.schema.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "last_inbound_at", civicchat.storage.schema.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "last_operator_reply_at",
            civicchat.storage.schema.UTCDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column("last_ack_period", sa.String(length=64), nullable=True),
        sa.Column("last_out_of_hours_period", sa.String(length=64), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("team", sa.String(length=64), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_conversations_contact_id_contacts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversations")),
    )
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.create_index("ix_conversations_account_state", ["account", "state"], unique=False)
        batch_op.create_index("ix_conversations_activity", ["last_inbound_at"], unique=False)
        batch_op.create_index(
            "ix_conversations_contact", ["channel", "account", "contact_id", "id"], unique=False
        )

    op.create_table(
        "identities",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "contact_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_identities_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identities")),
        sa.UniqueConstraint("channel", "account", "external_id", name="uq_identities_external"),
    )
    op.create_table(
        "assignments",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "conversation_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "operator_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "assigned_at", civicchat.storage.schema.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "released_at", civicchat.storage.schema.UTCDateTime(timezone=True), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_assignments_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operators.id"],
            name=op.f("fk_assignments_operator_id_operators"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assignments")),
    )
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.create_index(
            "ix_assignments_conversation", ["conversation_id", "released_at"], unique=False
        )
        batch_op.create_index(
            "ix_assignments_operator", ["operator_id", "released_at"], unique=False
        )

    op.create_table(
        "conversation_history",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "conversation_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("at", civicchat.storage.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("from_state", sa.String(length=32), nullable=True),
        sa.Column("to_state", sa.String(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_conversation_history_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversation_history")),
    )
    with op.batch_alter_table("conversation_history", schema=None) as batch_op:
        batch_op.create_index(
            "ix_conversation_history_conversation", ["conversation_id", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("conversation_history", schema=None) as batch_op:
        batch_op.drop_index("ix_conversation_history_conversation")

    op.drop_table("conversation_history")
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.drop_index("ix_assignments_operator")
        batch_op.drop_index("ix_assignments_conversation")

    op.drop_table("assignments")
    op.drop_table("identities")
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_index("ix_conversations_contact")
        batch_op.drop_index("ix_conversations_activity")
        batch_op.drop_index("ix_conversations_account_state")

    op.drop_table("conversations")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_outbox_queued",
            postgresql_where=sa.text("status = 'queued'"),
            sqlite_where=sa.text("status = 'queued'"),
        )
        batch_op.drop_index("ix_outbox_provider_id")
        batch_op.drop_index("ix_outbox_due")
        batch_op.drop_index("ix_outbox_conversation")

    op.drop_table("outbox")
    with op.batch_alter_table("operators", schema=None) as batch_op:
        batch_op.drop_index("ix_operators_account")

    op.drop_table("operators")
    with op.batch_alter_table("media_refs", schema=None) as batch_op:
        batch_op.drop_index("ix_media_refs_event")
        batch_op.drop_index("ix_media_refs_due")

    op.drop_table("media_refs")
    op.drop_table("keyword_counts")
    with op.batch_alter_table("inbox_events", schema=None) as batch_op:
        batch_op.drop_index("ix_inbox_events_sender")
        batch_op.drop_index(
            "ix_inbox_events_open",
            postgresql_where=sa.text("state IN ('pending', 'processing', 'failed')"),
            sqlite_where=sa.text("state IN ('pending', 'processing', 'failed')"),
        )
        batch_op.drop_index("ix_inbox_events_due")
        batch_op.drop_index("ix_inbox_events_conversation")

    op.drop_table("inbox_events")
    op.drop_table("contacts")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_account_at")

    op.drop_table("audit_log")
