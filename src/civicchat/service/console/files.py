"""Editing configuration files from the admin pages: one keyword in place, atomic writes.

A keyword is rewritten in place so that the comments and layout of the rest of the catalog
survive an edit made in the browser: only the entries whose value changed are written again (one
language's aliases or reply, when the field is a block mapping), everything else stays byte for
byte. What is written keeps unicode (emoji, accents), multi-line text as ``|-`` blocks, and
alias lists on one line.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from civicchat.exceptions import CatalogError, CatalogProblem
from civicchat.keywords import Catalog, parse_catalog

__all__ = ["replace_keyword", "write_atomic"]


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings as ``|-`` blocks, like a person writes them."""


# YAML reads these as line breaks (and folds them, or turns them into "\n") wherever they stand
# raw, in plain, quoted and block scalars alike: only a double-quoted escape keeps them.
_BREAKS = frozenset("\r\x85\u2028\u2029")


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if not _BREAKS.isdisjoint(value):
        style: str | None = '"'
    else:
        style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


class _Entry(dict[str, object]):
    """One ``key: value`` entry, always written as a block mapping (never ``{key: value}``)."""


def _entry(dumper: yaml.SafeDumper, value: _Entry) -> yaml.Node:
    return dumper.represent_mapping("tag:yaml.org,2002:map", value.items(), flow_style=False)


_BlockDumper.add_representer(str, _str)
_BlockDumper.add_representer(_Entry, _entry)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def replace_keyword(
    text: str,
    catalog: Catalog,
    keyword_id: str,
    *,
    aliases: Mapping[str, Sequence[str]],
    reply: Mapping[str, str],
    source: str = "<catalog>",
) -> tuple[str, Catalog]:
    """Return the catalog ``text`` with one keyword's aliases and replies changed, validated.

    ``catalog`` is ``text`` parsed (it gives the keyword's line). Raises
    :class:`~civicchat.exceptions.CatalogError` when the result does not validate (a duplicate
    alias, an empty reply, a broken template...), with line numbers of the new text.
    """
    kw = catalog.keyword(keyword_id)
    if kw is None or kw.line is None:
        raise CatalogError([CatalogProblem(source, None, keyword_id, "no such keyword")])
    lines = text.splitlines(keepends=True)
    start = kw.line - 1
    dash = lines[start]
    col = dash.index("-") if dash.lstrip().startswith("-") else _indent(dash)
    end = start + 1
    while end < len(lines) and not (_is_content(lines[end]) and _indent(lines[end]) <= col):
        end += 1
    while end > start + 1 and not _is_content(lines[end - 1]):
        end -= 1  # blank lines and comments before the next keyword belong to it
    fields = {
        "aliases": {lang: [a for a in values if a.strip()] for lang, values in aliases.items()},
        "reply": dict(reply),
    }
    current: dict[str, dict[str, object]] = {
        "aliases": {lang: list(values) for lang, values in kw.aliases.items()},
        "reply": dict(kw.reply),
    }
    body = lines[start:end]
    key_col = col + 2
    for key, value in fields.items():
        replaced = _replace_field(body, key_col, key, value, current[key])
        if replaced is None:
            raise CatalogError(
                [CatalogProblem(source, kw.line, keyword_id, f"cannot find '{key}' to edit")]
            )
        body = replaced
    new_text = "".join(lines[:start]) + "".join(body) + "".join(lines[end:])
    return new_text, parse_catalog(new_text, source=source)


def _write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never half-written)."""
    await asyncio.to_thread(_write, path, text)


def _find_entry(lines: list[str], begin: int, col: int, key: str) -> tuple[int, int] | None:
    """Where the ``key:`` entry at indentation ``col`` starts and ends in ``lines[begin:]``."""
    first = None
    for n in range(begin, len(lines)):
        line = lines[n]
        if _indent(line) == col and line[col:].startswith(f"{key}:"):
            first = n
            break
    if first is None:
        return None
    last = first + 1
    while last < len(lines) and not (_is_content(lines[last]) and _indent(lines[last]) <= col):
        last += 1
    while last > first + 1 and not _is_content(lines[last - 1]):
        last -= 1
    return first, last


def _dump(key: str, value: object, col: int) -> list[str]:
    dumped = yaml.dump(
        _Entry({key: value}),
        Dumper=_BlockDumper,
        allow_unicode=True,
        sort_keys=False,
        width=1 << 30,  # never wrap: an alias list re-wrapped mid-phrase reads as two aliases
        default_flow_style=None,
    )
    pad = " " * col
    return [pad + line if line.strip() else line for line in dumped.splitlines(True)]


def _replace_field(
    body: list[str], col: int, key: str, value: object, current: object = None
) -> list[str] | None:
    """``body`` with the ``key:`` entry at indentation ``col`` set to ``value`` as YAML.

    Nothing changes when ``value`` equals ``current`` (what the file says now); in a block
    mapping (``key:`` alone on its line) only the sub-entries whose value changed are written.
    """
    found = _find_entry(body, 1, col, key)
    if found is None:
        return None
    first, last = found
    if value == current:
        return body
    head = body[first][col + len(key) + 1 :].strip()
    if (
        isinstance(value, dict)
        and isinstance(current, dict)
        and set(value) == set(current)
        and (not head or head.startswith("#"))
    ):
        children = body[first + 1 : last]
        cols = [_indent(line) for line in children if _is_content(line)]
        child_col = cols[0] if cols else None
        for sub, sub_value in value.items():
            if child_col is None:
                break
            if sub_value == current[sub]:
                continue
            entry = _find_entry(children, 0, child_col, sub)
            if entry is None:
                break
            children = (
                children[: entry[0]] + _dump(sub, sub_value, child_col) + children[entry[1] :]
            )
        else:
            return body[: first + 1] + children + body[last:]
    return body[:first] + _dump(key, value, col) + body[last:]
