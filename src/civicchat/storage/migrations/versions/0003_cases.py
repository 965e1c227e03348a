"""Cases (complaints and street incidents): the cases table and its reference counters.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import civicchat.storage.schema  # UTCDateTime: zone-aware on SQLite too

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_UTC = civicchat.storage.schema.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "case_sequences",
        sa.Column("prefix", sa.String(length=8), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("last", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("prefix", "year", name=op.f("pk_case_sequences")),
    )
    op.create_table(
        "cases",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("reference", sa.String(length=32), nullable=False),
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("department", sa.String(length=64), nullable=True),
        sa.Column("created_at", _UTC(timezone=True), nullable=False),
        sa.Column("updated_at", _UTC(timezone=True), nullable=False),
        sa.Column("anonymised_at", _UTC(timezone=True), nullable=True),
        sa.Column("open311_next_at", _UTC(timezone=True), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cases")),
        sa.UniqueConstraint("reference", name="uq_cases_reference"),
    )
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.create_index("ix_cases_account_created", ["account", "created_at"], unique=False)
        batch_op.create_index("ix_cases_status", ["status", "updated_at"], unique=False)
        batch_op.create_index("ix_cases_open311_due", ["open311_next_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index("ix_cases_open311_due")
        batch_op.drop_index("ix_cases_status")
        batch_op.drop_index("ix_cases_account_created")
    op.drop_table("cases")
    op.drop_table("case_sequences")
