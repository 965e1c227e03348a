"""A worker process for the crash and concurrency tests (run as a script, killed by the tests).

    python storage_worker.py CONFIG.json

The config names the database (``url``, ``schema``), a work directory for the fake provider's
logs, deliveries to accept first (``deliveries``: a JSON file of InboundMessage lists) and slow
points that make the process hang where a test wants to SIGKILL it (``slow_process_at``: the
n-th handler call, ``slow_send_at``: the n-th send). It processes and sends until SIGTERM.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import signal
import sys
import uuid
from pathlib import Path

from storage_helpers import conversation_of

from civicchat.messages import InboundMessage, OutboundMessage, Text
from civicchat.storage.sql import open_store
from civicchat.storage.workers import InboxProcessor, OutboxSender, Reply


def _append(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


class FakeProvider:
    """Logs what it is asked to send ("sending") and what it accepted ("sent")."""

    def __init__(self, workdir: Path, slow_at: int | None) -> None:
        self.workdir = workdir
        self.slow_at = slow_at
        self.calls = 0

    async def send(self, message: OutboundMessage, *, last_inbound_at) -> str:
        self.calls += 1
        assert isinstance(message.content, Text)
        body = message.content.body
        _append(self.workdir / f"sending.{os.getpid()}.log", body)
        if self.calls == self.slow_at:
            _append(self.workdir / "slow_send", body)
            await asyncio.sleep(3600)  # the test kills us here, mid-send
        await asyncio.sleep(random.uniform(0, 0.003))
        _append(self.workdir / f"sent.{os.getpid()}.log", f"{message.recipient_id}\t{body}")
        return f"prov.{uuid.uuid4().hex}"


async def main(config: dict, deliveries: list) -> None:
    workdir = Path(config["workdir"])
    store = await open_store(config["url"], schema=config.get("schema"), pool_size=4)
    handler_calls = 0
    slow_process_at = config.get("slow_process_at")

    async def handler(event, tx):
        nonlocal handler_calls
        handler_calls += 1
        msg = event.payload
        if handler_calls == slow_process_at:
            _append(workdir / "slow_process", msg.provider_message_id)
            await asyncio.sleep(3600)  # the test kills us here, mid-transaction
        conv = await conversation_of(tx, msg)
        seen = [*conv.data.get("seen", []), event.id]
        await asyncio.sleep(random.uniform(0, 0.002))
        await tx.conversations.save(dataclasses.replace(conv, data={"seen": seen}))
        replies = [
            OutboundMessage(
                channel=msg.channel,
                account=msg.account,
                recipient_id=msg.sender.id,
                content=Text(body=f"re {msg.provider_message_id} #{i}"),
            )
            for i in range(config.get("replies", 1))
        ]
        return Reply(replies, conversation_id=conv.id)

    provider = FakeProvider(workdir, config.get("slow_send_at"))
    lease = config.get("lease_seconds", 1.0)
    inbox = [
        InboxProcessor(store, handler, lease_seconds=lease, idle_seconds=0.02)
        for _ in range(config.get("inbox_workers", 1))
    ]
    sender = OutboxSender(
        store,
        {("whatsapp", "acc1"): provider},
        lease_seconds=max(lease, 1.0),
        idle_seconds=0.02,
        batch_size=10,
    )
    loop = asyncio.get_running_loop()

    def stop_all() -> None:
        for w in (*inbox, sender):
            w.stop()

    loop.add_signal_handler(signal.SIGTERM, stop_all)

    async def accept_all() -> None:
        if not deliveries:
            return
        batches = [[InboundMessage.model_validate(m) for m in batch] for batch in deliveries]
        for batch in batches:
            await store.accept(batch)
            await asyncio.sleep(0)
        _append(workdir / "accepted", str(os.getpid()))

    async def watchdog() -> None:
        # Never outlive the test that started us (a killed pytest must not leave us running).
        parent = os.getppid()
        deadline = loop.time() + config.get("max_seconds", 150)
        while not all(w.stopping for w in inbox):
            if os.getppid() != parent or loop.time() > deadline:
                stop_all()
            await asyncio.sleep(0.2)

    _append(workdir / "started", str(os.getpid()))
    await asyncio.gather(
        watchdog(),
        accept_all(),
        *(w.run_forever() for w in inbox),
        *([sender.run_forever()] if config.get("send", True) else []),
    )
    await store.close()


if __name__ == "__main__":
    cfg = json.loads(Path(sys.argv[1]).read_text())
    path = cfg.get("deliveries")
    asyncio.run(main(cfg, json.loads(Path(path).read_text()) if path else []))
