"""Migrated databases for the SQL case store tests: a SQLite file and a PostgreSQL schema.

Like ``tests/storage``: PostgreSQL gets one migrated schema per test process (dropped at the
end) and each test empties the case tables; with ``CIVICCHAT_REQUIRE_POSTGRES=1`` an unreachable
server fails the tests instead of skipping them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

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
    error = await pg_unreachable()
    if error is None:
        return
    message = f"PostgreSQL at {PG_URL} is unreachable: {error}"
    if REQUIRE_PG:
        pytest.fail(message)
    pytest.skip(message)


async def create_pg_schema() -> str:
    schema = f"t_{uuid.uuid4().hex[:16]}"
    engine = create_engine(PG_URL)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"CREATE SCHEMA {schema}"))
    finally:
        await engine.dispose()
    engine = create_engine(PG_URL, schema=schema)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    return schema


async def drop_pg_schema(schema: str) -> None:
    engine = create_engine(PG_URL)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    finally:
        await engine.dispose()


async def migrate_file(path: str) -> None:
    engine = create_engine(path)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


async def sqlite_case_engine(tmp_path: Path, template: Path) -> Any:
    """An engine on a copy of the migrated SQLite template; dispose of it after the test."""
    path = tmp_path / "cases.db"
    shutil.copyfile(template, path)
    return create_engine(str(path))


async def pg_case_engine(schema: str | None) -> Any:
    """An engine on this process's PostgreSQL schema, case tables emptied."""
    await require_postgres()
    assert schema is not None
    engine = create_engine(PG_URL, schema=schema)
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE cases, case_sequences RESTART IDENTITY"))
    return engine
