"""Batched claims and completions, the workers' public hooks and wake-up signals."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from sqlalchemy.exc import DBAPIError
from storage_helpers import inbound, reply_to, status

from civicchat.messages import DeliveryStatus, Media, MediaKind, OutboundMessage, Text
from civicchat.storage.base import EventKind, EventState, MediaState
from civicchat.storage.engine import create_engine
from civicchat.storage.sql import SqlStore
from civicchat.storage.workers import InboxProcessor, OutboxSender, Reply

A, B, C = "34600000001", "34600000002", "34600000003"


class Recording(InboxProcessor):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.committed: list[list[str]] = []
        self.rolled_back: list[list[int]] = []

    async def after_commit(self, events):
        self.committed.append([e.payload.provider_message_id for e in events])

    def after_rollback(self, events):
        self.rolled_back.append([e.id for e in events])


async def test_a_batch_claim_takes_one_head_per_conversation_in_order(store):
    await store.accept([inbound(1, A), inbound(2, A), inbound(1, B), inbound(1, C)])
    first = await store.claim_events("w1", limit=2, lease_seconds=30)
    assert [e.payload.provider_message_id for e in first] == [f"wamid.{A}.1", f"wamid.{B}.1"]
    second = await store.claim_events("w2", limit=10, lease_seconds=30)
    # A's second message waits for its first; B is in progress: only C is left.
    assert [e.payload.provider_message_id for e in second] == [f"wamid.{C}.1"]
    assert await store.claim_events("w3", limit=10, lease_seconds=30) == []
    assert all(e.attempts == 1 for e in first + second)


async def test_a_batch_is_handled_in_one_commit_and_keeps_each_conversations_order(store, clock):
    await store.accept([inbound(1, A), inbound(2, A), inbound(1, B), inbound(3, A)])
    seen: list[str] = []

    async def handler(event, tx):
        seen.append(event.payload.provider_message_id)
        return [reply_to(event.payload, f"re {event.payload.provider_message_id}")]

    proc = Recording(store, handler, clock, worker_id="w1", batch_size=8)
    rounds = 0
    while await proc.run_once():
        rounds += 1
    assert rounds == 3  # A1+B1, then A2, then A3
    assert proc.committed == [
        [f"wamid.{A}.1", f"wamid.{B}.1"],
        [f"wamid.{A}.2"],
        [f"wamid.{A}.3"],
    ]
    assert [s for s in seen if A in s] == [f"wamid.{A}.1", f"wamid.{A}.2", f"wamid.{A}.3"]
    assert (await store.state_counts())[EventState.DONE] == 4
    items = await store.claim_outbound("s", limit=10, lease_seconds=30)
    assert sorted(i.message.content.body for i in items) == [f"re wamid.{A}.1", f"re wamid.{B}.1"]


async def test_a_failing_event_rolls_back_its_batch_but_the_others_complete(store, clock):
    await store.accept([inbound(1, A), inbound(1, B), inbound(1, C)])
    calls: list[str] = []

    async def handler(event, tx):
        calls.append(event.payload.sender.id)
        if event.payload.sender.id == B:
            raise RuntimeError("broken")
        return [reply_to(event.payload, "ok")]

    proc = Recording(store, handler, clock, worker_id="w1", batch_size=8, backoff_base=10)
    assert await proc.run_once()
    assert len(proc.rolled_back) == 2  # the whole batch, then B alone
    assert proc.committed == [[f"wamid.{A}.1"], [f"wamid.{C}.1"]]
    counts = await store.state_counts()
    assert (counts[EventState.DONE], counts[EventState.FAILED]) == (2, 1)
    # The replies of the rolled-back attempt were not kept: one reply each for A and C.
    items = await store.claim_outbound("s", limit=10, lease_seconds=30)
    assert sorted(i.message.recipient_id for i in items) == [A, C]


async def test_statuses_in_a_batch_are_applied_and_reported(store, clock):
    await store.accept([inbound(1, A)])

    async def handler(event, tx):
        return [reply_to(event.payload, "ok")]

    proc = Recording(store, handler, clock, worker_id="w1", batch_size=8)
    assert await proc.run_once()

    class Provider:
        async def send(self, message, *, last_inbound_at):
            return "wamid.out.1"

    sender = OutboxSender(store, {("whatsapp", "acc1"): Provider()}, clock, worker_id="s")
    assert await sender.run_once()
    await store.accept([status("wamid.out.1", DeliveryStatus.DELIVERED), inbound(2, B)])
    assert await proc.run_once()
    kinds = {tuple(batch) for batch in proc.committed[1:]}
    assert kinds == {("wamid.out.1",), (f"wamid.{B}.2",)}
    item = (await store.outbound_for_event(1))[0]
    assert item.status is DeliveryStatus.DELIVERED


async def test_after_send_is_called_once_the_send_is_recorded(store, clock):
    await store.accept([inbound(1, A), inbound(1, B)])

    async def handler(event, tx):
        return Reply([reply_to(event.payload, "ok")], conversation_id=None)

    proc = InboxProcessor(store, handler, clock, worker_id="w1", batch_size=8)
    assert await proc.run_once()

    class Provider:
        def __init__(self):
            self.n = 0

        async def send(self, message, *, last_inbound_at):
            self.n += 1
            return f"prov.{message.recipient_id}"

    class Sender(OutboxSender):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.reported: list[tuple[str, str]] = []

        async def after_send(self, item, provider_message_id):
            stored = await self.store.get_outbound(item.id)
            assert stored is not None
            assert stored.status is DeliveryStatus.SENT
            self.reported.append((item.message.recipient_id, provider_message_id))

    sender = Sender(store, {("whatsapp", "acc1"): Provider()}, clock, worker_id="s")
    assert await sender.run_once()
    assert sorted(sender.reported) == [(A, f"prov.{A}"), (B, f"prov.{B}")]


async def test_mark_sent_many_keeps_only_what_is_still_claimed(store, clock):
    await store.accept([inbound(1, A), inbound(1, B)])

    async def handler(event, tx):
        return [reply_to(event.payload, "ok")]

    proc = InboxProcessor(store, handler, clock, worker_id="w1", batch_size=8)
    assert await proc.run_once()
    items = await store.claim_outbound("s1", limit=10, lease_seconds=30)
    assert len(items) == 2
    assert await store.mark_sent_many("s1", []) == set()
    kept = await store.mark_sent_many("someone-else", [(items[0].id, "x")])
    assert kept == set()
    kept = await store.mark_sent_many("s1", [(i.id, f"p{i.id}") for i in items])
    assert kept == {i.id for i in items}
    again = await store.mark_sent_many("s1", [(items[0].id, "late")])
    assert again == set()
    assert (await store.get_outbound(items[0].id)).provider_message_id == f"p{items[0].id}"


async def test_workers_wake_at_once_when_this_process_writes_work(store, clock):
    sent: list[str] = []

    class Provider:
        async def send(self, message, *, last_inbound_at):
            sent.append(message.recipient_id)
            return "p"

    async def handler(event, tx):
        return [reply_to(event.payload, "ok")]

    # Idle for a minute between polls: only the signals can make them this fast.
    proc = InboxProcessor(store, handler, clock, worker_id="w1", idle_seconds=60, batch_size=4)
    sender = OutboxSender(
        store, {("whatsapp", "acc1"): Provider()}, clock, worker_id="s", idle_seconds=60
    )
    tasks = [asyncio.create_task(proc.run_forever()), asyncio.create_task(sender.run_forever())]
    try:
        await asyncio.sleep(0.2)  # both have found nothing and sleep
        assert not store.inbox_signal.is_set()
        await store.accept([inbound(1, A)])
        for _ in range(100):
            if sent:
                break
            await asyncio.sleep(0.05)
        assert sent == [A]
    finally:
        proc.stop()
        sender.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)


async def test_a_commit_without_outbox_writes_does_not_wake_the_senders(store):
    async with store.transaction() as tx:
        await tx.contacts.identify("whatsapp", "acc1", A)
    assert not store.outbox_signal.is_set()
    async with store.transaction() as tx:
        await tx.enqueue(
            [
                OutboundMessage(
                    channel="whatsapp", account="acc1", recipient_id=A, content=Text(body="x")
                )
            ],
            key_prefix="manual",
        )
    assert store.outbox_signal.is_set()


async def test_conversation_messages_with_equal_times_keep_insertion_order(store, clock):
    same = [
        inbound(1, A).model_copy(update={"provider_message_id": f"wamid.same.{i}"})
        for i in range(4)
    ]
    await store.accept(same)

    async def handler(event, tx):
        conv = await tx.conversations.latest_for("whatsapp", "acc1", 1)
        if conv is None:
            contact = await tx.contacts.identify("whatsapp", "acc1", A)
            conv = await tx.conversations.create(
                channel="whatsapp", account="acc1", contact_id=contact.id, recipient_id=A,
                state="bot",
            )  # fmt: skip
        return Reply([], conversation_id=conv.id)

    proc = InboxProcessor(store, handler, clock, worker_id="w1")
    while await proc.run_once():
        pass
    async with store.transaction() as tx:
        for n in range(3):
            await tx.enqueue(
                [OutboundMessage(channel="whatsapp", account="acc1", recipient_id=A,
                                 content=Text(body=f"out {n}"))],
                key_prefix=f"op:{n}", conversation_id=1,
            )  # fmt: skip
        records = await tx.conversation_messages(1)
    assert [r.provider_message_id for r in records if r.direction == "in"] == [
        f"wamid.same.{i}" for i in range(4)
    ]
    outs = [r for r in records if r.direction == "out"]
    assert [r.content_json for r in outs] == [
        Text(body=f"out {n}").model_dump_json() for n in range(3)
    ]
    assert all(r.at == clock.now() for r in outs)
    assert all(r.at == same[0].timestamp for r in records if r.direction == "in")


async def test_get_media_finds_recorded_media_only(store):
    msg = inbound(1, A).model_copy(
        update={"content": Media(media_kind=MediaKind.IMAGE, media_id="m1", mime_type="image/jpeg")}
    )
    await store.accept([msg])

    async def handler(event, tx):
        return []

    proc = InboxProcessor(store, handler, worker_id="w1")
    assert await proc.run_once()
    event = await store.get_event(1)
    assert event is not None
    assert event.kind is EventKind.MESSAGE
    async with store.transaction() as tx:
        found = await tx.media.get_media("whatsapp", "acc1", "m1")
        assert await tx.media.get_media("whatsapp", "acc1", "nope") is None
        assert await tx.media.get_media("whatsapp", "other", "m1") is None
    assert found is not None
    assert (found.media_id, found.state, found.event_id) == ("m1", MediaState.PENDING, 1)
    assert found.mime_type == "image/jpeg"


async def test_a_cancelled_batch_hands_every_claimed_event_back(store, clock):
    await store.accept([inbound(1, A), inbound(1, B), inbound(1, C)])
    started = asyncio.Event()

    async def slow(event, tx):
        if event.payload.sender.id == B:
            started.set()
            await asyncio.sleep(3600)
        return [reply_to(event.payload, "ok")]

    proc = InboxProcessor(store, slow, clock, worker_id="w1", lease_seconds=600, batch_size=8)
    task = asyncio.create_task(proc.run_forever())
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    again = await store.claim_events("w2", limit=8, lease_seconds=30)  # no need to wait 600 s
    assert sorted(e.payload.sender.id for e in again) == [A, B, C]
    assert all(e.attempts == 1 for e in again)  # the interrupted attempt does not count
    assert [await store.outbound_for_event(e.id) for e in again] == [[], [], []]


async def test_a_read_transaction_does_not_queue_behind_a_writer(store):
    await store.accept([inbound(1, A)])
    writing = asyncio.Event()
    release = asyncio.Event()

    async def writer():
        async with store.transaction() as tx:
            await tx.contacts.identify("whatsapp", "acc1", B)
            writing.set()
            await release.wait()

    task = asyncio.create_task(writer())
    try:
        await asyncio.wait_for(writing.wait(), 10)
        async with asyncio.timeout(5), store.read_transaction() as tx:
            assert await tx.contacts.get(1) is None  # the writer's contact is not visible yet
            assert await tx.conversations.list("acc1") == []
    finally:
        release.set()
        await task
    async with store.read_transaction() as tx:
        assert await tx.contacts.get(1) is not None


async def test_a_read_transaction_refuses_writes(store):
    with pytest.raises(DBAPIError):
        async with store.read_transaction() as tx:
            await tx.contacts.identify("whatsapp", "acc1", A)
    # The connection goes back to the pool writable.
    async with store.transaction() as tx:
        await tx.contacts.identify("whatsapp", "acc1", A)
    async with store.read_transaction() as tx:
        assert await tx.contacts.get(1) is not None


async def test_work_written_by_another_process_wakes_the_workers(store, target):
    other = SqlStore(create_engine(target.url, schema=target.schema), clock=store.clock)
    ready = asyncio.Event()
    task = asyncio.create_task(other.listen_for_work(ready))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        if not store.is_postgres:
            await asyncio.wait_for(task, 5)  # one process on SQLite: nothing to listen to
            assert not other.inbox_signal.is_set()
            return
        await store.accept([inbound(1, A)])
        await asyncio.wait_for(other.inbox_signal.wait(), 5)
        assert not other.outbox_signal.is_set()
        async with store.transaction() as tx:
            await tx.contacts.identify("whatsapp", "acc1", B)
        await asyncio.sleep(0.2)
        assert not other.outbox_signal.is_set()  # a commit without outbox writes says nothing
        async with store.transaction() as tx:
            await tx.enqueue([reply_to(inbound(1, A), "x")], key_prefix="other")
        await asyncio.wait_for(other.outbox_signal.wait(), 5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await other.close()


@pytest.mark.postgres
@pytest.mark.parametrize("target", ["postgres"], indirect=True)
async def test_a_process_ignores_its_own_work_notices(store):
    """The writer woke its own workers already; the echo of its NOTIFY would wake a second one
    that finds nothing."""
    ready = asyncio.Event()
    task = asyncio.create_task(store.listen_for_work(ready))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        # A worker waits on each signal: the writer's own set() wakes it; an echo would then be
        # remembered for the next worker to look (and find nothing).
        inbox_worker = asyncio.create_task(store.inbox_signal.wait())
        outbox_worker = asyncio.create_task(store.outbox_signal.wait())
        await asyncio.sleep(0)
        await store.accept([inbound(1, A)])
        async with store.transaction() as tx:
            await tx.enqueue([reply_to(inbound(1, A), "x")], key_prefix="own")
        assert await asyncio.wait_for(inbox_worker, 1)
        assert await asyncio.wait_for(outbox_worker, 1)
        await asyncio.sleep(0.3)  # the notices come back
        assert not store.inbox_signal.is_set()
        assert not store.outbox_signal.is_set()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_one_worker_of_a_pool_polls_the_others_sleep_until_woken(store, clock):
    looks: dict[str, int] = {"poller": 0, "sleeper": 0}

    class Counting(InboxProcessor):
        def __init__(self, name: str, **kwargs: object) -> None:
            super().__init__(store, _noop, clock, idle_seconds=0.01, **kwargs)
            self.name = name

        async def run_once(self) -> bool:
            looks[self.name] += 1
            return await super().run_once()

    poller, sleeper = Counting("poller"), Counting("sleeper", poll=False)
    tasks = [asyncio.create_task(w.run_forever()) for w in (poller, sleeper)]
    try:
        await asyncio.sleep(0.3)
        assert looks["poller"] >= 5  # every idle_seconds
        assert looks["sleeper"] == 1  # its first look, then nothing announced work
        before = looks["sleeper"] + looks["poller"]
        store.inbox_signal.set()  # work written: exactly one idle worker looks at once
        await asyncio.sleep(0.005)
        assert looks["sleeper"] + looks["poller"] >= before + 1
    finally:
        for w in (poller, sleeper):
            w.stop()
        await asyncio.gather(*tasks)


async def _noop(event, tx):  # pragma: no cover - no events in this test
    return []


async def test_a_worker_with_a_pacer_starts_each_round_only_on_its_turn(store, clock):
    await store.accept([inbound(1, A), inbound(1, B)])
    handled: list[str] = []

    async def handler(event, tx):
        handled.append(event.payload.provider_message_id)
        return []

    class Turns:
        def __init__(self) -> None:
            self.allowed = asyncio.Semaphore(0)
            self.asked = 0

        async def turn(self) -> None:
            self.asked += 1
            await self.allowed.acquire()

    turns = Turns()
    proc = InboxProcessor(store, handler, clock, batch_size=1, idle_seconds=0.01, pacer=turns)
    task = asyncio.create_task(proc.run_forever())
    await asyncio.sleep(0.1)
    assert (turns.asked, handled) == (1, [])  # waiting for its first turn: nothing claimed
    turns.allowed.release()
    for _ in range(200):
        await asyncio.sleep(0.01)
        if turns.asked == 2:
            break
    assert handled == [f"wamid.{A}.1"]
    assert turns.asked == 2  # one round, then it asks again
    proc.stop()
    turns.allowed.release()
    await asyncio.wait_for(task, 2)
    assert handled == [f"wamid.{A}.1"]  # stopped while waiting: no round after stop()
