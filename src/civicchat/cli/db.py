"""``civicchat db``: create or upgrade the database schema, and check it."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from civicchat.cli._options import add_command_group, add_database_arguments, database_of
from civicchat.exceptions import CivicchatError
from civicchat.storage.engine import check_schema, create_engine, current_revision, upgrade
from civicchat.storage.schema import SCHEMA_REVISION

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add ``db upgrade`` and ``db check``."""
    sub = add_command_group(
        subparsers,
        "db",
        help="database schema",
        description="Create, upgrade and check the database schema.",
    )
    up = sub.add_parser("upgrade", help="create the schema or bring it up to date")
    add_database_arguments(up)
    up.set_defaults(handler=_upgrade)
    check = sub.add_parser("check", help="exit 0 when the schema is up to date, else 1")
    add_database_arguments(check)
    check.set_defaults(handler=_check)


def _upgrade(args: argparse.Namespace) -> int:
    async def run() -> str | None:
        db = database_of(args)
        engine = create_engine(db.url, schema=db.schema)
        try:
            return await upgrade(engine)
        finally:
            await engine.dispose()

    try:
        before = asyncio.run(run())
    except CivicchatError as exc:
        print(f"civicchat db upgrade: {exc}", file=sys.stderr)
        return 2
    if before == SCHEMA_REVISION:
        print(f"schema already at {SCHEMA_REVISION}")
    else:
        print(f"schema upgraded from {before or 'empty'} to {SCHEMA_REVISION}")
    return 0


def _check(args: argparse.Namespace) -> int:
    async def run() -> str | None:
        db = database_of(args)
        engine = create_engine(db.url, schema=db.schema)
        try:
            found = await current_revision(engine)
            await check_schema(engine)
            return found
        finally:
            await engine.dispose()

    try:
        found = asyncio.run(run())
    except CivicchatError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"schema at {found}: up to date")
    return 0
