"""The ``civicchat`` command line.

Each area adds its subcommands from its own module through a ``register(subparsers)`` function,
listed explicitly below.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from civicchat import __version__

__all__ = ["main"]

_Registrar = Callable[[Any], None]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="civicchat", description="Municipal citizen-service messaging."
    )
    parser.add_argument("--version", action="version", version=f"civicchat {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for register in _registrars():
        register(sub)
    return parser


def _registrars() -> list[_Registrar]:
    from civicchat.cli import db, keywords, privacy, serve

    return [serve.register, keywords.register, db.register, privacy.register]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = args.handler
    try:
        status = handler(args)
    except KeyboardInterrupt:
        return 130
    except EOFError:
        print(
            f"civicchat {args.command}: no answer on standard input; nothing was done "
            "(pass --yes to confirm without a prompt)",
            file=sys.stderr,
        )
        return 2
    except Exception as exc:
        # A command-line user gets one clear line, not a traceback, for what they can fix:
        # a wrong option, an unreachable database, a missing directory.
        if not _is_user_error(exc):
            raise
        print(f"civicchat {args.command}: error: {_describe(exc)}", file=sys.stderr)
        return 2
    return int(status or 0)


def _is_user_error(exc: Exception) -> bool:
    from sqlalchemy.exc import DBAPIError, OperationalError

    from civicchat.exceptions import CivicchatError

    return isinstance(exc, CivicchatError | OSError | OperationalError | DBAPIError)


def _describe(exc: Exception) -> str:
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError):
        # The driver's own message, without SQLAlchemy's statement dump and help link.
        return f"database: {exc.orig}"
    return str(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
