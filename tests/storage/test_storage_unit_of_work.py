"""The inbox batch's unit of work: a bounded number of statements per batch on PostgreSQL,
and every read of the transaction still sees its own earlier writes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, func, select, text, update
from storage_helpers import T0, conversation_of, inbound

from civicchat.bot import Bot, BotAccount, RecordingResponder, load_account_texts
from civicchat.channels.base import Capabilities
from civicchat.channels.fake import FakeChannel
from civicchat.clock import ManualClock
from civicchat.exceptions import StorageError
from civicchat.keywords import KeywordEngine, load_catalog
from civicchat.messages import InboundMessage, Sender, Text
from civicchat.routing import Pipeline, load_office_hours
from civicchat.storage.base import EventKind, EventState, InboxEvent, LifecycleEntry
from civicchat.storage.schema import ContactRow, ConversationRow, IdentityRow
from civicchat.storage.sql import SqlStore
from civicchat.storage.workers import InboxProcessor

MATARO = Path(__file__).resolve().parents[2] / "examples" / "mataro"


def _bot(clock: ManualClock, *, buttons: bool = True) -> Bot:
    engine = KeywordEngine(load_catalog(MATARO / "catalog.yaml"), clock=clock)
    texts = load_account_texts(MATARO / "templates.yaml")
    pipeline = Pipeline(
        account="acc1",
        office_hours=load_office_hours(MATARO / "hours.yaml"),
        responder=RecordingResponder(engine),
        texts=texts.routing,
    )
    channel = (
        FakeChannel("whatsapp", account="acc1")
        if buttons
        else FakeChannel("whatsapp", account="acc1", capabilities=Capabilities(buttons=False))
    )
    return Bot(
        {"acc1": BotAccount("acc1", "whatsapp", channel, engine, pipeline, texts)}, clock=clock
    )


@contextmanager
def counted(store: SqlStore) -> Iterator[list[str]]:
    """The SQL statements run on ``store`` meanwhile."""
    seen: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        seen.append(statement)

    event.listen(store.engine.sync_engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", before)


def _message(n: int, sender: str, body: str) -> InboundMessage:
    return InboundMessage(
        channel="whatsapp",
        account="acc1",
        provider_message_id=f"wamid.{sender}.{n}",
        sender=Sender(id=sender, name="Maria"),
        timestamp=T0 + timedelta(seconds=n),
        content=Text(body=body),
    )


def _event(n: int, message: InboundMessage) -> InboxEvent:
    """An event as the handler gets it (for handlers run outside a worker)."""
    return InboxEvent(
        id=n,
        kind=EventKind.MESSAGE,
        channel=message.channel,
        account=message.account,
        key=message.provider_message_id,
        conversation_key=f"{message.channel}:{message.account}:{message.sender.id}",
        payload=message,
        state=EventState.PROCESSING,
        attempts=1,
        received_at=T0,
        next_attempt_at=T0,
    )


async def _batch_statements(store: SqlStore, clock: ManualClock, n: int, round_: int) -> int:
    """Statements of one worker round handling ``n`` messages from ``n`` known senders."""
    senders = [f"346000{i:05d}" for i in range(n)]
    await store.accept(
        [_message(round_ * 1000 + i, s, "horari bus") for i, s in enumerate(senders)]
    )
    processor = InboxProcessor(store, _bot(clock).handle, clock, worker_id="w1", batch_size=n)
    with counted(store) as seen:
        assert await processor.run_once()
    return len(seen)


async def test_a_batch_of_known_senders_costs_statements_independent_of_its_size(
    store: SqlStore, clock: ManualClock, target
):
    # The senders' first messages create them; the second round is what is measured.
    await _batch_statements(store, clock, 20, 0)
    twenty = await _batch_statements(store, clock, 20, 1)
    five = await _batch_statements(store, clock, 5, 2)
    async with store.transaction() as tx:
        for i in range(20):
            contact = await tx.contacts.identify("whatsapp", "acc1", f"346000{i:05d}")
            conv = await tx.conversations.latest_for("whatsapp", "acc1", contact.id)
            assert conv is not None
            assert conv.last_inbound_at == T0 + timedelta(seconds=(2000 + i if i < 5 else 1000 + i))
        conversations = await tx.connection.scalar(
            select(func.count()).select_from(ConversationRow)
        )
        replied = await tx.connection.scalar(
            text("SELECT count(DISTINCT inbound_event_id) FROM outbox")
        )
    assert conversations == 20
    assert replied == 45  # every message answered
    if target.backend == "postgres":
        # Claim, prefetch, one save for all, keyword counts, outbox, completions, notify.
        assert twenty == five
        assert twenty <= 12
    else:
        # SQLite reads each sender's contact and conversation and completes each event alone;
        # the saves are one executemany (before: one UPDATE per message, 4 statements each).
        assert twenty - five == 3 * 15


async def test_new_senders_in_a_batch_are_created_once_each(
    store: SqlStore, clock: ManualClock, target
):
    with counted(store) as seen:
        await _batch_statements(store, clock, 10, 0)
    async with store.transaction() as tx:
        contacts = await tx.connection.scalar(select(func.count()).select_from(ContactRow))
        identities = await tx.connection.scalar(select(func.count()).select_from(IdentityRow))
        convs = await tx.connection.scalar(select(func.count()).select_from(ConversationRow))
    assert (contacts, identities, convs) == (10, 10, 10)
    if target.backend == "postgres":
        # The batch's new contacts, identities and conversations: one statement, whatever their
        # number (their ids drawn by the batch's read), and no UPDATE of them.
        inserts = [s for s in seen if "INSERT INTO contacts" in s]
        assert len(inserts) == 1
        assert "INSERT INTO identities" in inserts[0]
        assert "INSERT INTO conversations" in inserts[0]
        assert not [s for s in seen if "INSERT INTO conversations" in s and s not in inserts]
        assert not [s for s in seen if s.startswith("UPDATE conversations")]


async def test_a_new_conversation_is_written_before_sql_that_needs_it(
    store: SqlStore, clock: ManualClock
):
    sender = ("whatsapp", "acc1", "34688888881")
    async with store.transaction() as tx, tx.unit_of_work([sender]):
        contact = await tx.contacts.identify(*sender)
        conv = await tx.conversations.create(
            channel="whatsapp",
            account="acc1",
            contact_id=contact.id,
            recipient_id=sender[2],
            state="bot",
        )
        queued = dataclasses.replace(conv, state="queued", queued_at=T0, data={"topic": "x"})
        await tx.conversations.save(queued)
        # Its history row refers to it (a foreign key): it is written first.
        await tx.history.record(LifecycleEntry(conv.id, T0, "bot", "bot", "queued"))
        listed = await tx.conversations.list("acc1")
        assert [(c.id, c.state, c.data) for c in listed] == [(conv.id, "queued", {"topic": "x"})]
        assert await tx.conversations.queue_position(queued) == 1
    async with store.transaction() as tx:
        stored = await tx.conversations.get(conv.id)
        assert stored is not None
        assert (stored.state, stored.queued_at, stored.contact_id) == ("queued", T0, contact.id)
        assert [e.to_state for e in await tx.history.entries(conv.id)] == ["queued"]
        assert (await tx.contacts.identify(*sender)).id == contact.id


async def test_a_new_sender_without_a_conversation_is_written_when_something_may_need_it(
    store: SqlStore, clock: ManualClock
):
    senders = [("whatsapp", "acc1", "34677777771"), ("whatsapp", "acc1", "34677777772")]
    async with store.transaction() as tx, tx.unit_of_work(senders):
        first = await tx.contacts.identify(*senders[0])
        named = await tx.contacts.identify(*senders[0], name="Maria")  # fills the empty name
        assert named.id == first.id
        assert await tx.conversations.latest_for("whatsapp", "acc1", first.id) is None
        # Other SQL on the transaction sees the contact and its name.
        found = await tx.contacts.get(first.id)
        assert found is not None
        assert found.name == "Maria"
        second = await tx.contacts.identify(*senders[1])
    async with store.transaction() as tx:
        again = await tx.contacts.identify(*senders[1])
        assert again.id == second.id
        assert [i.external_id for i in await tx.contacts.identities(first.id)] == ["34677777771"]
        assert await tx.connection.scalar(select(func.count()).select_from(ContactRow)) == 2


async def test_the_same_sender_twice_in_one_transaction_sees_its_first_message(
    store: SqlStore, clock: ManualClock
):
    """A menu shown as numbered options by the first message is what the second one's "1"
    picks; one contact and one conversation; the first-contact notice only once."""
    bot = _bot(clock, buttons=False)
    first, second = _message(1, "34611111111", "tràmits"), _message(2, "34611111111", "1")
    async with (
        store.transaction() as tx,
        tx.unit_of_work([("whatsapp", "acc1", "34611111111")] * 2),
    ):
        one = await bot.handle(_event(1, first), tx)
        two = await bot.handle(_event(2, second), tx)
    bodies_one = [getattr(m.content, "body", "") for m in one.messages]
    bodies_two = [getattr(m.content, "body", "") for m in two.messages]
    assert any("1. Cita prèvia" in b for b in bodies_one)
    assert any("cita-previa" in b for b in bodies_two)
    assert len(one.messages) > len(two.messages)  # the privacy notice went with the first only
    assert one.conversation_id == two.conversation_id
    async with store.transaction() as tx:
        assert await tx.connection.scalar(select(func.count()).select_from(ContactRow)) == 1
        conv = await tx.conversations.get(one.conversation_id)
    assert conv is not None
    assert conv.last_inbound_at == second.timestamp


async def _queued(store: SqlStore, clock: ManualClock, sender: str, at_seconds: int) -> int:
    async with store.transaction() as tx:
        contact = await tx.contacts.identify("whatsapp", "acc1", sender)
        conv = await tx.conversations.create(
            channel="whatsapp",
            account="acc1",
            contact_id=contact.id,
            recipient_id=sender,
            state="queued",
        )
        await tx.conversations.save(
            dataclasses.replace(conv, queued_at=T0 + timedelta(seconds=at_seconds))
        )
        return conv.id


async def test_queue_position_and_other_sql_see_the_pending_saves(
    store: SqlStore, clock: ManualClock
):
    a_id = await _queued(store, clock, "34622222221", 1)
    b_id = await _queued(store, clock, "34622222222", 2)
    async with store.transaction() as tx, tx.unit_of_work([("whatsapp", "acc1", "34622222221")]):
        contact = await tx.contacts.identify("whatsapp", "acc1", "34622222221")
        a = await tx.conversations.latest_for("whatsapp", "acc1", contact.id)
        assert a is not None
        assert a.id == a_id
        await tx.conversations.save(dataclasses.replace(a, state="bot", queued_at=None))
        b = await tx.conversations.get(b_id)
        assert b is not None
        # A left the queue earlier in this transaction: B is first now.
        assert await tx.conversations.queue_position(b) == 1
        # SQL of other modules on the same connection sees it too.
        state = await tx.connection.scalar(
            text("SELECT state FROM conversations WHERE id = :i"), {"i": a_id}
        )
        assert state == "bot"
        # And a later read is served the saved version.
        again = await tx.conversations.latest_for("whatsapp", "acc1", contact.id)
        assert again is not None
        assert again.state == "bot"
        assert again.queued_at is None


async def test_driver_sql_inside_the_unit_of_work_is_refused(store: SqlStore, clock: ManualClock):
    """``exec_driver_sql`` bypasses the autoflush: it would read a saved conversation's old state
    (and a write through it would be undone by the batch's save). Refused, clearly; after the
    unit of work it runs again."""
    a_id = await _queued(store, clock, "34622222231", 1)
    async with store.transaction() as tx:
        async with tx.unit_of_work([("whatsapp", "acc1", "34622222231")]):
            contact = await tx.contacts.identify("whatsapp", "acc1", "34622222231")
            a = await tx.conversations.latest_for("whatsapp", "acc1", contact.id)
            assert a is not None
            await tx.conversations.save(dataclasses.replace(a, state="bot", queued_at=None))
            with pytest.raises(StorageError, match="exec_driver_sql"):
                await tx.connection.exec_driver_sql(
                    f"SELECT state FROM conversations WHERE id = {a_id}"
                )
        result = await tx.connection.exec_driver_sql(
            f"SELECT state FROM conversations WHERE id = {a_id}"
        )
        assert result.scalar() == "bot"


async def test_a_write_by_other_sql_is_not_hidden_by_the_map(store: SqlStore, clock: ManualClock):
    a_id = await _queued(store, clock, "34633333331", 1)
    async with store.transaction() as tx, tx.unit_of_work([("whatsapp", "acc1", "34633333331")]):
        contact = await tx.contacts.identify("whatsapp", "acc1", "34633333331")
        a = await tx.conversations.latest_for("whatsapp", "acc1", contact.id)
        assert a is not None
        await tx.conversations.save(dataclasses.replace(a, data={"n": 1}))
        await tx.connection.execute(
            update(ConversationRow).where(ConversationRow.id == a_id).values(team="urban")
        )
        seen = await tx.conversations.get(a_id)
        assert seen is not None
        assert seen.team == "urban"
        assert seen.data == {"n": 1}
        # A conversation opened by other SQL is the latest one from then on.
        await tx.connection.execute(
            text(
                "INSERT INTO conversations (account, channel, contact_id, recipient_id, state,"
                " created_at, priority, data) VALUES ('acc1', 'whatsapp', :c, 'x', 'bot', :t, 0, '{}')"
            ),
            {"c": contact.id, "t": T0.replace(tzinfo=None) if False else T0},
        )
        newest = await tx.conversations.latest_for("whatsapp", "acc1", contact.id)
        assert newest is not None
        assert newest.id != a_id


async def test_a_rolled_back_batch_leaves_no_saves_and_no_map(store: SqlStore, clock: ManualClock):
    """A batch where one event fails is rolled back and each event handled alone: a count kept
    in the conversation grows once per message, never twice."""
    failed_once: set[str] = set()

    async def handler(event, tx):  # type: ignore[no-untyped-def]
        msg = event.payload
        conv = await conversation_of(tx, msg)
        await tx.conversations.save(
            dataclasses.replace(conv, data={"n": conv.data.get("n", 0) + 1})
        )
        if msg.sender.id == "34644444442" and msg.sender.id not in failed_once:
            failed_once.add(msg.sender.id)
            raise RuntimeError("boom")
        return []

    await store.accept([inbound(1, "34644444441"), inbound(2, "34644444442")])
    processor = InboxProcessor(store, handler, clock, worker_id="w1", batch_size=8)
    assert await processor.run_once()  # the batch fails, then each one alone succeeds
    assert len(failed_once) == 1
    async with store.transaction() as tx:
        counts = {}
        for sender in ("34644444441", "34644444442"):
            contact = await tx.contacts.identify("whatsapp", "acc1", sender)
            conv = await tx.conversations.latest_for("whatsapp", "acc1", contact.id)
            assert conv is not None
            counts[sender] = conv.data["n"]
        assert await tx.connection.scalar(select(func.count()).select_from(ContactRow)) == 2
    assert counts == {"34644444441": 1, "34644444442": 1}


async def _save_then_fail(tx, a_id: int) -> None:  # type: ignore[no-untyped-def]
    async with tx.unit_of_work([("whatsapp", "acc1", "34655555551")]):
        a = await tx.conversations.get(a_id)
        assert a is not None
        await tx.conversations.save(dataclasses.replace(a, state="closed"))
        raise RuntimeError("boom")


async def test_an_error_in_the_unit_of_work_drops_what_it_kept(store: SqlStore, clock: ManualClock):
    a_id = await _queued(store, clock, "34655555551", 1)
    async with store.transaction() as tx:
        with pytest.raises(RuntimeError, match="boom"):
            await _save_then_fail(tx, a_id)
        # Nothing of it is kept: neither the save nor the map's copy.
        again = await tx.conversations.get(a_id)
        assert again is not None
        assert again.state == "queued"
        async with tx.unit_of_work([("whatsapp", "acc1", "34655555551")]):
            contact = await tx.contacts.identify("whatsapp", "acc1", "34655555551")
            latest = await tx.conversations.latest_for("whatsapp", "acc1", contact.id)
            assert latest is not None
            assert latest.state == "queued"


async def test_a_new_senders_conversation_on_another_account_is_created_with_its_contact(
    store: SqlStore, clock: ManualClock
):
    sender = ("whatsapp", "acc1", "34699999991")
    async with store.transaction() as tx, tx.unit_of_work([sender]):
        contact = await tx.contacts.identify(*sender)
        # No id was drawn for acc2: contact, identity and conversation are written now.
        conv = await tx.conversations.create(
            channel="whatsapp", account="acc2", contact_id=contact.id, recipient_id="x", state="bot"
        )
        assert await tx.conversations.latest_for("whatsapp", "acc2", contact.id) == conv
        assert await tx.conversations.latest_for("whatsapp", "acc1", contact.id) is None
    async with store.transaction() as tx:
        assert (await tx.contacts.identify(*sender)).id == contact.id
        stored = await tx.conversations.latest_for("whatsapp", "acc2", contact.id)
        assert stored is not None
        assert stored.id == conv.id


@pytest.mark.postgres
@pytest.mark.parametrize("target", ["postgres"], indirect=True)
async def test_a_mapped_conversation_is_locked_until_the_batch_commits(
    store: SqlStore, clock: ManualClock
):
    """A conversation the batch may save at its end (read by get or latest_for, not only the
    prefetched ones) is locked from its read: a console change waits for the batch instead of
    being overwritten by it."""
    b_id = await _queued(store, clock, "34622222241", 1)
    c_id = await _queued(store, clock, "34622222242", 2)
    async with store.transaction() as tx, tx.unit_of_work([]):
        assert await tx.conversations.get(b_id) is not None
        contact = await tx.contacts.identify("whatsapp", "acc1", "34622222242")
        assert (await tx.conversations.latest_for("whatsapp", "acc1", contact.id)) is not None
        for conv_id in (b_id, c_id):
            async with store.engine.connect() as other:
                await other.execute(text("SET lock_timeout = '200ms'"))
                with pytest.raises(Exception, match="lock"):
                    await other.execute(
                        text("UPDATE conversations SET team = 'x' WHERE id = :i"), {"i": conv_id}
                    )
                await other.rollback()
    async with store.engine.begin() as other:  # committed: free again
        await other.execute(text("UPDATE conversations SET team = 'x' WHERE id = :i"), {"i": b_id})
