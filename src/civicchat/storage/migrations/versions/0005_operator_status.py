"""Operators' last sign of life (presence that expires) and disabling.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import civicchat.storage.schema  # UTCDateTime: zone-aware on SQLite too

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_UTC = civicchat.storage.schema.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "operator_status",
        sa.Column(
            "operator_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("seen_at", _UTC(timezone=True), nullable=True),
        sa.Column("disabled_at", _UTC(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["operator_id"],
            ["operators.id"],
            name=op.f("fk_operator_status_operator_id_operators"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("operator_id", name=op.f("pk_operator_status")),
    )


def downgrade() -> None:
    op.drop_table("operator_status")
