"""Fixtures: every contract test runs on a SQLite file and on the real PostgreSQL.

On PostgreSQL each test process migrates its own schema once (dropped at the end) and each test
empties its tables first, so parallel and repeated runs never collide. With ``CIVICCHAT_REQUIRE_POSTGRES=1`` (CI) an unreachable server fails them.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from civicchat.clock import ManualClock
from civicchat.storage.engine import create_engine
from civicchat.storage.schema import Base
from civicchat.storage.sql import SqlStore
from pg_helpers import (
    PG_URL,
    create_pg_schema,
    drop_pg_schema,
    require_postgres,
    shared_pg_schema,
)
from pg_helpers import sqlite_template as migrated_sqlite_template


@dataclass(frozen=True)
class Target:
    """A database to test on: a URL, and for PostgreSQL the schema of this test."""

    backend: str
    url: str
    schema: str | None = None


_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
_TABLES = ", ".join(Base.metadata.tables)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (faster than migrating each time)."""
    return migrated_sqlite_template(tmp_path_factory.mktemp("template"))


@pytest.fixture(scope="session")
def pg_schema() -> Iterator[str | None]:
    """A migrated schema of this test process; each test empties its tables first."""
    yield from shared_pg_schema()


@pytest.fixture(params=_BACKENDS)
async def target(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path, pg_schema: str | None
) -> AsyncIterator[Target]:
    """A migrated, empty database."""
    if request.param == "sqlite":
        path = tmp_path / "civicchat.db"
        shutil.copyfile(sqlite_template, path)
        yield Target("sqlite", str(path))
        return
    await require_postgres()
    assert pg_schema is not None
    engine = create_engine(PG_URL, schema=pg_schema)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {_TABLES} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()
    yield Target("postgres", PG_URL, pg_schema)


@pytest.fixture(params=_BACKENDS)
async def empty_target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Target]:
    """A database that was never migrated (its own schema on PostgreSQL)."""
    if request.param == "sqlite":
        yield Target("sqlite", str(tmp_path / "empty.db"))
        return
    await require_postgres()
    schema = await create_pg_schema(migrate=False)
    try:
        yield Target("postgres", PG_URL, schema)
    finally:
        await drop_pg_schema(schema)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))


@pytest.fixture
async def store(target: Target, clock: ManualClock) -> AsyncIterator[SqlStore]:
    s = SqlStore(create_engine(target.url, schema=target.schema), clock=clock)
    try:
        yield s
    finally:
        await s.close()
