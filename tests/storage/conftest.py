"""Fixtures: every contract test runs on a SQLite file and on the real PostgreSQL.

PostgreSQL tests each get their own schema, dropped afterwards, so parallel and repeated runs
never collide. With ``CIVICCHAT_REQUIRE_POSTGRES=1`` (CI) an unreachable server fails them.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from civicchat.clock import ManualClock
from civicchat.storage.engine import create_engine, upgrade
from civicchat.storage.sql import SqlStore

PG_URL = os.environ.get(
    "CIVICCHAT_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REQUIRE_PG = os.environ.get("CIVICCHAT_REQUIRE_POSTGRES") == "1"

_pg_state: dict[str, str | None] = {}


async def _pg_unreachable() -> str | None:
    """None when PostgreSQL answers, else why not (checked once per run)."""
    if "error" not in _pg_state:
        engine = create_engine(PG_URL)
        try:
            async with asyncio.timeout(5), engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            _pg_state["error"] = None
        except Exception as exc:
            _pg_state["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            await engine.dispose()
    return _pg_state["error"]


async def require_postgres() -> None:
    error = await _pg_unreachable()
    if error is None:
        return
    message = f"PostgreSQL at {PG_URL} is unreachable: {error}"
    if REQUIRE_PG:
        pytest.fail(message)
    pytest.skip(message)


@dataclass(frozen=True)
class Target:
    """A database to test on: a URL, and for PostgreSQL the schema of this test."""

    backend: str
    url: str
    schema: str | None = None


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def target(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[Target]:
    if request.param == "sqlite":
        yield Target("sqlite", str(tmp_path / "civicchat.db"))
        return
    await require_postgres()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(PG_URL)
    async with admin.begin() as conn:
        await conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield Target("postgres", PG_URL, schema)
    finally:
        async with admin.begin() as conn:
            await conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        await admin.dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))


@pytest.fixture
async def store(target: Target, clock: ManualClock) -> AsyncIterator[SqlStore]:
    engine = create_engine(target.url, schema=target.schema)
    await upgrade(engine)
    s = SqlStore(engine, clock=clock)
    try:
        yield s
    finally:
        await s.close()
