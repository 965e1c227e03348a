"""Indexes on media_refs for erasure and retention.

Erasure and retention delete a media file only when no row names it any more (a lookup by
``blob_key``), and retention finds media rows left behind by age per account; both scanned the
whole table.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 15:10:00
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_media_refs_blob_key", "media_refs", ["blob_key"])
    op.create_index("ix_media_refs_account_created", "media_refs", ["account", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_media_refs_account_created", table_name="media_refs")
    op.drop_index("ix_media_refs_blob_key", table_name="media_refs")
