from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from civicchat.bot import Bot, BotAccount, RecordingResponder, load_account_texts
from civicchat.channels.base import Capabilities
from civicchat.channels.fake import FakeChannel
from civicchat.clock import ManualClock
from civicchat.keywords import KeywordEngine, load_catalog
from civicchat.messages import InboundMessage, Media, MediaKind, OutboundContent, Sender, Text
from civicchat.routing import Pipeline, load_office_hours
from civicchat.storage.engine import create_engine, upgrade
from civicchat.storage.sql import SqlStore
from civicchat.storage.workers import InboxProcessor

MATARO = Path(__file__).resolve().parents[2] / "examples" / "mataro"
NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # Monday 10:00 in Mataró


@pytest.fixture
async def store(tmp_path: Path):
    engine = create_engine(str(tmp_path / "bot.db"))
    await upgrade(engine)
    store = SqlStore(engine, clock=ManualClock(NOW))
    yield store
    await store.close()


def _bot(channel: FakeChannel, clock: ManualClock) -> Bot:
    engine = KeywordEngine(load_catalog(MATARO / "catalog.yaml"), clock=clock)
    texts = load_account_texts(MATARO / "templates.yaml")
    pipeline = Pipeline(
        account="plain",
        office_hours=load_office_hours(MATARO / "hours.yaml"),
        responder=RecordingResponder(engine),
        texts=texts.routing,
    )
    account = BotAccount(
        "plain", "fake", channel, engine, pipeline, texts, first_contact_notice=False
    )
    return Bot({"plain": account}, clock=clock)


async def _sent(
    store: SqlStore, processor: InboxProcessor, n: int, text: str
) -> list[OutboundContent]:
    await store.accept(
        [
            InboundMessage(
                channel="fake",
                account="plain",
                provider_message_id=f"m{n}",
                sender=Sender(id="citizen-1"),
                timestamp=NOW,
                content=Text(body=text),
            )
        ]
    )
    assert await processor.run_once()
    return [item.message.content for item in await store.outbound_for_event(n)]


async def _say(store: SqlStore, processor: InboxProcessor, n: int, text: str) -> list[str]:
    """The texts the citizen reads: a message's body, or a file's caption."""
    sent = await _sent(store, processor, n, text)
    return [getattr(c, "body", None) or getattr(c, "caption", None) or "" for c in sent]


async def test_a_numbered_answer_picks_the_option_of_a_menu_the_channel_showed_as_text(
    store: SqlStore,
):
    clock = ManualClock(NOW)
    plain = FakeChannel("fake", account="plain", capabilities=Capabilities(buttons=False))
    processor = InboxProcessor(store, _bot(plain, clock).handle, clock)
    first = await _say(store, processor, 1, "tràmits")
    assert any("1. Cita prèvia" in body for body in first)  # buttons shown as numbered options
    second = await _say(store, processor, 2, "1")
    assert any("cita-previa" in body for body in second)  # "1" is the first option, answered
    # That answer had its own menu ("On és l'OAC?"): "1" now picks that one.
    third = await _say(store, processor, 3, "1")
    assert "La Riera, 48" in third[0]
    # A text that is not an option goes on to the keyword engine as usual. The bus answer is
    # one message with the network map above its buttons; without buttons it stays one: the
    # map, with the answer and the numbered options as its caption.
    (fourth,) = await _sent(store, processor, 4, "horari bus")
    assert isinstance(fourth, Media)
    assert fourth.media_kind is MediaKind.DOCUMENT
    assert fourth.link is not None
    assert fourth.link.endswith("planol-xarxa-mataro-bus.pdf")
    assert fourth.caption is not None
    assert "Línies, horaris i parades de Mataró Bus" in fourth.caption
    assert "https://www.mataro.cat/ca/la-ciutat/mobilitat/transport-public/mataro-bus" in (
        fourth.caption
    )
    assert "1. Targetes i tarifes" in fourth.caption
    # Its options are numbered in the caption, so "1" picks the first one.
    fifth = await _say(store, processor, 5, "1")
    assert any("Títols, tarifes i targetes bonificades" in body for body in fifth)
    # A number that is no option is an ordinary message: no keyword, so a person gets it.
    sixth = await _say(store, processor, 6, "7")
    assert any("t'atendrà una persona" in body for body in sixth)


async def test_first_contact_notice_comes_once_before_the_first_answer(store: SqlStore):
    clock = ManualClock(NOW)
    channel = FakeChannel("fake", account="plain")
    bot = _bot(channel, clock)
    bot.accounts["plain"] = BotAccount(
        "plain",
        "fake",
        channel,
        bot.accounts["plain"].engine,
        bot.accounts["plain"].pipeline,
        bot.accounts["plain"].texts,
    )
    processor = InboxProcessor(store, bot.handle, clock)
    first = await _say(store, processor, 1, "horari bus")
    assert first[0].startswith("Hola! Ets al canal de missatgeria del 010")
    second = await _say(store, processor, 2, "horari bus")
    assert not any("canal de missatgeria" in body for body in second)


async def test_a_citizen_who_keeps_writing_while_queued_gets_one_reminder_then_another_later(
    store: SqlStore,
):
    clock = ManualClock(NOW)
    plain = FakeChannel("fake", account="plain")
    processor = InboxProcessor(store, _bot(plain, clock).handle, clock)
    first = await _say(store, processor, 1, "tinc un problema amb un gual")
    assert any("persona" in body for body in first)  # queued: the acknowledgement
    assert (
        await _say(store, processor, 2, "no sé què fer amb això") == []
    )  # covered by the acknowledgement
    # The third message since the acknowledgement, minutes later: the reminder (its pace is
    # kept with the conversation between messages).
    clock.advance(timedelta(minutes=3))
    third = await _say(store, processor, 3, "contesteu sisplau")
    assert third == [
        "Tenim els teus missatges. Una persona de l'oficina del 010 et respondrà tan aviat com "
        "pugui; ets el número 1 de la cua."  # nobody else waits: first in the queue
    ]
    assert await _say(store, processor, 4, "ja ho he explicat abans") == []  # never two in a row
    clock.advance(timedelta(minutes=11))  # ten minutes after the reminder: another one
    assert await _say(store, processor, 5, "continuo esperant la vostra resposta") == third


async def test_writing_again_out_of_hours_gets_a_short_note_not_silence(tmp_path: Path):
    saturday = datetime(2026, 11, 28, 11, 0, tzinfo=UTC)  # the office is closed
    engine = create_engine(str(tmp_path / "ooh.db"))
    await upgrade(engine)
    clock = ManualClock(saturday)
    store = SqlStore(engine, clock=clock)
    try:
        plain = FakeChannel("fake", account="plain")
        processor = InboxProcessor(store, _bot(plain, clock).handle, clock)
        first = await _say(store, processor, 1, "tinc un problema amb un gual")
        assert any("dilluns" in body for body in first)  # the out-of-hours reply: Monday
        second = await _say(store, processor, 2, "no sé què fer amb això")
        assert len(second) == 1  # a short note
        assert "dilluns" in second[0]
        assert second != first
        assert await _say(store, processor, 3, "ja ho he explicat abans") == []  # paced
    finally:
        await store.close()
