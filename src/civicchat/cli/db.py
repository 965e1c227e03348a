"""``civicchat db``: create or upgrade the database schema, and check it."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from civicchat.cli._options import (
    add_command,
    add_database_arguments,
    add_subcommands,
    database_of,
)
from civicchat.exceptions import ConfigError, StorageError
from civicchat.storage.engine import (
    check_schema,
    create_engine,
    current_revision,
    normalise_url,
    upgrade,
)
from civicchat.storage.schema import SCHEMA_REVISION

__all__ = ["register"]

_T = TypeVar("_T")


def register(subparsers: Any) -> None:
    """Add ``db upgrade`` and ``db check``."""
    sub = add_subcommands(
        add_command(
            subparsers,
            "db",
            help="create, upgrade and check the database schema",
            examples=[
                "civicchat db upgrade                      # civicchat.db, or $CIVICCHAT_DATABASE_URL",
                "civicchat db upgrade --url postgresql+asyncpg://civicchat@db.example/civicchat",
                "civicchat db check --url var/mataro.db && echo up to date",
            ],
        )
    )
    up = add_command(
        sub,
        "upgrade",
        help="create the schema or bring it up to date",
        description="Create the schema or bring it up to date. PostgreSQL is never migrated "
        "implicitly:\nrun this once, from one machine, before starting a new version.",
        examples=["civicchat db upgrade --url postgresql+asyncpg://civicchat@db/civicchat"],
    )
    add_database_arguments(up)
    up.set_defaults(handler=_upgrade)
    check = add_command(
        sub,
        "check",
        help="exit 0 when the schema is up to date, else 1 (with what to run)",
        examples=["civicchat db check --url var/mataro.db"],
    )
    add_database_arguments(check)
    check.set_defaults(handler=_check)


def _on_database(args: argparse.Namespace, work: Callable[[AsyncEngine], Awaitable[_T]]) -> _T:
    """Run ``work`` on an engine for the database the options name, then dispose of it."""

    db = database_of(args)
    _refuse_missing_sqlite_directory(db.url)

    async def run() -> _T:
        engine = create_engine(db.url, schema=db.schema)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _refuse_missing_sqlite_directory(url: str) -> None:
    """A SQLite file in a directory that does not exist: say so before aiosqlite tries (its
    worker thread can print a traceback after a failed connection, once the loop has closed)."""
    full = normalise_url(url)
    if not full.startswith("sqlite"):
        return
    database = make_url(full).database
    if database and not Path(database).parent.is_dir():
        raise ConfigError(
            f"database: unable to open database file: the directory {Path(database).parent} "
            "does not exist"
        )


def _upgrade(args: argparse.Namespace) -> int:
    before = _on_database(args, upgrade)
    if before == SCHEMA_REVISION:
        print(f"schema already at {SCHEMA_REVISION}")
    else:
        print(f"schema upgraded from {before or 'empty'} to {SCHEMA_REVISION}")
    return 0


def _check(args: argparse.Namespace) -> int:
    async def check(engine: AsyncEngine) -> str | None:
        found = await current_revision(engine)
        await check_schema(engine)
        return found

    try:
        found = _on_database(args, check)
    except StorageError as exc:  # behind or ahead: the answer of the check, not an error
        print(str(exc), file=sys.stderr)
        return 1
    print(f"schema at {found}: up to date")
    return 0
