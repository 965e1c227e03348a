"""Conversations: assigned_at, last_operator and topic (the rest of routing's ConversationView).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 09:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import civicchat.storage.schema  # UTCDateTime: zone-aware on SQLite too

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "assigned_at", civicchat.storage.schema.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column(
                "last_operator",
                sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("topic", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_column("topic")
        batch_op.drop_column("last_operator")
        batch_op.drop_column("assigned_at")
