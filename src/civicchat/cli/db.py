"""``civicchat db``: create or upgrade the database schema, and check it."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from civicchat.exceptions import CivicchatError
from civicchat.storage.engine import check_schema, create_engine, current_revision, upgrade
from civicchat.storage.schema import SCHEMA_REVISION

__all__ = ["DEFAULT_URL", "add_url_argument", "register"]

DEFAULT_URL = "civicchat.db"


def add_url_argument(parser: argparse.ArgumentParser) -> None:
    """``--url``, defaulting to ``$CIVICCHAT_DATABASE_URL`` or ``civicchat.db``."""
    parser.add_argument(
        "--url",
        default=os.environ.get("CIVICCHAT_DATABASE_URL", DEFAULT_URL),
        help="a SQLite file path or URL, or postgresql://user@host/db "
        "(default: $CIVICCHAT_DATABASE_URL or civicchat.db)",
    )
    parser.add_argument(
        "--schema", default=None, help="PostgreSQL schema (search_path) to use, if not the default"
    )


def register(subparsers: Any) -> None:
    """Add ``db upgrade`` and ``db check``."""
    parser = subparsers.add_parser(
        "db", help="database schema", description="Create, upgrade and check the database schema."
    )
    sub = parser.add_subparsers(dest="db_command", metavar="COMMAND")
    sub.required = True
    up = sub.add_parser("upgrade", help="create the schema or bring it up to date")
    add_url_argument(up)
    up.set_defaults(handler=_upgrade)
    check = sub.add_parser("check", help="exit 0 when the schema is up to date, else 1")
    add_url_argument(check)
    check.set_defaults(handler=_check)


def _upgrade(args: argparse.Namespace) -> int:
    async def run() -> str | None:
        engine = create_engine(args.url, schema=args.schema)
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
        engine = create_engine(args.url, schema=args.schema)
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
