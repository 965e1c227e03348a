from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from service_fakes import (
    TG_SECRET,
    FakeProviders,
    free_port,
    serve_in_thread,
    write_config,
)

from civicchat.cli import serve
from civicchat.cli.serve import main
from civicchat.messages import InboundMessage, Sender, Text
from civicchat.storage.base import EventState
from civicchat.storage.engine import create_engine, upgrade
from civicchat.storage.sql import SqlStore


def test_telegram_webhook_registers_the_public_url_with_the_secret(tmp_path: Path):
    fake = FakeProviders()
    with serve_in_thread(fake.app(), free_port()) as base:
        config = write_config(
            tmp_path, provider_base=base, extra="server: {public_url: 'https://010.example.org'}"
        )
        assert main(["telegram-webhook", str(config), "mataro-tg"]) == 0
    calls = [r for r in fake.requests if r.path.endswith("/setWebhook")]
    assert len(calls) == 1
    assert calls[0].json["url"] == "https://010.example.org/webhooks/telegram/mataro-tg"
    assert calls[0].json["secret_token"] == TG_SECRET


@pytest.mark.parametrize(
    ("account", "extra", "message"),
    [
        ("mataro-wa", "server: {public_url: 'https://x.org'}", "no Telegram account"),
        ("mataro-tg", "", "https"),
    ],
)
def test_telegram_webhook_refusals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], account: str, extra: str, message: str
):
    config = write_config(tmp_path, provider_base="http://127.0.0.1:9", extra=extra)
    assert main(["telegram-webhook", str(config), account]) == 2
    assert message in capsys.readouterr().err


def test_serve_with_a_broken_config_exits_2_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    bad = tmp_path / "bad.yaml"
    bad.write_text("accounts: []\n")
    assert main(["serve", str(bad)]) == 2
    assert "non-empty" in capsys.readouterr().err


def test_worker_command_processes_the_inbox_and_stops_on_sigterm(tmp_path: Path):
    db = f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"
    config = write_config(tmp_path, provider_base="http://127.0.0.1:9", database=db)

    async def setup_and_accept() -> None:
        engine = create_engine(db)
        await upgrade(engine)
        store = SqlStore(engine)
        await store.accept(
            [
                InboundMessage(
                    channel="webchat",
                    account="mataro-web",
                    provider_message_id="v:1",
                    sender=Sender(id="visitor_0123456789abcdef"),
                    timestamp=datetime(2026, 11, 30, 9, tzinfo=UTC),
                    content=Text(body="PARAULES CLAU"),
                )
            ]
        )
        await store.close()

    async def done() -> int:
        store = SqlStore(create_engine(db))
        try:
            return (await store.state_counts())[EventState.DONE]
        finally:
            await store.close()

    asyncio.run(setup_and_accept())
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "civicchat.cli.serve", "worker", str(config)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while asyncio.run(done()) != 1:
            assert proc.poll() is None, "the worker exited"
            assert time.monotonic() < deadline, "the worker did not process the event"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_several_processes_on_sqlite_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    config = write_config(tmp_path, provider_base="http://127.0.0.1:9")
    assert main(["serve", str(config), "--workers", "2"]) == 2
    assert "PostgreSQL" in capsys.readouterr().err


def test_serve_tunes_the_garbage_collector_once_the_app_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """``civicchat serve`` freezes what the app built at start and raises the collector's
    thresholds before it serves (in a child process: the test runner's collector stays as is)."""
    config = write_config(tmp_path, provider_base="http://fake")
    script = (
        "import gc, sys, uvicorn\n"
        "from civicchat.cli.serve import main\n"
        "from civicchat.service.app import GC_THRESHOLDS\n"
        "seen = {}\n"
        "def run(app, **kw):\n"
        "    seen['threshold'] = gc.get_threshold()\n"
        "    seen['frozen'] = gc.get_freeze_count()\n"
        "uvicorn.run = run\n"
        f"assert main(['serve', {str(config)!r}, '--port', '0']) == 0\n"
        "assert seen['threshold'] == GC_THRESHOLDS, seen\n"
        "assert seen['frozen'] > 10_000, seen\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_the_worker_runs_on_uvloop_when_installed_else_on_asyncio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert serve.run_loop(_loop_module()).startswith("uvloop")
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if not installed: import fails
    assert serve.run_loop(_loop_module()).startswith("asyncio")
