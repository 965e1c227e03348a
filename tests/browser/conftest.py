"""Fixtures of the browser tests (see browser_helpers)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    OTHER_LOGIN,
    OTHER_PASSWORD,
    Service,
    _add_other_operator,
    _config,
    _free_port,
    _unavailable,
)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    directory = tmp_path_factory.mktemp("browser-service")
    db_url = f"sqlite+aiosqlite:///{directory / 'service.db'}"
    config = _config(directory, db_url)
    port = _free_port()
    log = directory / "service.log"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(directory)}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "civicchat.cli.serve",
                "serve",
                str(config),
                "--port",
                str(port),
            ],
            cwd=directory,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the service did not start:\n{log.read_text()}")
            time.sleep(0.1)
        printed = log.read_text(encoding="utf-8")
        passwords = dict(
            re.findall(r"^\s+(\w+)\s+(\S+)\s+\((?:admin|supervisor|operator)\)", printed, re.M)
        )
        assert {"admin", "operador"} <= set(passwords), printed
        asyncio.run(_add_other_operator(db_url))
        passwords[OTHER_LOGIN] = OTHER_PASSWORD
        yield Service(base, directory, log, passwords, db_url)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
