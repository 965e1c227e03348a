"""Helpers of the browser tests: the real service as a subprocess, driven by Debian's headless Chromium through Playwright.

Playwright's own browser download is never used: ``executable_path`` points at the system
Chromium. Locally a missing Chromium or Playwright skips these tests; in CI (``CI=true``) it
fails them, so a broken browser install cannot pass unnoticed.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
MATARO = ROOT / "examples" / "mataro"
CHROMIUM = os.environ.get("CIVICCHAT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SECRET = "browser-test-secret-key-0123456789-abcdefghijkl"
OTHER_LOGIN = "other-city"
OTHER_PASSWORD = "another city password"
# Monday 30 November 2026, 10:00 in Madrid: the 010 is open.
MONDAY_10 = "2026-11-30T09:00:00+00:00"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser tests need {reason} in CI")
    pytest.skip(f"{reason} is not available")


@dataclass
class Service:
    base: str
    directory: Path
    log: Path
    passwords: dict[str, str]
    db_url: str


def _config(directory: Path, db_url: str) -> Path:
    common = {
        "catalog": MATARO / "catalog.yaml",
        "office_hours": MATARO / "hours.yaml",
        "templates": MATARO / "templates.yaml",
        "canned_responses": MATARO / "canned_responses.yaml",
    }
    files = "".join(f"    {k}: {v}\n" for k, v in common.items())
    text = (
        f'database_url: "{db_url}"\n'
        f'secret_key: "{SECRET}"\n'
        "demo_operators: true\n"
        "operator_group: mataro\n"
        f'clock:\n  start: "{MONDAY_10}"\n'
        "server:\n  public_url: http://127.0.0.1\n  secure_cookies: false\n"
        f"media:\n  directory: {directory / 'media'}\n"
        "accounts:\n"
        "  - name: mataro-web\n    channel: webchat\n"
        '    display_name: "Xat del 010 · Ajuntament de Mataró"\n    group: mataro\n'
        + files
        + "  - name: other-web\n    channel: webchat\n"
        '    display_name: "Another city"\n    group: other\n' + files
    )
    path = directory / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


async def _add_other_operator(db_url: str) -> None:
    from civicchat.service.console import hash_password
    from civicchat.storage.base import OperatorRole
    from civicchat.storage.sql import open_store

    store = await open_store(db_url)
    try:
        async with store.transaction() as tx:
            await tx.operators.add_operator(
                account="other",
                name="Operator of another city",
                login=OTHER_LOGIN,
                password_hash=hash_password(OTHER_PASSWORD),
                role=OperatorRole.ADMIN,
            )
    finally:
        await store.close()


def login(page: Any, base: str, user: str, password: str) -> None:
    """Log in through the real form."""
    page.goto(f"{base}/login")
    page.fill("input[name=login]", user)
    page.fill("input[name=password]", password)
    page.click("button.primary")
    page.wait_for_url(re.compile(r".*/console$"))


# ------------------------------------------------------------------ the citizen's web chat

#: A phone's screen: the size the citizen's page is tested at.
PHONE = {"width": 420, "height": 720}


def phone(browser: Any, locale: str = "ca-ES", **options: Any) -> Any:
    """A new browser context the size of a phone in ``locale`` (``permissions=``... as given)."""
    return browser.new_context(viewport=PHONE, locale=locale, **options)


def open_chat(context: Any, base: str, lang: str | None = None) -> Any:
    """A new page of ``context`` on Mataró's web chat, with ``?lang=`` when given."""
    page = context.new_page()
    page.goto(f"{base}/chat/mataro-web" + (f"?lang={lang}" if lang else ""))
    return page


def send(chat: Any, text: str) -> None:
    """Type ``text`` in the chat and press send, as a citizen does."""
    chat.fill("#text", text)
    chat.click("#send")


def serve_live_events(
    context: Any, events: Sequence[dict[str, Any]], seqs: Sequence[int] | None = None
) -> None:
    """The pages of ``context`` get ``events`` (ids 1, 2, ..., or ``seqs``) from their live
    stream instead of the service's: a reply of a given shape, drawn without making the bot
    say it."""
    numbers = list(seqs) if seqs is not None else list(range(1, len(events) + 1))
    stream = "retry: 60000\n\n" + "".join(
        f"id: {seq}\nevent: message\ndata: {json.dumps(event)}\n\n"
        for seq, event in zip(numbers, events, strict=True)
    )
    context.route(
        "**/events?*",
        lambda route: route.fulfill(
            status=200, headers={"content-type": "text/event-stream"}, body=stream
        ),
    )


def tiny_png() -> bytes:
    """A real 2x2 red PNG, which a browser can draw (the web chat's page and the console)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * 2 for _ in range(2))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
