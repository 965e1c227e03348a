"""Database URLs, engines and migrations.

``sqlite`` URLs and plain file paths get an aiosqlite engine in WAL mode with
``synchronous=NORMAL``, a busy timeout and ``BEGIN IMMEDIATE`` for write transactions (SQLite
has one writer: taking the write lock up front avoids deadlocked upgrades from read to write).
``postgresql`` URLs get an asyncpg engine.
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from civicchat.exceptions import ConfigError, SchemaBehindError, StorageError
from civicchat.storage.schema import SCHEMA_REVISION

__all__ = ["check_schema", "create_engine", "normalise_url", "upgrade"]

_log = logging.getLogger("civicchat.storage")

SQLITE_BUSY_TIMEOUT_MS = 30_000
WRITE_OPTION = "civicchat_write"  # execution option: this transaction will write


def normalise_url(url: str) -> str:
    """Accept ``sqlite:///x.db``, a plain file path or ``postgresql://...``; add the async driver."""
    if "://" not in url:
        if not url or url == ":memory:":
            raise ConfigError(
                "storage needs a database file path or URL, e.g. civicchat.db or "
                "postgresql://user@host/db (an in-memory SQLite database is not durable)"
            )
        return f"sqlite+aiosqlite:///{url}"
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"not a database URL: {exc}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ConfigError("a SQLite URL needs a file path, e.g. sqlite:///civicchat.db")
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif backend in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    else:
        raise ConfigError(f"unsupported database {backend!r}: use SQLite or PostgreSQL")
    return parsed.render_as_string(hide_password=False)


def create_engine(url: str, *, schema: str | None = None, **kwargs: Any) -> AsyncEngine:
    """An async engine for ``url``; ``schema`` sets PostgreSQL's ``search_path`` (tests, tenants)."""
    full = normalise_url(url)
    if full.startswith("sqlite"):
        engine = create_async_engine(full, **kwargs)
        _configure_sqlite(engine)
        return engine
    connect_args: dict[str, Any] = dict(kwargs.pop("connect_args", {}))
    if schema is not None:
        if not schema.replace("_", "").isalnum():
            raise ConfigError(f"invalid schema name {schema!r}")
        connect_args.setdefault("server_settings", {})["search_path"] = schema
    kwargs.setdefault("pool_size", 10)
    # No pre-ping: it costs a round trip per transaction. A connection the server closed fails
    # its statement, is discarded by the pool, and the worker loops retry.
    kwargs.setdefault("pool_recycle", 1800)
    return create_async_engine(full, connect_args=connect_args, **kwargs)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (below), instead of the driver's deferred BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front; readers start a deferred (snapshot) transaction
        # and never wait for a writer in WAL mode.
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _alembic_config(connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option(
        "script_location", str(resources.files("civicchat.storage").joinpath("migrations"))
    )
    cfg.attributes["connection"] = connection
    return cfg


async def upgrade(engine: AsyncEngine, revision: str = "head") -> str | None:
    """Bring the schema up to ``revision``; returns the revision before."""

    def run(connection: Connection) -> str | None:
        before = MigrationContext.configure(connection).get_current_revision()
        command.upgrade(_alembic_config(connection), revision)
        return before

    async with engine.connect() as conn:
        await conn.execution_options(**{WRITE_OPTION: True})
        async with conn.begin():
            before = await conn.run_sync(run)
    _log.info("database schema upgraded from %s to %s", before or "empty", revision)
    return before


async def current_revision(engine: AsyncEngine) -> str | None:
    """The schema revision of the database, ``None`` when it was never migrated."""

    def run(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as conn:
        return await conn.run_sync(run)


async def check_schema(engine: AsyncEngine) -> None:
    """Raise :class:`SchemaBehindError` unless the database is at :data:`SCHEMA_REVISION`."""
    found = await current_revision(engine)
    if found == SCHEMA_REVISION:
        return
    where = engine.url.render_as_string(hide_password=True)
    if found is None or found < SCHEMA_REVISION:
        raise SchemaBehindError(
            f"the database {where} is at schema {found or 'none'}, this civicchat needs "
            f"{SCHEMA_REVISION}: run `civicchat db upgrade --url {where}` "
            f"(base de dades desactualitzada / base de datos desactualizada)"
        )
    raise StorageError(
        f"the database {where} is at schema {found}, newer than this civicchat "
        f"({SCHEMA_REVISION}): upgrade civicchat"
    )
