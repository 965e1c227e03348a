import asyncio
import uuid

import pytest

from civicchat.service.live import (
    InProcessLiveBus,
    LiveBus,
    LiveEvent,
    PostgresLiveBus,
    asyncpg_dsn,
)
from pg_helpers import PG_URL, require_postgres


async def test_subscriber_of_an_account_gets_only_that_accounts_events():
    bus = InProcessLiveBus()
    assert isinstance(bus, LiveBus)
    async with bus.subscribe("a") as events_a, bus.subscribe("*") as events_all:
        await bus.publish(LiveEvent(account="b", kind="message_in", conversation_id=2))
        await bus.publish(LiveEvent(account="a", kind="message_in", conversation_id=1))
        got = await asyncio.wait_for(anext(events_a), 1)
        assert got.conversation_id == 1
        assert (await anext(events_all)).account == "b"
        assert (await anext(events_all)).account == "a"
    assert bus.subscriber_count == 0


async def test_slow_subscriber_loses_oldest_events_and_never_blocks():
    bus = InProcessLiveBus(queue_size=2)
    async with bus.subscribe("a") as events:
        for i in range(5):
            await bus.publish(LiveEvent(account="a", kind="status", conversation_id=i))
        assert [(await anext(events)).conversation_id for _ in range(2)] == [3, 4]


def test_event_json_round_trip_and_refusals():
    event = LiveEvent(account="a", kind="message_out", conversation_id=3, data={"text": "Bon dia"})
    assert LiveEvent.from_json(event.to_json()) == event
    for bad in ("[]", '{"account": 1, "kind": "x"}', '{"account": "a", "kind": "x", "data": 3}'):
        with pytest.raises(ValueError):  # noqa: PT011
            LiveEvent.from_json(bad)


def test_asyncpg_dsn_from_sqlalchemy_url():
    assert asyncpg_dsn("postgresql+asyncpg://u:p@h/db") == "postgresql://u:p@h/db"
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        asyncpg_dsn("sqlite+aiosqlite:///x.db")


@pytest.mark.postgres
async def test_postgres_bus_delivers_an_event_published_by_another_process_connection():
    await require_postgres()
    channel = f"civicchat_test_{uuid.uuid4().hex[:12]}"
    one = PostgresLiveBus(PG_URL, channel=channel)
    two = PostgresLiveBus(PG_URL, channel=channel)
    await one.start()
    await two.start()
    try:
        async with two.subscribe("mataro-wa") as events, one.subscribe("mataro-wa") as mine:
            event = LiveEvent("mataro-wa", "message_in", 7, {"state": "queued"})
            await one.publish(event)
            assert await asyncio.wait_for(anext(events), 5) == event
            assert await asyncio.wait_for(anext(mine), 5) == event
            # Too big for NOTIFY: still delivered, without its data.
            await one.publish(LiveEvent("mataro-wa", "message_out", 8, {"text": "x" * 9000}))
            big = await asyncio.wait_for(anext(events), 5)
            assert (big.conversation_id, dict(big.data)) == (8, {})
    finally:
        await one.close()
        await two.close()
