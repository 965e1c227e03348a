"""Fixtures of the browser tests (see browser_helpers)."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    OTHER_LOGIN,
    OTHER_PASSWORD,
    Service,
    _add_other_operator,
    _config,
    _unavailable,
)

from service_process import serve_process


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    directory = tmp_path_factory.mktemp("browser-service")
    db_url = f"sqlite+aiosqlite:///{directory / 'service.db'}"
    config = _config(directory, db_url)
    with serve_process(config, directory) as running:
        printed = running.log.read_text(encoding="utf-8")
        passwords = dict(
            re.findall(r"^\s+(\w+)\s+(\S+)\s+\((?:admin|supervisor|operator)\)", printed, re.M)
        )
        assert {"admin", "operador"} <= set(passwords), printed
        asyncio.run(_add_other_operator(db_url))
        passwords[OTHER_LOGIN] = OTHER_PASSWORD
        yield Service(running.base, directory, running.log, passwords, db_url)


# Module scope: Playwright's sync API keeps an event loop in this thread while it runs, which
# pytest-asyncio's tests in later modules must not find.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        _unavailable(f"Chromium ({CHROMIUM})")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
            args=CHROMIUM_ARGS,
            headless=True,
        )
        try:
            yield chromium
        finally:
            chromium.close()
