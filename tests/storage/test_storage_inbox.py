"""Contract tests of the durable inbox, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError
from storage_helpers import T0, conversation_of, inbound, reply_to, status

from civicchat.exceptions import StorageError
from civicchat.messages import DeliveryStatus, InboundMessage, Media, MediaKind, Sender
from civicchat.storage.base import EventKind, EventState
from civicchat.storage.schema import InboxRow
from civicchat.storage.sql import LeaseLostError
from civicchat.storage.workers import InboxProcessor, Reply


async def test_accept_commits_and_redelivery_is_a_noop(store):
    events = [inbound(1), inbound(2), inbound(1, "34600000002")]
    first = await store.accept(events)
    assert (first.accepted, first.duplicates, first.revived) == (3, 0, 0)
    again = await store.accept([inbound(2), inbound(1), inbound(3)])
    assert (again.accepted, again.duplicates, again.revived) == (1, 2, 0)
    counts = await store.state_counts()
    assert counts[EventState.PENDING] == 4


async def test_duplicates_inside_one_batch_are_stored_once(store):
    result = await store.accept([inbound(1), inbound(1), inbound(1)])
    assert (result.accepted, result.duplicates) == (1, 2)
    assert (await store.state_counts())[EventState.PENDING] == 1


async def test_statuses_are_keyed_by_message_and_status(store):
    r = await store.accept(
        [
            status("wamid.out1", DeliveryStatus.SENT),
            status("wamid.out1", DeliveryStatus.DELIVERED),
            status("wamid.out1", DeliveryStatus.SENT),
        ]
    )
    assert (r.accepted, r.duplicates) == (2, 1)


async def test_accepted_event_reads_back_identical(store):
    msg = inbound(7)
    await store.accept([msg])
    event = await store.claim_event("w1", lease_seconds=30)
    assert event is not None
    assert event.kind is EventKind.MESSAGE
    assert event.payload == msg
    assert event.state is EventState.PROCESSING
    assert event.attempts == 1
    assert event.received_at.tzinfo is not None


async def test_claim_respects_order_per_conversation(store):
    await store.accept([inbound(1, "A"), inbound(2, "A"), inbound(1, "B")])
    first = await store.claim_event("w1", lease_seconds=30)
    second = await store.claim_event("w2", lease_seconds=30)
    assert first is not None
    assert second is not None
    assert first.payload.provider_message_id == "wamid.A.1"
    # A's second message waits for the first: B's is claimed instead.
    assert second.payload.provider_message_id == "wamid.B.1"
    assert await store.claim_event("w3", lease_seconds=30) is None
    async with store.transaction() as tx:
        await tx.complete_event(first.id, "w1")
    third = await store.claim_event("w3", lease_seconds=30)
    assert third is not None
    assert third.payload.provider_message_id == "wamid.A.2"


async def test_failed_event_is_retried_with_backoff_and_blocks_only_its_conversation(store, clock):
    await store.accept([inbound(1, "A"), inbound(2, "A"), inbound(1, "B")])
    calls: list[str] = []

    async def handler(event, tx):
        calls.append(event.payload.provider_message_id)
        if event.payload.sender.id == "A" and len(calls) == 1:
            raise RuntimeError("keyword engine down")
        return [reply_to(event.payload, "ok")]

    proc = InboxProcessor(store, handler, clock, worker_id="w1", backoff_base=10)
    assert await proc.run_once()  # A1 fails
    assert await proc.run_once()  # B1 goes ahead
    assert not await proc.run_once()  # A1 waits for its retry time, A2 waits for A1
    assert calls == ["wamid.A.1", "wamid.B.1"]
    counts = await store.state_counts()
    assert counts[EventState.FAILED] == 1
    assert counts[EventState.DONE] == 1

    clock.advance(timedelta(seconds=11))
    assert await proc.run_once()
    assert await proc.run_once()
    assert calls == ["wamid.A.1", "wamid.B.1", "wamid.A.1", "wamid.A.2"]
    assert (await store.state_counts())[EventState.DONE] == 3


async def test_event_failing_too_often_is_parked_visible_and_unblocks(store, clock):
    await store.accept([inbound(1, "A"), inbound(2, "A")])

    async def handler(event, tx):
        if event.payload.provider_message_id == "wamid.A.1":
            raise ValueError("bad")
        return []

    proc = InboxProcessor(store, handler, clock, worker_id="w1", max_attempts=3, backoff_base=1)
    for _ in range(3):
        assert await proc.run_once()
        clock.advance(timedelta(seconds=10))
    parked = await store.parked_events()
    assert [e.payload.provider_message_id for e in parked] == ["wamid.A.1"]
    assert parked[0].attempts == 3
    assert parked[0].last_error == "ValueError: bad"
    assert await store.parked_events(account="other") == []
    # A parked event no longer holds its conversation back.
    assert await proc.run_once()
    assert (await store.state_counts())[EventState.DONE] == 1
    assert await store.requeue(parked[0].id)
    assert (await store.state_counts())[EventState.PENDING] == 1


async def test_redelivery_after_failure_makes_the_event_pending_again(store, clock):
    await store.accept([inbound(1)])

    async def failing(event, tx):
        raise RuntimeError("down")

    proc = InboxProcessor(store, failing, clock, worker_id="w1", max_attempts=1)
    await proc.run_once()
    assert len(await store.parked_events()) == 1
    result = await store.accept([inbound(1)])
    assert (result.accepted, result.duplicates, result.revived) == (0, 0, 1)
    event = await store.claim_event("w2", lease_seconds=30)
    assert event is not None
    assert event.attempts == 1


async def test_expired_lease_is_taken_over_and_the_old_worker_cannot_finish(store, clock):
    await store.accept([inbound(1)])
    first = await store.claim_event("crashed", lease_seconds=30)
    assert first is not None
    assert await store.claim_event("w2", lease_seconds=30) is None
    clock.advance(timedelta(seconds=31))
    second = await store.claim_event("w2", lease_seconds=30)
    assert second is not None
    assert second.id == first.id
    assert second.attempts == 2
    with pytest.raises(LeaseLostError):
        async with store.transaction() as tx:
            await tx.complete_event(first.id, "crashed")
    with pytest.raises(LeaseLostError):
        await store.fail_event(first.id, "crashed", "late", retry_at=None)
    async with store.transaction() as tx:
        await tx.complete_event(second.id, "w2")
    assert (await store.state_counts())[EventState.DONE] == 1


async def test_replies_commit_with_the_event_or_not_at_all(store, clock):
    await store.accept([inbound(1)])

    async def handler_that_crashes_after_writing(event, tx):
        await tx.enqueue([reply_to(event.payload, "first")], key_prefix=f"in:{event.id}")
        raise RuntimeError("crash after the outbox write")

    proc = InboxProcessor(store, handler_that_crashes_after_writing, clock, worker_id="w1")
    await proc.run_once()
    event = (await store.get_event(1)) or (await store.parked_events())[0]
    assert await store.outbound_for_event(event.id) == []

    async def handler(event, tx):
        return [reply_to(event.payload, "hola"), reply_to(event.payload, "adéu")]

    clock.advance(timedelta(minutes=5))
    proc = InboxProcessor(store, handler, clock, worker_id="w1")
    assert await proc.run_once()
    items = await store.outbound_for_event(event.id)
    assert [i.message.content.body for i in items] == ["hola", "adéu"]
    assert [i.key for i in items] == [f"in:{event.id}:0", f"in:{event.id}:1"]
    assert all(i.status is DeliveryStatus.QUEUED for i in items)


async def test_a_retry_can_never_write_a_second_different_reply(store, clock):
    await store.accept([inbound(1)])
    event = await store.claim_event("w1", lease_seconds=30)
    assert event is not None
    async with store.transaction() as tx:
        ids = await tx.enqueue(
            [reply_to(event.payload, "one")], key_prefix=f"in:{event.id}", inbound_event_id=event.id
        )
        assert len(ids) == 1
    async with store.transaction() as tx:
        again = await tx.enqueue(
            [reply_to(event.payload, "two")], key_prefix=f"in:{event.id}", inbound_event_id=event.id
        )
        assert again == []
    items = await store.outbound_for_event(event.id)
    assert [i.message.content.body for i in items] == ["one"]


async def test_handler_state_and_conversation_link(store, clock):
    await store.accept([inbound(1), inbound(2)])

    async def handler(event, tx):
        msg = event.payload
        conv = await conversation_of(tx, msg, name=msg.sender.name)
        await tx.conversations.save(
            dataclasses.replace(
                conv,
                last_inbound_at=msg.timestamp,
                data={**conv.data, "n": conv.data.get("n", 0) + 1},
            )
        )
        return Reply([reply_to(msg, "rebut")], conversation_id=conv.id)

    proc = InboxProcessor(store, handler, clock, worker_id="w1")
    assert await proc.run_once()
    assert await proc.run_once()
    async with store.transaction() as tx:
        conv = await tx.conversations.get(1)
        assert conv is not None
        assert conv.data == {"n": 2}
        assert conv.last_inbound_at == inbound(2).timestamp
        messages = await tx.conversation_messages(conv.id)
    assert sorted((m.direction, m.provider_message_id or "") for m in messages) == [
        ("in", "wamid.34600000001.1"),
        ("in", "wamid.34600000001.2"),
        ("out", ""),
        ("out", ""),
    ]
    items = await store.claim_outbound("s1", limit=10, lease_seconds=30)
    assert len(items) == 1  # one per recipient at a time
    assert items[0].conversation_id == conv.id
    assert items[0].last_inbound_at == inbound(2).timestamp


async def test_media_is_registered_for_download(store, clock):
    msg = InboundMessage(
        channel="whatsapp",
        account="acc1",
        provider_message_id="wamid.m1",
        sender=Sender(id="34600000001"),
        timestamp=T0,
        content=Media(media_kind=MediaKind.IMAGE, media_id="MEDIA1", mime_type="image/jpeg"),
    )
    await store.accept([msg])

    async def handler(event, tx):
        return []

    await InboxProcessor(store, handler, clock, worker_id="w1").run_once()
    async with store.transaction() as tx:
        refs = await tx.media.claim_media("m1", limit=5, lease_seconds=30)
    assert [(r.media_id, r.mime_type, r.event_id) for r in refs] == [("MEDIA1", "image/jpeg", 1)]


class _Deadlock(Exception):
    sqlstate = "40P01"


def _fail_driver_once(monkeypatch, error: BaseException) -> list[int]:
    """PostgreSQL: the driver's next accept statement raises ``error`` (then works again)."""
    real = asyncpg.Connection.fetchrow
    calls: list[int] = []

    async def fetchrow(self, query, *args, **kwargs):
        if "INSERT INTO inbox_events" in query:
            calls.append(1)
            if len(calls) == 1:
                raise error
        return await real(self, query, *args, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "fetchrow", fetchrow)
    return calls


async def test_a_deadlocked_batch_is_run_again(store, monkeypatch):
    if store.is_postgres:
        calls = _fail_driver_once(monkeypatch, asyncpg.DeadlockDetectedError("deadlock detected"))
    else:
        real = store._accept
        calls = []

        async def deadlock_once(*args):
            calls.append(1)
            if len(calls) == 1:
                raise DBAPIError("INSERT", {}, _Deadlock("deadlock detected"))
            return await real(*args)

        monkeypatch.setattr(store, "_accept", deadlock_once)
    result = await store.accept([inbound(1), inbound(2)])
    assert result.accepted == 2
    assert len(calls) == 2


async def test_other_database_errors_are_not_retried(store, monkeypatch):
    if store.is_postgres:
        calls = _fail_driver_once(monkeypatch, asyncpg.DiskFullError("disk full"))
        with pytest.raises(StorageError, match="DiskFullError"):
            await store.accept([inbound(1)])
        assert len(calls) == 1
        return

    async def broken(*args):
        raise DBAPIError("INSERT", {}, OSError("disk full"))

    monkeypatch.setattr(store, "_accept", broken)
    with pytest.raises(DBAPIError):
        await store.accept([inbound(1)])


@pytest.mark.postgres
@pytest.mark.parametrize("target", ["postgres"], indirect=True)
async def test_a_revived_event_and_the_new_ones_of_its_batch_appear_together(store, monkeypatch):
    """A re-delivered batch [A parked, B new] of one conversation: no worker may see B before A
    is pending again (B would be answered before A)."""
    a, b = inbound(1), inbound(2)
    await store.accept([a])
    (event,) = await store.claim_events("w1", limit=1, lease_seconds=60)
    await store.fail_event(event.id, "w1", "boom", retry_at=None)  # parked
    real = asyncpg.Connection.fetchrow
    seen_between: list[list[int]] = []

    async def fetchrow(self, query, *args, **kwargs):
        row = await real(self, query, *args, **kwargs)
        if "INSERT INTO inbox_events" in query:
            # Another worker claims right after the insert, before the revive.
            claimed = await store.claim_events("w2", limit=5, lease_seconds=60)
            seen_between.append([e.id for e in claimed])
        return row

    monkeypatch.setattr(asyncpg.Connection, "fetchrow", fetchrow)
    result = await store.accept([a, b])
    monkeypatch.undo()
    assert (result.accepted, result.revived) == (1, 1)
    assert seen_between == [[]]  # nothing of the batch was visible yet
    claimed = await store.claim_events("w3", limit=5, lease_seconds=60)
    assert [e.payload.provider_message_id for e in claimed] == [a.provider_message_id]


@pytest.mark.postgres
@pytest.mark.parametrize("target", ["postgres"], indirect=True)
async def test_a_server_shutdown_mid_accept_discards_the_connection(store, monkeypatch):
    from sqlalchemy import event

    assert (await store.accept([inbound(1)])).accepted == 1
    opened: list[int] = []
    event.listen(store.engine.sync_engine, "connect", lambda *_a: opened.append(1))
    assert (await store.accept([inbound(2)])).accepted == 1
    assert opened == []  # the pooled connection is reused
    _fail_driver_once(monkeypatch, asyncpg.AdminShutdownError("terminating connection"))
    with pytest.raises(StorageError, match="AdminShutdownError"):
        await store.accept([inbound(3)])
    assert (await store.accept([inbound(3)])).accepted == 1
    assert opened == [1]  # the one the server shut down was thrown away: a new one


@pytest.mark.postgres
@pytest.mark.parametrize("target", ["postgres"], indirect=True)
async def test_a_connection_lost_mid_accept_is_refused_and_not_reused(store, monkeypatch):
    """PostgreSQL's accept runs on the driver directly: a connection that broke under it is
    thrown away (the pool would otherwise hand it to the next webhook), nothing is stored, and
    the webhook can be delivered again."""
    assert store.is_postgres
    _fail_driver_once(monkeypatch, ConnectionResetError("connection reset by peer"))
    with pytest.raises(StorageError, match="ConnectionResetError"):
        await store.accept([inbound(1)])
    assert store.engine.pool.checkedout() == 0
    assert (await store.accept([inbound(1)])).accepted == 1  # the re-delivery is stored
    assert (await store.accept([inbound(1)])).duplicates == 1


async def test_concurrent_processors_in_one_process_keep_each_conversation_serial(store, clock):
    senders = [f"3460000000{i}" for i in range(5)]
    messages = [inbound(n, s) for n in range(12) for s in senders]
    await store.accept(messages)
    running: set[str] = set()
    order: dict[str, list[str]] = {s: [] for s in senders}
    overlaps = []

    async def handler(event, tx):
        sender = event.payload.sender.id
        if sender in running:
            overlaps.append(sender)
        running.add(sender)
        await asyncio.sleep(0.001)  # let the other processors run meanwhile
        order[sender].append(event.payload.provider_message_id)
        running.discard(sender)
        return [reply_to(event.payload, "ok")]

    processors = [InboxProcessor(store, handler, clock, worker_id=f"w{i}") for i in range(4)]

    async def drain(p):
        idle = 0
        while idle < 3:
            idle = 0 if await p.run_once() else idle + 1
            await asyncio.sleep(0)

    await asyncio.gather(*(drain(p) for p in processors))
    assert overlaps == []
    for s in senders:
        assert order[s] == [f"wamid.{s}.{n}" for n in range(12)]
    assert (await store.state_counts())[EventState.DONE] == len(messages)


async def test_an_unreadable_event_is_parked_instead_of_blocking_the_queue(store, clock):
    await store.accept([inbound(1, "A"), inbound(1, "B")])
    async with store.engine.begin() as conn:
        await conn.execute(
            update(InboxRow).where(InboxRow.sender_id == "A").values(payload='{"from": "v9"}')
        )
    event = await store.claim_event("w1", lease_seconds=30)
    assert event is not None
    assert event.payload.sender.id == "B"
    counts = await store.state_counts()
    assert counts[EventState.PARKED] == 1


async def test_a_cancelled_worker_hands_its_event_back_at_once(store, clock):
    await store.accept([inbound(1)])
    started = asyncio.Event()

    async def slow(event, tx):
        started.set()
        await asyncio.sleep(3600)

    proc = InboxProcessor(store, slow, clock, worker_id="w1", lease_seconds=600)
    task = asyncio.create_task(proc.run_forever())
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    event = await store.claim_event("w2", lease_seconds=30)  # no need to wait 600 s
    assert event is not None
    assert event.attempts == 1  # the interrupted attempt does not count
    assert await store.outbound_for_event(event.id) == []


async def test_stop_lets_the_current_event_finish(store, clock):
    await store.accept([inbound(1), inbound(2)])
    proc = None

    async def handler(event, tx):
        proc.stop()
        await asyncio.sleep(0.01)
        return [reply_to(event.payload, "ok")]

    proc = InboxProcessor(store, handler, clock, worker_id="w1")
    await asyncio.wait_for(proc.run_forever(), 10)
    counts = await store.state_counts()
    assert counts[EventState.DONE] == 1
    assert counts[EventState.PENDING] == 1


@pytest.mark.postgres
@pytest.mark.parametrize("target", ["postgres"], indirect=True)
async def test_a_batch_of_new_events_is_one_statement_and_known_ones_take_the_careful_way(
    store, monkeypatch
):
    sent: list[str] = []
    real_fetchrow, real_execute = asyncpg.Connection.fetchrow, asyncpg.Connection.execute

    async def fetchrow(self, query, *args, **kwargs):
        sent.append(query.split()[0] + (" revive" if "UPDATE inbox_events" in query else ""))
        return await real_fetchrow(self, query, *args, **kwargs)

    async def execute(self, query, *args, **kwargs):
        sent.append(query.split()[0])
        return await real_execute(self, query, *args, **kwargs)

    await store.state_counts()  # the pool's first connection (the dialect's own set-up)
    monkeypatch.setattr(asyncpg.Connection, "fetchrow", fetchrow)
    monkeypatch.setattr(asyncpg.Connection, "execute", execute)
    a, b, c = inbound(1), inbound(2), inbound(3)
    assert (await store.accept([a, b])).accepted == 2
    assert sent == ["WITH"]  # one statement, its own transaction: no BEGIN, no COMMIT
    sent.clear()
    result = await store.accept([b, c])  # b is known: the first try keeps nothing
    assert (result.accepted, result.duplicates, result.revived) == (1, 1, 0)
    assert sent[0] == "WITH"
    assert sent[1:] == ["BEGIN;", "WITH", "WITH revive", "COMMIT;"]  # then one transaction
    monkeypatch.undo()
    claimed = await store.claim_events("w", limit=5, lease_seconds=60)
    # One conversation: only its head can be claimed.
    assert [e.payload.provider_message_id for e in claimed] == [a.provider_message_id]
    async with store.engine.connect() as conn:
        keys = (await conn.execute(select(InboxRow.key).order_by(InboxRow.id))).scalars().all()
    assert keys == [a.provider_message_id, b.provider_message_id, c.provider_message_id]


@pytest.mark.postgres
@pytest.mark.parametrize("target", ["postgres"], indirect=True)
async def test_a_redelivery_never_holds_a_known_row_a_worker_needs(store):
    """A worker holds m1 and then wants m0; a webhook re-delivers [m0, m1] in between. The accept
    may wait for the worker, but must not lock m0 (a deadlock: 1 s, then one side fails)."""
    m0, m1 = inbound(1, "34600000001"), inbound(2, "34600000002")
    await store.accept([m0, m1])

    def touch(message: InboundMessage) -> Any:
        return (
            update(InboxRow)
            .where(InboxRow.key == message.provider_message_id)
            .values(last_error="worker")
        )

    async with store.engine.connect() as worker:
        await worker.begin()
        await worker.execute(touch(m1))
        accept = asyncio.create_task(store.accept([m0, m1]))
        await asyncio.sleep(0.3)  # the accept has reached m1 and waits for the worker
        await asyncio.wait_for(worker.execute(touch(m0)), 0.5)  # not locked by the accept
        await worker.commit()
    result = await asyncio.wait_for(accept, 5)
    assert (result.accepted, result.duplicates, result.revived) == (0, 2, 0)


async def test_close_waits_for_a_running_refresh_and_can_itself_be_cancelled(store):
    release = asyncio.Event()

    async def stubborn_refresh() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await release.wait()  # a refresh that takes a while to stop

    store._analyzing = asyncio.create_task(stubborn_refresh())
    await asyncio.sleep(0)
    closing = asyncio.create_task(store.close())
    await asyncio.sleep(0.05)
    assert not closing.done()  # waits for the refresh
    closing.cancel()  # a shutdown that cannot wait
    with pytest.raises(asyncio.CancelledError):
        await closing
    release.set()
    await asyncio.wait_for(store.close(), 5)  # a later close still works
    assert store._analyzing is None or store._analyzing.done()


@pytest.mark.postgres
@pytest.mark.parametrize("target", ["postgres"], indirect=True)
async def test_the_statistics_are_refreshed_when_the_inbox_has_grown(store):
    """A young table that grew in seconds is planned from statistics of when it was small
    (sequential scans); accept() has them refreshed in the background as the inbox grows."""

    async def reltuples() -> float:
        async with store.engine.connect() as conn:
            found = await conn.scalar(
                text("SELECT reltuples FROM pg_class WHERE oid = to_regclass('inbox_events')")
            )
        return float(found)

    store.analyze_after = 0  # off
    await store.accept([inbound(n) for n in range(1, 7)])
    await asyncio.sleep(0.3)
    assert await reltuples() != 6
    store.analyze_after = 5
    await store.accept([inbound(n) for n in range(7, 12)])  # 5 more: time to refresh
    for _ in range(50):
        if await reltuples() == 11:
            break
        await asyncio.sleep(0.1)
    assert await reltuples() == 11  # ANALYZE ran: the planner knows the table's size
    # The next refresh waits until the inbox has doubled again.
    await store.accept([inbound(12)])
    await asyncio.sleep(0.3)
    assert await reltuples() == 11
