"""``civicchat privacy``: erase or export one citizen, apply a retention period."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from civicchat.cli.db import add_url_argument
from civicchat.exceptions import CivicchatError
from civicchat.storage.base import RetentionMode
from civicchat.storage.media import LocalBlobStore
from civicchat.storage.privacy import Privacy, RetentionPolicy, mask_phone
from civicchat.storage.sql import open_store

__all__ = ["register"]


def _citizen_arguments(parser: argparse.ArgumentParser) -> None:
    add_url_argument(parser)
    parser.add_argument("--channel", required=True, help="whatsapp, telegram, webchat...")
    parser.add_argument("--account", required=True, help="the account the citizen wrote to")
    parser.add_argument(
        "--citizen", required=True, help="the citizen's id on the channel (phone number, chat id)"
    )
    parser.add_argument("--actor", default="cli", help="who asks, for the audit log")


def register(subparsers: Any) -> None:
    """Add ``privacy erase``, ``privacy export`` and ``privacy retention``."""
    parser = subparsers.add_parser(
        "privacy", help="erase or export a citizen's data", description="Privacy requests."
    )
    sub = parser.add_subparsers(dest="privacy_command", metavar="COMMAND")
    sub.required = True

    erase = sub.add_parser("erase", help="delete everything about one citizen")
    _citizen_arguments(erase)
    erase.add_argument("--blobs", default=None, help="the media directory, to delete their files")
    erase.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    erase.set_defaults(handler=_erase)

    export = sub.add_parser("export", help="write everything about one citizen as JSON")
    _citizen_arguments(export)
    export.add_argument("--output", "-o", default="-", help="a file, or - for standard output")
    export.set_defaults(handler=_export)

    retention = sub.add_parser(
        "retention", help="delete or anonymise an account's conversations older than N days"
    )
    add_url_argument(retention)
    retention.add_argument("--account", required=True)
    retention.add_argument("--days", type=int, required=True)
    retention.add_argument(
        "--mode", choices=[m.value for m in RetentionMode], default=RetentionMode.DELETE.value
    )
    retention.set_defaults(handler=_retention)


async def _with_privacy(args: argparse.Namespace, blobs: str | None, work: Any) -> Any:
    store = await open_store(args.url, schema=args.schema)
    try:
        return await work(Privacy(store, LocalBlobStore(blobs) if blobs else None))
    finally:
        await store.close()


def _erase(args: argparse.Namespace) -> int:
    who = f"{args.channel}/{args.account}/{mask_phone(args.citizen)}"
    if not args.yes:
        answer = input(
            f"Esborrar totes les dades de {who}? / ¿Borrar todos los datos de {who}? [s/N] "
        )
        if answer.strip().lower() not in ("s", "si", "sí", "y", "yes"):
            print("cancel·lat / cancelado")
            return 1

    async def work(privacy: Privacy) -> Any:
        return await privacy.erase(args.channel, args.account, args.citizen, actor=args.actor)

    try:
        result = asyncio.run(_with_privacy(args, args.blobs, work))
    except CivicchatError as exc:
        print(f"civicchat privacy erase: {exc}", file=sys.stderr)
        return 2
    print(
        f"esborrat / borrado {who}: {result.contacts} contact(s), "
        f"{result.conversations} conversation(s), {result.messages} message(s), "
        f"{result.media} media"
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    async def work(privacy: Privacy) -> Any:
        return await privacy.export(args.channel, args.account, args.citizen, actor=args.actor)

    try:
        data = asyncio.run(_with_privacy(args, None, work))
    except CivicchatError as exc:
        print(f"civicchat privacy export: {exc}", file=sys.stderr)
        return 2
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
        print(f"civicchat privacy retention: {exc}", file=sys.stderr)
        return 2

    async def work(privacy: Privacy) -> Any:
        return await privacy.apply_retention({args.account: policy})

    try:
        done = asyncio.run(_with_privacy(args, None, work))
    except CivicchatError as exc:
        print(f"civicchat privacy retention: {exc}", file=sys.stderr)
        return 2
    print(f"{args.mode}: {done[args.account]} conversation(s)")
    return 0
