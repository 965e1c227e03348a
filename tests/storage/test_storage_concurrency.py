"""Four worker processes on PostgreSQL; 500 messages, each delivered three times in random order
(the deliveries shared among the processes): exactly one reply per message, processed and sent
in order per conversation."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from storage_helpers import inbound
from test_storage_crash import lines, wait_for

from civicchat.messages import DeliveryStatus
from civicchat.storage.base import EventKind, EventState
from civicchat.storage.engine import create_engine, upgrade
from civicchat.storage.schema import ConversationRow, InboxRow, OutboxRow
from civicchat.storage.sql import SqlStore
from pg_helpers import PG_URL, require_postgres

WORKER = Path(__file__).with_name("storage_worker.py")
PROCESSES = 4
MESSAGES = 500
CONVERSATIONS = 25

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
async def pg_store(tmp_path):
    await require_postgres()
    schema = f"t_conc_{tmp_path.name[-8:].replace('-', '_').lower()}_{random.randrange(10**8)}"
    engine = create_engine(PG_URL, schema=schema)
    async with engine.begin() as conn:
        await conn.execute(text(f"CREATE SCHEMA {schema}"))
    await upgrade(engine)
    store = SqlStore(engine)
    try:
        yield store, schema
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        await store.close()


def spawn(tmp_path: Path, p: int) -> subprocess.Popen[bytes]:
    with (tmp_path / f"w{p}.err").open("wb") as err:
        return subprocess.Popen(
            [sys.executable, str(WORKER), str(tmp_path / f"c{p}.json")],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


async def test_four_processes_reply_exactly_once_in_order(pg_store, tmp_path):
    store, schema = pg_store
    rng = random.Random(5)
    senders = [f"346{i:08d}" for i in range(CONVERSATIONS)]
    total = MESSAGES
    messages = [inbound(n // CONVERSATIONS, senders[n % CONVERSATIONS]) for n in range(total)]
    deliveries = [m for m in messages for _ in range(3)]
    rng.shuffle(deliveries)
    share = len(deliveries) // PROCESSES
    procs = []
    for p in range(PROCESSES):
        mine = deliveries[p * share : (p + 1) * share]
        batches, i = [], 0
        while i < len(mine):
            size = rng.randint(1, 12)
            batches.append([m.model_dump(mode="json") for m in mine[i : i + size]])
            i += size
        (tmp_path / f"deliveries{p}.json").write_text(json.dumps(batches))
        config = {
            "url": PG_URL,
            "schema": schema,
            "workdir": str(tmp_path),
            "deliveries": str(tmp_path / f"deliveries{p}.json"),
            "lease_seconds": 30.0,
            "inbox_workers": 1,
        }
        (tmp_path / f"c{p}.json").write_text(json.dumps(config))
        procs.append(spawn(tmp_path, p))
    try:

        async def finished() -> bool:
            async with store.engine.connect() as conn:
                done = await conn.scalar(
                    select(func.count()).where(InboxRow.state == EventState.DONE)
                )
                sent = await conn.scalar(
                    select(func.count()).where(OutboxRow.status == DeliveryStatus.SENT)
                )
            return done == total and sent == total

        await wait_for(finished, 75, "4 workers to process and send everything")
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)
    for p, proc in enumerate(procs):
        assert proc.returncode == 0, (tmp_path / f"w{p}.err").read_text()[-3000:]

    async with store.engine.connect() as conn:
        events = (
            await conn.execute(
                select(InboxRow.id, InboxRow.key, InboxRow.sender_id, InboxRow.conversation_id)
                .where(InboxRow.kind == EventKind.MESSAGE)
                .order_by(InboxRow.id)
            )
        ).all()
        replies = (
            await conn.execute(
                select(
                    OutboxRow.id,
                    OutboxRow.inbound_event_id,
                    OutboxRow.recipient_id,
                    OutboxRow.sent_at,
                    OutboxRow.payload,
                ).order_by(OutboxRow.id)
            )
        ).all()
        seen = {
            r.recipient_id: r.data["seen"]
            for r in await conn.execute(select(ConversationRow.recipient_id, ConversationRow.data))
        }
    # Every message stored once, and exactly one reply to each.
    assert sorted(e.key for e in events) == sorted(m.provider_message_id for m in messages)
    assert sorted(r.inbound_event_id for r in replies) == sorted(e.id for e in events)
    by_event = {e.id: e for e in events}
    for r in replies:
        body = json.loads(r.payload)["content"]["body"]
        assert body == f"re {by_event[r.inbound_event_id].key} #0"
    # Processed one at a time and in acceptance order, per conversation: any overlap would have
    # lost an update of the conversation's list, any reordering would show in it.
    accepted: dict[str, list[int]] = defaultdict(list)
    for e in events:
        accepted[e.sender_id].append(e.id)
    assert len(seen) == CONVERSATIONS
    for sender, ids in accepted.items():
        assert seen[sender] == ids
    # Sent once each, and in order per recipient.
    sent_lines = lines(tmp_path, "sent.*.log")
    assert len(sent_lines) == total
    assert len(set(sent_lines)) == total
    last: dict[str, tuple[int, object]] = {}
    for r in replies:
        if r.recipient_id in last:
            assert r.sent_at >= last[r.recipient_id][1]
        last[r.recipient_id] = (r.id, r.sent_at)
