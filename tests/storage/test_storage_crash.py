"""kill -9 a worker in the middle of processing, then in the middle of sending: after a restart
every accepted message is processed once and every reply sent once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select
from storage_helpers import inbound

from civicchat.messages import DeliveryStatus
from civicchat.storage.base import EventState
from civicchat.storage.schema import OutboxRow

WORKER = Path(__file__).with_name("storage_worker.py")

pytestmark = pytest.mark.slow


def start_worker(tmp_path: Path, target, name: str, **options) -> subprocess.Popen[bytes]:
    config = {
        "url": target.url,
        "schema": target.schema,
        "workdir": str(tmp_path),
        "lease_seconds": 1.0,
        "replies": 2,
        **options,
    }
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(config))
    with (tmp_path / f"{name}.err").open("wb") as err:
        return subprocess.Popen(
            [sys.executable, str(WORKER), str(path)], stdout=subprocess.DEVNULL, stderr=err
        )


async def wait_for(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def lines(tmp_path: Path, pattern: str) -> list[str]:
    out: list[str] = []
    for f in sorted(tmp_path.glob(pattern)):
        out += f.read_text().splitlines()
    return out


def kill9(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


async def test_sigkill_while_processing_and_while_sending_loses_and_doubles_nothing(
    store, target, tmp_path
):
    senders = [f"3460000{i:04d}" for i in range(4)]
    messages = [inbound(n, s) for n in range(5) for s in senders]
    await store.accept(messages)

    async def exists(name: str) -> bool:
        return (tmp_path / name).exists()

    # 1. Killed in the middle of a handler, inside its transaction.
    w1 = start_worker(tmp_path, target, "w1", slow_process_at=3, send=False)
    try:
        await wait_for(lambda: exists("slow_process"), 30, "the handler to hang")
    finally:
        kill9(w1)
    assert w1.returncode == -signal.SIGKILL

    # 2. Killed in the middle of a send. Sends to other recipients run concurrently: wait until
    # the ones the provider accepted are recorded, so that the kill hits only the hanging send
    # (a kill between a provider's "accepted" and our record of it does resend: at least once).
    w2 = start_worker(tmp_path, target, "w2", slow_send_at=4)

    async def only_the_hung_send_in_flight() -> bool:
        if not (tmp_path / "slow_send").exists():
            return False
        async with store.engine.connect() as conn:
            recorded = await conn.scalar(
                select(func.count()).where(OutboxRow.status == DeliveryStatus.SENT)
            )
        return recorded == len(lines(tmp_path, "sent.*.log"))

    try:
        await wait_for(only_the_hung_send_in_flight, 30, "a send to hang")
    finally:
        kill9(w2)

    # 3. A clean restart finishes the work.
    w3 = start_worker(tmp_path, target, "w3")
    try:

        async def finished() -> bool:
            counts = await store.state_counts()
            if counts[EventState.DONE] != len(messages):
                return False
            async with store.engine.connect() as conn:
                unsent = await conn.scalar(
                    select(func.count()).where(OutboxRow.status != DeliveryStatus.SENT)
                )
            return unsent == 0

        await wait_for(finished, 60, "the restarted worker to finish")
    finally:
        w3.send_signal(signal.SIGTERM)
        w3.wait(timeout=20)
    assert w3.returncode == 0, (tmp_path / "w3.err").read_text()

    expected = {f"re {m.provider_message_id} #{i}" for m in messages for i in range(2)}
    # Processed once: exactly the two replies of every message, written once each.
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(OutboxRow.inbound_event_id, OutboxRow.payload))).all()
    bodies = [json.loads(p)["content"]["body"] for _, p in rows]
    assert sorted(bodies) == sorted(expected)
    assert set(Counter(e for e, _ in rows).values()) == {2}
    # Sent once: the provider accepted every reply exactly once (the send that hung was retried).
    sent = Counter(line.split("\t")[1] for line in lines(tmp_path, "sent.*.log"))
    assert set(sent) == expected
    assert max(sent.values()) == 1
    hung = (tmp_path / "slow_send").read_text().strip()
    assert hung in expected
    # And the handler that was killed mid-transaction left nothing behind but was re-run.
    hung_event = (tmp_path / "slow_process").read_text().strip()
    assert f"re {hung_event} #0" in sent
