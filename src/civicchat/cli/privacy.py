"""``civicchat privacy``: erase or export one citizen, apply a retention period.

::

    civicchat privacy erase /etc/civicchat/mataro/config.yaml --channel whatsapp \\
        --account mataro --user 34600000000
    civicchat privacy export --url postgresql://civic@db/civic --channel telegram \\
        --account mataro --user 123456789 > export.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from civicchat.cases.sql import SqlCaseStore
from civicchat.cli._options import (
    Database,
    add_command,
    add_database_arguments,
    add_subcommands,
    database_of,
)
from civicchat.exceptions import ConfigError
from civicchat.storage.base import RetentionMode
from civicchat.storage.media import LocalBlobStore
from civicchat.storage.privacy import Privacy, RetentionPolicy, mask_phone
from civicchat.storage.sql import open_store

__all__ = ["register"]


def _citizen_arguments(parser: argparse.ArgumentParser) -> None:
    add_database_arguments(parser, config=True)
    parser.add_argument("--channel", required=True, help="whatsapp, telegram, webchat...")
    parser.add_argument("--account", required=True, help="the account the citizen wrote to")
    parser.add_argument(
        "--citizen",
        "--user",
        dest="citizen",
        required=True,
        help="the citizen's id on the channel (phone number, Telegram user id)",
    )
    parser.add_argument("--actor", default="cli", help="who asks, for the audit log")


def register(subparsers: Any) -> None:
    """Add ``privacy erase``, ``privacy export`` and ``privacy retention``."""
    sub = add_subcommands(
        add_command(
            subparsers,
            "privacy",
            help="erase or export a citizen's data, apply a retention period",
            description="Privacy requests: erase or export everything about one citizen, delete or "
            "anonymise old\nconversations. CONFIG names the database and the media directory; "
            "--url overrides it.",
            examples=[
                "civicchat privacy export /etc/civicchat/mataro/config.yaml --channel telegram \\",
                "    --account mataro-tg --user 123456789 -o export.json",
            ],
        )
    )

    erase = add_command(
        sub,
        "erase",
        help="delete everything about one citizen (their reported cases are anonymised)",
        examples=[
            "civicchat privacy erase /etc/civicchat/mataro/config.yaml --channel whatsapp \\",
            "    --account mataro-wa --user 34600000000",
        ],
    )
    _citizen_arguments(erase)
    erase.add_argument(
        "--blobs", default=None, help="the media directory (default: the configuration's)"
    )
    erase.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    erase.set_defaults(handler=_erase)

    export = add_command(
        sub,
        "export",
        help="write everything about one citizen as JSON (their cases included)",
        examples=[
            "civicchat privacy export --url postgresql://civic@db/civic --channel telegram \\",
            "    --account mataro-tg --user 123456789 > export.json",
        ],
    )
    _citizen_arguments(export)
    export.add_argument("--output", "-o", default="-", help="a file, or - for standard output")
    export.set_defaults(handler=_export)

    retention = add_command(
        sub,
        "retention",
        help="delete or anonymise an account's conversations older than N days",
        examples=[
            "civicchat privacy retention /etc/civicchat/mataro/config.yaml --account mataro-wa \\",
            "    --days 365 --mode anonymise",
        ],
    )
    add_database_arguments(retention, config=True)
    retention.add_argument("--account", required=True, help="the account, as in the configuration")
    retention.add_argument(
        "--days", type=int, required=True, metavar="N", help="keep the last N days (at least 2)"
    )
    retention.add_argument(
        "--mode",
        choices=[m.value for m in RetentionMode],
        default=RetentionMode.DELETE.value,
        help="delete the conversations, or keep them without the citizen's data (default: delete)",
    )
    retention.set_defaults(handler=_retention)


async def _with_privacy(db: Database, work: Any) -> Any:
    store = await open_store(db.url, schema=db.schema)
    try:
        privacy = Privacy(store, LocalBlobStore(db.media) if db.media else None)
        return await work(privacy, SqlCaseStore(store.engine))
    finally:
        await store.close()


def _run(args: argparse.Namespace, work: Any) -> Any:
    return asyncio.run(_with_privacy(database_of(args), work))


def _erase(args: argparse.Namespace) -> int:
    who = f"{args.channel}/{args.account}/{mask_phone(args.citizen)}"
    if not args.yes:
        answer = input(
            f"Esborrar totes les dades de {who}? / ¿Borrar todos los datos de {who}? [s/N] "
        )
        if answer.strip().lower() not in ("s", "si", "sí", "y", "yes"):
            print("cancel·lat / cancelado")
            return 1

    async def work(privacy: Privacy, cases: SqlCaseStore) -> Any:
        # A reported incident stays a public record (a broken streetlight is still broken):
        # the citizen's side of it is anonymised, as case retention does, not deleted.
        now = datetime.now(UTC)
        reported = await cases.citizen_cases(args.channel, args.account, args.citizen)
        for case in reported:
            await cases.anonymise(case.reference, at=now)
        erased = await privacy.erase(args.channel, args.account, args.citizen, actor=args.actor)
        return erased, len(reported)

    result, anonymised_cases = _run(args, work)
    print(
        f"esborrat / borrado {who}: {result.contacts} contact(s), "
        f"{result.conversations} conversation(s), {result.messages} message(s), "
        f"{result.media} media, {anonymised_cases} case(s) anonymised"
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    async def work(privacy: Privacy, cases: SqlCaseStore) -> Any:
        data = await privacy.export(args.channel, args.account, args.citizen, actor=args.actor)
        reported = await cases.citizen_cases(args.channel, args.account, args.citizen)
        return {**data, "cases": [case.model_dump(mode="json") for case in reported]}

    data = _run(args, work)
    text = json.dumps(data, ensure_ascii=False, indent=2)
    if args.output == "-":
        print(text)
    else:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
    return 0


def _retention(args: argparse.Namespace) -> int:
    try:
        policy = RetentionPolicy(days=args.days, mode=RetentionMode(args.mode))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None

    async def work(privacy: Privacy, cases: SqlCaseStore) -> Any:
        return await privacy.apply_retention({args.account: policy})

    done = _run(args, work)
    print(f"{args.mode}: {done[args.account]} conversation(s)")
    return 0
