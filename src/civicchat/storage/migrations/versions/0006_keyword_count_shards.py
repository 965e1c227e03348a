"""Keyword counts in shards: concurrent workers no longer queue on one counter row.

Every answered keyword adds one to its (account, keyword, day) row inside the worker's
transaction; under load all inbox workers wrote the same row and each waited for the previous
one's commit. A count is now the sum of up to 16 rows; each transaction writes one shard.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("keyword_counts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("shard", sa.SmallInteger(), nullable=False, server_default="0")
        )
        batch_op.drop_constraint("pk_keyword_counts", type_="primary")
        batch_op.create_primary_key("pk_keyword_counts", ["account", "keyword_id", "day", "shard"])


def downgrade() -> None:
    # Fold the shards back into one row per (account, keyword, day).
    op.execute(
        "CREATE TABLE keyword_counts_folded AS SELECT account, keyword_id, day,"
        " SUM(count) AS count FROM keyword_counts GROUP BY account, keyword_id, day"
    )
    op.execute("DELETE FROM keyword_counts")
    op.execute(
        "INSERT INTO keyword_counts (account, keyword_id, day, count, shard)"
        " SELECT account, keyword_id, day, count, 0 FROM keyword_counts_folded"
    )
    op.drop_table("keyword_counts_folded")
    with op.batch_alter_table("keyword_counts", schema=None) as batch_op:
        batch_op.drop_constraint("pk_keyword_counts", type_="primary")
        batch_op.create_primary_key("pk_keyword_counts", ["account", "keyword_id", "day"])
        batch_op.drop_column("shard")
