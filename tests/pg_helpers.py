"""The real PostgreSQL for tests: where it is, whether it answers, and a fresh schema per process.

With ``CIVICCHAT_REQUIRE_POSTGRES=1`` (CI) an unreachable server fails the tests that need it;
otherwise they skip.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text

from civicchat.storage.engine import create_engine, upgrade

PG_URL = os.environ.get(
    "CIVICCHAT_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REQUIRE_PG = os.environ.get("CIVICCHAT_REQUIRE_POSTGRES") == "1"

_state: dict[str, str | None] = {}


async def pg_unreachable() -> str | None:
    """None when PostgreSQL answers, else why not (checked once per run)."""
    if "error" not in _state:
        engine = create_engine(PG_URL)
        try:
            async with asyncio.timeout(5), engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            _state["error"] = None
        except Exception as exc:
            _state["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            await engine.dispose()
    return _state["error"]


async def require_postgres() -> None:
    """Fail (CI) or skip (locally) the calling test when PostgreSQL does not answer."""
    error = await pg_unreachable()
    if error is None:
        return
    message = f"PostgreSQL at {PG_URL} is unreachable: {error}"
    if REQUIRE_PG:
        pytest.fail(message)
    pytest.skip(message)


async def create_pg_schema(*, migrate: bool = True) -> str:
    """A new schema with a random name, migrated to the head revision unless told not to."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    engine = create_engine(PG_URL, schema=schema)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"CREATE SCHEMA {schema}"))
    finally:
        await engine.dispose()
    if migrate:
        await migrate_pg_schema(schema)
    return schema


async def migrate_pg_schema(schema: str) -> None:
    """Migrate an existing schema to the head revision."""
    engine = create_engine(PG_URL, schema=schema)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


async def drop_pg_schema(schema: str) -> None:
    engine = create_engine(PG_URL)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    finally:
        await engine.dispose()


async def migrate_file(path: str) -> None:
    """Migrate a SQLite file to the head revision."""
    engine = create_engine(path)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()  # closing the last connection checkpoints the WAL into the file


@asynccontextmanager
async def fresh_pg_schema(*, migrate: bool = True) -> AsyncIterator[str]:
    """A fresh schema for one test, dropped afterwards; fails (CI) or skips the test first when
    PostgreSQL does not answer (see ``require_postgres``)."""
    await require_postgres()
    schema = await create_pg_schema(migrate=migrate)
    try:
        yield schema
    finally:
        await drop_pg_schema(schema)


@contextmanager
def fresh_pg_schema_sync(*, migrate: bool = True) -> Iterator[str]:
    """``fresh_pg_schema`` for synchronous tests and fixtures (no event loop may be running)."""
    asyncio.run(require_postgres())
    schema = asyncio.run(create_pg_schema(migrate=migrate))
    try:
        yield schema
    finally:
        asyncio.run(drop_pg_schema(schema))


def shared_pg_schema() -> Iterator[str | None]:
    """For a fixture shared by many tests (``yield from shared_pg_schema()``): one migrated
    schema, dropped at the end, or None when PostgreSQL does not answer (the tests on it then
    fail or skip through ``require_postgres``). No event loop may be running."""
    if asyncio.run(pg_unreachable()) is not None:
        yield None
        return
    schema = asyncio.run(create_pg_schema())
    try:
        yield schema
    finally:
        asyncio.run(drop_pg_schema(schema))


def sqlite_template(directory: Path) -> Path:
    """A migrated SQLite file in ``directory``, to copy for each test (faster than migrating
    each time). No event loop may be running."""
    path = directory / "template.db"
    asyncio.run(migrate_file(str(path)))
    return path


async def empty_pg_schema(schema: str) -> None:
    """Delete every row of the civicchat tables of ``schema`` (ids start again at 1): a schema
    migrated once per module serves each test empty."""
    from civicchat.storage.schema import Base

    engine = create_engine(PG_URL, schema=schema)
    try:
        async with engine.begin() as conn:
            tables = ", ".join(Base.metadata.tables)
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()
