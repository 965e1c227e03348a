"""Options and command groups shared by the subcommands of ``civicchat``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_URL",
    "Database",
    "add_command",
    "add_database_arguments",
    "add_subcommands",
    "database_of",
]

DEFAULT_URL = "civicchat.db"


def add_command(
    subparsers: Any,
    name: str,
    *,
    help: str,
    description: str | None = None,
    examples: Sequence[str] = (),
) -> argparse.ArgumentParser:
    """Add one command: ``help`` in its group's list, ``description`` (by default ``help`` as a
    sentence) atop its own ``--help``, and the ``examples`` below it, as written."""
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples) if examples else None
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=help,
        description=description or f"{help[0].upper()}{help[1:]}.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def add_subcommands(parser: argparse.ArgumentParser) -> Any:
    """Make ``parser`` (from :func:`add_command`) a group, ``civicchat NAME COMMAND ...``, and
    return its subparsers; the chosen command is stored as ``NAME_command`` (``db_command``...)."""
    name = parser.prog.split()[-1]
    sub = parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND")
    sub.required = True
    return sub


def add_database_arguments(parser: argparse.ArgumentParser, *, config: bool = False) -> None:
    """``--url`` and ``--schema``; with ``config``, also an optional CONFIG whose database (and
    media directory) are used when ``--url`` is not given. Read them back with ``database_of``."""
    if config:
        parser.add_argument(
            "config",
            nargs="?",
            default=None,
            help="the service configuration file: its database and media directory are used",
        )
    parser.add_argument(
        "--url",
        default=None,
        help="a SQLite file path or URL, or postgresql://user@host/db (default: "
        + ("the configuration's, else " if config else "")
        + "$CIVICCHAT_DATABASE_URL, else civicchat.db)",
    )
    parser.add_argument(
        "--schema", default=None, help="PostgreSQL schema (search_path) to use, if not the default"
    )


@dataclass(frozen=True)
class Database:
    url: str
    schema: str | None
    media: str | None  # the media directory, when known


def database_of(args: argparse.Namespace) -> Database:
    """The database the options name: ``--url``, else the configuration's, else
    ``$CIVICCHAT_DATABASE_URL``, else ``civicchat.db``."""
    url, schema, media = args.url, args.schema, getattr(args, "blobs", None)
    if getattr(args, "config", None) is not None:
        from civicchat.service.config import load_config

        config = load_config(args.config)
        url = url or config.database_url
        schema = schema or config.database_schema
        media = media or str(config.media.directory)
    return Database(url or os.environ.get("CIVICCHAT_DATABASE_URL", DEFAULT_URL), schema, media)
