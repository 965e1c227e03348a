"""Migrated databases for the SQL case store tests: a SQLite file and a PostgreSQL schema.

Like ``tests/storage``: PostgreSQL gets one migrated schema per test process (dropped at the
end) and each test empties the case tables; with ``CIVICCHAT_REQUIRE_POSTGRES=1`` an unreachable
server fails the tests instead of skipping them.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import text

from civicchat.storage.engine import create_engine
from pg_helpers import PG_URL, require_postgres


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
