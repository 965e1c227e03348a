"""Alembic environment: runs on a connection handed over by :func:`civicchat.storage.migrate`."""

from __future__ import annotations

from alembic import context

from civicchat.storage.schema import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached through a bare ``alembic`` command
    raise RuntimeError("run migrations with `civicchat db upgrade --url URL`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
