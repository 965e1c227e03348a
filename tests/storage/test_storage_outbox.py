"""Contract tests of the outbox and its sender, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update
from storage_helpers import inbound, reply_to, status

from civicchat.exceptions import ThrottledError, TransientError, UndeliverableError
from civicchat.messages import DeliveryStatus, ProviderError, StatusUpdate
from civicchat.storage.base import EventState
from civicchat.storage.schema import OutboxRow
from civicchat.storage.sql import merge_status
from civicchat.storage.workers import InboxProcessor, OutboxSender, backoff


class Channel:
    """A provider that fails as told, then accepts."""

    def __init__(self, failures=()):
        self.failures = list(failures)
        self.sent = []
        self.windows = []

    async def send(self, message, *, last_inbound_at):
        self.windows.append(last_inbound_at)
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(message.content.body)
        return f"prov.{len(self.sent)}"


class Limiter:
    def __init__(self):
        self.recipients = []
        self.paused = []

    async def acquire(self, recipient):
        self.recipients.append(recipient)

    def pause(self, seconds):
        self.paused.append(seconds)


async def queue(store, *bodies, sender="34600000001", n=1):
    msg = inbound(n, sender)
    await store.accept([msg])

    async def handler(event, tx):
        return [reply_to(event.payload, b) for b in bodies]

    processor = InboxProcessor(store, handler, store.clock, worker_id="p")
    assert await processor.run_once()
    return msg


async def test_sender_sends_in_order_and_records_provider_ids(store, clock):
    await queue(store, "un", "dos", "tres")
    channel, limiter = Channel(), Limiter()
    sender = OutboxSender(
        store, {("whatsapp", "acc1"): channel}, clock, limiters={("whatsapp", "acc1"): limiter}
    )
    while await sender.run_once():
        pass
    assert channel.sent == ["un", "dos", "tres"]
    assert limiter.recipients == ["34600000001"] * 3
    assert channel.windows == [inbound(1).timestamp] * 3  # the citizen's message, for the window
    items = await store.outbound_for_event(1)
    assert [i.status for i in items] == [DeliveryStatus.SENT] * 3
    assert [i.provider_message_id for i in items] == ["prov.1", "prov.2", "prov.3"]
    assert all(i.sent_at == clock.now() for i in items)


async def test_one_message_per_recipient_at_a_time_but_recipients_in_parallel(store):
    await queue(store, "a1", "a2", sender="A")
    await queue(store, "b1", sender="B")
    first = await store.claim_outbound("s1", limit=10, lease_seconds=30)
    assert sorted(i.message.content.body for i in first) == ["a1", "b1"]
    assert await store.claim_outbound("s2", limit=10, lease_seconds=30) == []


async def test_transient_failure_is_retried_with_backoff_honouring_retry_after(store, clock):
    await queue(store, "hola", "adéu")
    channel, limiter = (
        Channel([ThrottledError("slow down", retry_after=30), TransientError("502")]),
        Limiter(),
    )
    sender = OutboxSender(
        store,
        {("whatsapp", "acc1"): channel},
        clock,
        limiters={("whatsapp", "acc1"): limiter},
        backoff_base=4,
        rng=random.Random(1),
    )
    assert await sender.run_once()
    assert limiter.paused == [30]
    item = (await store.outbound_for_event(1))[0]
    assert item.status is DeliveryStatus.QUEUED
    assert item.next_attempt_at == clock.now() + timedelta(seconds=30)
    assert item.last_error == "ThrottledError: slow down"
    assert not await sender.run_once()  # not due yet, and "adéu" waits behind it
    clock.advance(timedelta(seconds=30))
    assert await sender.run_once()  # TransientError: backoff with jitter, 2..4 s for attempt 2
    item = (await store.outbound_for_event(1))[0]
    delay = (item.next_attempt_at - clock.now()).total_seconds()
    assert 4.0 <= delay <= 8.0
    clock.advance(timedelta(seconds=8))
    while await sender.run_once():
        pass
    assert channel.sent == ["hola", "adéu"]


async def test_permanent_failure_is_recorded_and_does_not_block_the_next(store, clock):
    await queue(store, "one", "two")
    channel = Channel([UndeliverableError("131026 not on WhatsApp")])
    sender = OutboxSender(store, {("whatsapp", "acc1"): channel}, clock)
    while await sender.run_once():
        pass
    first, second = await store.outbound_for_event(1)
    assert first.status is DeliveryStatus.FAILED
    assert first.last_error == "UndeliverableError: 131026 not on WhatsApp"
    assert first.next_attempt_at is None
    assert second.status is DeliveryStatus.SENT
    assert channel.sent == ["two"]


async def test_retries_give_up_after_max_attempts(store, clock):
    await queue(store, "x")
    channel = Channel([TransientError("down")] * 10)
    sender = OutboxSender(store, {("whatsapp", "acc1"): channel}, clock, max_attempts=3)
    for _ in range(5):
        await sender.run_once()
        clock.advance(timedelta(hours=1))
    (item,) = await store.outbound_for_event(1)
    assert item.status is DeliveryStatus.FAILED
    assert item.attempts == 3


async def test_missing_channel_is_a_permanent_failure(store, clock):
    await queue(store, "x")
    sender = OutboxSender(store, {}, clock)
    assert await sender.run_once()
    (item,) = await store.outbound_for_event(1)
    assert item.status is DeliveryStatus.FAILED
    assert "no channel configured for whatsapp/acc1" in (item.last_error or "")


async def test_expired_send_claim_is_taken_over(store, clock):
    await queue(store, "x")
    (item,) = await store.claim_outbound("crashed", limit=5, lease_seconds=10)
    assert await store.claim_outbound("s2", limit=5, lease_seconds=10) == []
    clock.advance(timedelta(seconds=11))
    (again,) = await store.claim_outbound("s2", limit=5, lease_seconds=10)
    assert again.id == item.id
    assert again.attempts == 2
    assert not await store.mark_sent(item.id, "crashed", "late")
    assert await store.mark_sent(item.id, "s2", "prov.9")


async def test_statuses_out_of_order_keep_the_highest_and_failed_wins(store, clock):
    await queue(store, "x")
    sender = OutboxSender(store, {("whatsapp", "acc1"): Channel()}, clock)
    await sender.run_once()
    assert await store.apply_status(status("prov.1", DeliveryStatus.READ))
    assert await store.apply_status(status("prov.1", DeliveryStatus.DELIVERED))
    assert await store.apply_status(status("prov.1", DeliveryStatus.SENT))
    (item,) = await store.outbound_for_event(1)
    assert item.status is DeliveryStatus.READ
    failed = StatusUpdate(
        **{
            **status("prov.1", DeliveryStatus.FAILED).model_dump(),
            "errors": (ProviderError(code=131047, title="Re-engagement message"),),
        }
    )
    assert await store.apply_status(failed)
    (item,) = await store.outbound_for_event(1)
    assert item.status is DeliveryStatus.FAILED
    assert item.last_error == "131047 Re-engagement message"
    assert not await store.apply_status(status("prov.unknown", DeliveryStatus.READ))


async def test_status_webhook_that_beats_the_send_result_is_applied_later(store, clock):
    await queue(store, "x")
    await store.accept([status("prov.1", DeliveryStatus.DELIVERED)])
    processor = InboxProcessor(store, None, clock, worker_id="p")
    assert await processor.run_once()  # unknown id yet: retried
    assert (await store.state_counts())[EventState.FAILED] == 1
    sender = OutboxSender(store, {("whatsapp", "acc1"): Channel()}, clock)
    await sender.run_once()
    clock.advance(timedelta(seconds=5))
    assert await processor.run_once()
    (item,) = await store.outbound_for_event(1)
    assert item.status is DeliveryStatus.DELIVERED
    assert (await store.state_counts())[EventState.DONE] == 2


async def test_status_for_a_message_we_never_sent_is_eventually_dropped(store, clock):
    await store.accept([status("prov.other-system", DeliveryStatus.READ)])
    processor = InboxProcessor(store, None, clock, worker_id="p", status_attempts=2)
    for _ in range(3):
        await processor.run_once()
        clock.advance(timedelta(minutes=1))
    counts = await store.state_counts()
    assert counts[EventState.DONE] == 1
    assert counts[EventState.PARKED] == 0


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    rng = random.Random(3)
    for attempt in range(1, 12):
        full = min(60.0, 2.0 * 2 ** (attempt - 1))
        delay = backoff(attempt, base=2.0, cap=60.0, rng=rng)
        assert full / 2 <= delay <= full
    delays = {backoff(3, rng=rng) for _ in range(20)}
    assert len(delays) > 1


@given(st.lists(st.sampled_from(list(DeliveryStatus)), min_size=1, max_size=8))
@settings(max_examples=60, deadline=None)
def test_merging_statuses_does_not_depend_on_their_order(statuses):
    def merged(order):
        result = DeliveryStatus.QUEUED
        for s in order:
            result = merge_status(result, s)
        return result

    expected = max(statuses, key=lambda s: s.rank)
    assert merged(statuses) == expected
    assert merged(list(reversed(statuses))) == expected
    if DeliveryStatus.FAILED in statuses:
        assert expected is DeliveryStatus.FAILED


async def test_an_unreadable_outbound_message_fails_instead_of_blocking(store, clock):
    await queue(store, "x", sender="A")
    await queue(store, "y", sender="B")
    async with store.engine.begin() as conn:
        await conn.execute(
            update(OutboxRow).where(OutboxRow.recipient_id == "A").values(payload="{}")
        )
    items = await store.claim_outbound("s1", limit=10, lease_seconds=30)
    assert [i.message.content.body for i in items] == ["y"]
    async with store.engine.connect() as conn:
        status, error = (
            await conn.execute(
                select(OutboxRow.status, OutboxRow.last_error).where(OutboxRow.recipient_id == "A")
            )
        ).one()
    assert status == DeliveryStatus.FAILED
    assert error.startswith("unreadable")
