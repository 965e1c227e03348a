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
    status = handler(args)
    return int(status or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
