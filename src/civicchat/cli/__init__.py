"""The ``civicchat`` command line.

Each area adds its subcommands from its own module through a ``register(subparsers)`` function,
listed explicitly below. A command's handler returns its exit status (0, or 1 when a check says
no) and raises for errors: :func:`run` turns an error the user can fix into one line on standard
error and exit status 2, as argparse does for a wrong option.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from civicchat import __version__

__all__ = ["main"]

_Registrar = Callable[[Any], None]


_EXAMPLES = """\
examples:
  civicchat serve examples/mataro/config.yaml
  civicchat db upgrade --url postgresql+asyncpg://civicchat@db.example/civicchat
  civicchat keywords check examples/mataro/catalog.yaml
  civicchat privacy export /etc/civicchat/mataro/config.yaml --channel telegram \\
      --account mataro-tg --user 123456789 -o export.json

Run `civicchat COMMAND --help` for a command's options. Exit status: 0 done, 1 a check said no
or a confirmation was refused, 2 an error (one line on standard error), 130 interrupted.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="civicchat",
        description="Municipal citizen-service messaging: the service, its workers, and tools "
        "for the database, keyword catalogs and citizens' privacy requests.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    return run(build_parser(), argv)


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command's ``handler``; returns the exit status.

    An error the user can fix (a wrong option or configuration, an unreachable database, a
    missing directory) is one line, ``civicchat COMMAND: error: ...``, and status 2.
    """
    args = parser.parse_args(argv)
    name = _command_name(parser, args)
    try:
        status = args.handler(args)
    except KeyboardInterrupt:
        return 130
    except EOFError:
        print(
            f"{name}: error: no answer on standard input; nothing was done "
            "(pass --yes to confirm without a prompt)",
            file=sys.stderr,
        )
        return 2
    except Exception as exc:
        # A command-line user gets one clear line, not a traceback, for what they can fix.
        if not _is_user_error(exc):
            raise
        print(f"{name}: error: {_describe(exc)}", file=sys.stderr)
        return 2
    return int(status or 0)


def _command_name(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """``civicchat db upgrade``: the program, the command and the command of its group."""
    words = [parser.prog, args.command, getattr(args, f"{args.command}_command", None)]
    return " ".join(word for word in words if word)


def _is_user_error(exc: Exception) -> bool:
    from sqlalchemy.exc import DBAPIError, OperationalError

    from civicchat.exceptions import CivicchatError

    return isinstance(exc, CivicchatError | OSError | OperationalError | DBAPIError)


def _describe(exc: Exception) -> str:
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError):
        # The driver's own message, without SQLAlchemy's statement dump and help link.
        text = f"database: {exc.orig}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
