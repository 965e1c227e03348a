"""``civicchat keywords``: check a catalog, match messages in bulk, chat in the terminal."""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from civicchat.cli._options import add_command, add_subcommands
from civicchat.exceptions import CivicchatError
from civicchat.keywords import (
    Catalog,
    KeywordAnswer,
    KeywordEngine,
    detect_language,
    load_catalog,
)
from civicchat.messages import Buttons, ListMenu, Location, Media, OutboundContent, Text

__all__ = ["register"]

_PERSON = {
    "ca": "(→ una persona del 010 respondria aquest missatge)",
    "es": "(→ una persona del 010 respondería este mensaje)",
}
_WELCOME = {
    "ca": "Xat amb el catàleg {source} ({count} paraules clau). Escriu PARAULES CLAU per veure-les;"
    " una línia buida acaba.",
    "es": "Chat con el catálogo {source} ({count} palabras clave). Escribe PALABRAS CLAVE para "
    "verlas; una línea vacía termina.",
}


def register(subparsers: Any) -> None:
    """Add ``keywords check``, ``keywords match`` and ``keywords chat``."""
    sub = add_subcommands(
        add_command(
            subparsers,
            "keywords",
            help="check a keyword catalog, match messages in bulk, chat with it in the terminal",
            description="Keyword catalog tools.",
            examples=[
                "civicchat keywords check examples/mataro/catalog.yaml",
                'civicchat keywords match examples/mataro/catalog.yaml "horari de la OAC"',
                "civicchat keywords chat examples/mataro/catalog.yaml",
            ],
        )
    )

    check = add_command(
        sub,
        "check",
        help="validate a catalog and summarise it (exit 1 with every problem when invalid)",
        examples=["civicchat keywords check examples/mataro/catalog.yaml"],
    )
    _catalog_argument(check)
    check.set_defaults(handler=_check)

    match = add_command(
        sub,
        "match",
        help="match messages given as TEXT arguments or on standard input, one JSON line each",
        description=(
            "Match messages against a catalog. Each TEXT argument is one message; without any\n"
            "TEXT, each line of standard input is one. Writes one JSON object a message."
        ),
        examples=[
            'civicchat keywords match examples/mataro/catalog.yaml "horari bus" "punt net"',
            "civicchat keywords match examples/mataro/catalog.yaml < messages.txt",
        ],
    )
    _catalog_argument(match)
    match.add_argument(
        "texts",
        nargs="*",
        metavar="TEXT",
        help="a message to match (quote it); without any, one message a line of standard input",
    )
    match.add_argument(
        "--language",
        default=None,
        metavar="LANG",
        help="the conversation's previous language (ca, es), if any",
    )
    match.set_defaults(handler=_match)

    chat = add_command(
        sub,
        "chat",
        help="chat with the catalog in the terminal (an empty line ends)",
        examples=["civicchat keywords chat examples/mataro/catalog.yaml --name Laia"],
    )
    _catalog_argument(chat)
    chat.add_argument(
        "--hours",
        default=None,
        metavar="HOURS",
        help="office-hours YAML for {{ office_hours }} (default: hours.yaml beside the catalog)",
    )
    chat.add_argument("--name", default="", help="the citizen's name, for {{ name }}")
    chat.set_defaults(handler=_chat)


def _catalog_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("catalog", metavar="CATALOG", help="the catalog YAML file")


def _load(path: str) -> Catalog | None:
    try:
        return load_catalog(path)
    except CivicchatError as exc:
        print(str(exc), file=sys.stderr)
        return None


def _check(args: argparse.Namespace) -> int:
    catalog = _load(args.catalog)
    if catalog is None:
        return 1
    print(f"{catalog.source}: OK")
    print(f"  languages: {', '.join(catalog.languages)} (default {catalog.default_language})")
    print(f"  keywords: {len(catalog.keywords)}")
    for lang in catalog.languages:
        count = sum(len(kw.aliases.get(lang, ())) for kw in catalog.keywords)
        print(f"  aliases [{lang}]: {count}")
    print(f"  topics: {len(catalog.topic_order())}")
    for topic in catalog.topic_order():
        count = sum(1 for kw in catalog.keywords if kw.topic == topic)
        print(f"    {topic} ({catalog.topic_name(topic, catalog.default_language)}): {count}")
    return 0


def match_lines(
    engine: KeywordEngine, lines: Iterable[str], out: TextIO, language: str | None
) -> int:
    """Write one JSON object per input line; returns how many lines were read."""
    count = 0
    write = out.write
    for raw in lines:
        text = raw.rstrip("\r\n")
        found = engine.match(text, language=language)
        record = {
            "text": text,
            "keyword": found.keyword_id if found else None,
            "language": found.language if found else None,
            "score": found.score if found else 0,
            "alias": found.alias if found else None,
        }
        write(json.dumps(record, ensure_ascii=False) + "\n")
        count += 1
    return count


def _match(args: argparse.Namespace) -> int:
    engine = KeywordEngine(load_catalog(args.catalog))  # an invalid catalog: status 2, one line
    if args.texts:
        # A TEXT with a line break is still one message: match_lines reads one a line.
        lines: Iterable[str] = (" ".join(text.splitlines()) for text in args.texts)
    else:
        stdin = sys.stdin
        if isinstance(stdin, io.TextIOWrapper):
            stdin.reconfigure(errors="replace")
        lines = stdin
    match_lines(engine, lines, sys.stdout, args.language)
    sys.stdout.flush()
    return 0


def _office_hours(catalog_path: str, hours_path: str | None) -> dict[str, str]:
    path = Path(hours_path) if hours_path else Path(catalog_path).with_name("hours.yaml")
    if not path.is_file():
        return {}
    try:
        from civicchat.routing.hours import load_office_hours
        from civicchat.routing.phrases import describe_week

        hours = load_office_hours(path)
        return {lang: describe_week(hours, lang) for lang in ("ca", "es")}
    except (CivicchatError, ImportError, ValueError) as exc:
        print(f"(office hours not loaded from {path}: {exc})", file=sys.stderr)
        return {}


def render_content(content: OutboundContent) -> str:
    """A terminal rendering of one outbound content."""
    if isinstance(content, Text):
        return content.body
    if isinstance(content, Buttons):
        options = "\n".join(f"  [{i}] {b.title}" for i, b in enumerate(content.buttons, 1))
        return f"{content.body}\n{options}"
    if isinstance(content, ListMenu):
        rows = "\n".join(f"  [{i}] {r.title}" for i, r in enumerate(content.rows, 1))
        return f"{content.body}\n{rows}"
    if isinstance(content, Location):
        parts = [p for p in (content.name, content.address) if p]
        return f"📍 {', '.join(parts)} {content.map_url}".strip()
    if isinstance(content, Media):
        caption = f" {content.caption}" if content.caption else ""
        return f"[{content.media_kind.value}] {content.link}{caption}"
    return f"[{content.kind}]"


def _buttons_of(answer: KeywordAnswer) -> list[str]:
    ids: list[str] = []
    for content in answer.contents:
        if isinstance(content, Buttons):
            ids.extend(b.id for b in content.buttons)
    return ids


def chat(
    engine: KeywordEngine,
    lines: Iterable[str],
    out: TextIO,
    *,
    context: dict[str, object] | None = None,
    prompt: str = "",
) -> None:
    """Run the terminal chat over ``lines`` (an empty line ends it), writing to ``out``."""
    catalog = engine.catalog
    language: str | None = None
    pending: list[str] = []
    context = context or {}
    for raw in lines:
        text = raw.rstrip("\r\n")
        if not text.strip():
            break
        choice = text.strip()
        if pending and choice.isdigit() and 1 <= int(choice) <= len(pending):
            answer = engine.answer_choice(
                pending[int(choice) - 1],
                language=language or catalog.default_language,
                context=context,
            )
        else:
            answer = engine.answer(text, language=language, context=context)
        if answer is None:
            language = detect_language(
                text,
                previous=language,
                default=catalog.default_language,
                languages=catalog.languages,
            )
            out.write(_PERSON.get(language, _PERSON["ca"]) + "\n")
            pending = []
        else:
            language = answer.language
            for content in answer.contents:
                out.write(render_content(content) + "\n")
            pending = _buttons_of(answer)
        out.write("\n" + prompt)
        out.flush()


def _chat(args: argparse.Namespace) -> int:
    catalog = load_catalog(args.catalog)  # an invalid catalog: status 2, one line
    engine = KeywordEngine(catalog)
    context: dict[str, object] = {"name": args.name}
    hours = _office_hours(args.catalog, args.hours)
    if hours:
        context["office_hours"] = hours
    welcome = _WELCOME.get(catalog.default_language, _WELCOME["ca"])
    print(welcome.format(source=catalog.source, count=len(catalog.keywords)))
    interactive = sys.stdin.isatty()
    prompt = "> " if interactive else ""
    print(prompt, end="", flush=True)
    chat(engine, _stdin_lines(), sys.stdout, context=context, prompt=prompt)
    return 0


def _stdin_lines() -> Iterable[str]:
    while True:
        try:
            line = sys.stdin.readline()
        except (KeyboardInterrupt, UnicodeDecodeError):
            return
        if not line:
            return
        yield line
