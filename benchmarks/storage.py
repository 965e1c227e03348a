"""Durable inbox throughput against a bare INSERT loop on the same database, in one run.

Run: ``.venv/bin/python benchmarks/storage.py [--events 1000] [--postgres URL | --no-postgres]``.

For SQLite (a temporary file, WAL, ``synchronous=NORMAL``) and PostgreSQL (a temporary schema at
``$CIVICCHAT_TEST_POSTGRES_URL``, skipped when unreachable) it measures, side by side:

* **bare**: ``INSERT`` one small row and commit, in a loop, through the same async engine;
* **accept, 1 per commit**: ``store.accept([event])`` (what a webhook with one event does);
* **accept, 50 per commit**: ``store.accept(batch)`` (a busy webhook, or group commit) next to a
  bare loop of 50-row ``INSERT`` transactions;
* **process**: ``InboxProcessor.run_once()`` with a handler that returns one reply: claim the
  event, write the reply to the outbox and mark the event done (two transactions per event);
  then with ``batch_size=16`` (what the service uses on PostgreSQL): one claim and one commit
  for up to 16 conversations' events.

Each figure is the best of ``--rounds`` rounds; the ratios to bare are what to quote (absolute
figures move by ±30 % on shared machines).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from civicchat.messages import InboundMessage, OutboundMessage, Sender, Text
from civicchat.storage.base import EventState
from civicchat.storage.engine import create_engine, upgrade
from civicchat.storage.sql import SqlStore
from civicchat.storage.workers import InboxProcessor

PG_URL = os.environ.get(
    "CIVICCHAT_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def events(n: int, run: str) -> list[InboundMessage]:
    return [
        InboundMessage(
            channel="whatsapp",
            account="mataro",
            provider_message_id=f"wamid.{run}.{i}",
            sender=Sender(id=f"346{i % 200:08d}", name="Veí"),
            timestamp=T0 + timedelta(seconds=i),
            content=Text(body=f"Bon dia, quin és l'horari de la deixalleria? ({i})"),
        )
        for i in range(n)
    ]


async def handler(event, tx):  # type: ignore[no-untyped-def]
    msg = event.payload
    return [
        OutboundMessage(
            channel=msg.channel,
            account=msg.account,
            recipient_id=msg.sender.id,
            content=Text(body="La deixalleria obre de 9 a 20 h."),
        )
    ]


async def timed(work: Callable[[], Awaitable[int]]) -> float:
    started = time.perf_counter()
    count = await work()
    return count / (time.perf_counter() - started)


async def bench(label: str, url: str, schema: str | None, n: int, rounds: int) -> None:
    engine = create_engine(url, schema=schema)
    if schema:
        async with engine.begin() as conn:
            await conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE bench_bare (k VARCHAR(64), v TEXT)"))
        store = SqlStore(engine)
        best: dict[str, float] = {}

        def keep(name: str, rate: float) -> None:
            best[name] = max(best.get(name, 0.0), rate)

        for r in range(rounds):
            run = uuid.uuid4().hex[:8]
            row = "x" * 400  # about the size of a stored event

            async def bare_one(run: str = run, row: str = row) -> int:
                for i in range(n):
                    async with store._begin() as conn:
                        await conn.execute(
                            text("INSERT INTO bench_bare (k, v) VALUES (:k, :v)"),
                            {"k": f"{run}.{i}", "v": row},
                        )
                return n

            async def bare_batch(run: str = run, row: str = row) -> int:
                for start in range(0, n, 50):
                    async with store._begin() as conn:
                        await conn.execute(
                            text("INSERT INTO bench_bare (k, v) VALUES (:k, :v)"),
                            [{"k": f"{run}.b.{i}", "v": row} for i in range(start, start + 50)],
                        )
                return n

            single = events(n, f"{run}s")
            batched = events(n, f"{run}b")

            async def accept_one(single: list[InboundMessage] = single) -> int:
                for e in single:
                    await store.accept([e])
                return n

            async def accept_batch(batched: list[InboundMessage] = batched) -> int:
                for start in range(0, n, 50):
                    await store.accept(batched[start : start + 50])
                return n

            async def process(r: int = r) -> int:
                # One event a round: claim, then reply + done (two commits per event).
                proc = InboxProcessor(store, handler, worker_id=f"bench{r}")
                done = 0
                while done < n and await proc.run_once():
                    done += 1
                return done

            async def process_batches(r: int = r) -> int:
                # Up to 16 conversations a round: one claim and one commit for all of them.
                proc = InboxProcessor(store, handler, worker_id=f"bench{r}b", batch_size=16)
                before = (await store.state_counts())[EventState.DONE]
                while await proc.run_once():
                    pass
                return (await store.state_counts())[EventState.DONE] - before

            keep("bare, 1 per commit", await timed(bare_one))
            keep("accept, 1 per commit", await timed(accept_one))
            keep("bare, 50 per commit", await timed(bare_batch))
            keep("accept, 50 per commit", await timed(accept_batch))
            keep("process, 1 event per round", await timed(process))
            keep("process, batches of 16", await timed(process_batches))
        await store.close()
    finally:
        if schema:
            admin = create_engine(url)
            async with admin.begin() as conn:
                await conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            await admin.dispose()
        await engine.dispose()

    bare1, bare50 = best["bare, 1 per commit"], best["bare, 50 per commit"]
    print(f"\n{label}: {n} events a round, best of {rounds}")
    print(f"  {'':34} {'events/s':>10} {'ratio':>14}")
    for name, rate in best.items():
        base, base_name = (bare50, "bare 50") if "50" in name else (bare1, "bare 1")
        ratio = f"{rate / base:.2f}x {base_name}" if not name.startswith("bare") else ""
        print(f"  {name:34} {rate:10,.0f} {ratio:>14}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--postgres", default=PG_URL)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        await bench("SQLite", str(Path(tmp) / "bench.db"), None, args.events, args.rounds)
    if args.no_postgres:
        return
    try:
        probe = create_engine(args.postgres)
        async with asyncio.timeout(5), probe.connect() as conn:
            await conn.execute(text("SELECT 1"))
        await probe.dispose()
    except Exception as exc:
        print(f"\nPostgreSQL skipped ({type(exc).__name__}: {exc})", file=sys.stderr)
        return
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    await bench("PostgreSQL", args.postgres, schema, args.events, args.rounds)


if __name__ == "__main__":
    asyncio.run(main())
