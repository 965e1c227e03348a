"""CaseChat's options: the channels where the citizen chooses the language."""

from __future__ import annotations

import gc
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest

import civicchat.cases.chat as chat_module
from civicchat.cases.chat import CaseChat, other_keyword
from civicchat.cases.config import CasesConfig
from civicchat.cases.flow import FlowStep
from civicchat.cases.memory import MemoryCaseStore
from civicchat.cases.sql import SqlCaseStore
from civicchat.clock import ManualClock
from civicchat.keywords import KeywordEngine, load_catalog
from civicchat.keywords.catalog import Catalog
from civicchat.messages import InboundMessage, Location, Sender, Text
from civicchat.routing import known_language


def test_the_web_chat_is_a_language_choice_channel_by_default(
    mataro_config: CasesConfig, clock: ManualClock
) -> None:
    assert CaseChat(mataro_config, clock=clock).language_choice_channels == {"webchat"}
    none = CaseChat(mataro_config, clock=clock, language_choice_channels=())
    assert none.language_choice_channels == frozenset()


def test_one_channel_name_instead_of_a_collection_is_refused_with_the_fix(
    mataro_config: CasesConfig, clock: ManualClock
) -> None:
    with pytest.raises(TypeError, match=r"collection of channel names, e.g. \('webchat',\)"):
        CaseChat(mataro_config, clock=clock, language_choice_channels="webchat")


class _FakeFlow:
    languages: ClassVar[list[str]] = []

    def __init__(self, *args: Any) -> None:
        pass

    async def handle(self, state: Any, message: Any, language: str, **kwargs: Any) -> FlowStep:
        self.languages.append(language)
        return FlowStep(None, handled=False)


@pytest.mark.parametrize(
    ("channel", "hint", "conversation", "expected"),
    [
        ("webchat", "es-ES", "ca", "es"),
        ("webchat", "cat", "es", "es"),  # as the pipeline: "cat" is no choice of ca or es
        ("webchat", "fr", None, "ca"),  # no choice, no conversation language: the default
        ("whatsapp", "es", "ca", "ca"),  # a client setting, not a choice
    ],
)
async def test_the_flow_takes_the_language_the_pipeline_would(
    mataro_config: CasesConfig,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
    channel: str,
    hint: str,
    conversation: str | None,
    expected: str,
) -> None:
    monkeypatch.setattr(chat_module, "CaseFlow", _FakeFlow)
    monkeypatch.setattr(SqlCaseStore, "in_transaction", lambda connection: None)
    _FakeFlow.languages = []
    message = InboundMessage(
        channel=channel,
        account="mataro",
        provider_message_id="m1",
        sender=Sender(id="visitor_0123456789abcdef", language_hint=hint),
        timestamp=clock.now(),
        content=Location(latitude=41.54, longitude=2.44),  # no text: no detection
    )
    chat = CaseChat(mataro_config, clock=clock)
    await chat.step(None, {}, message, language=conversation, default_language="ca")  # type: ignore[arg-type]
    assert _FakeFlow.languages == [expected]
    assert expected == (known_language(channel, hint, conversation, ("ca", "es")) or "ca")


MATARO_CATALOG = Path(__file__).resolve().parents[2] / "examples" / "mataro" / "catalog.yaml"


def test_reporting_topics_are_worked_out_once_per_engine_and_catalog(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worked_out: list[Catalog] = []
    real = chat_module._reporting_topics

    def counted(catalog: Catalog) -> frozenset[str]:
        worked_out.append(catalog)
        return real(catalog)

    monkeypatch.setattr(chat_module, "_reporting_topics", counted)
    engine = KeywordEngine(load_catalog(MATARO_CATALOG))
    for _ in range(3):  # the bot makes a new other_keyword for every message
        asks = other_keyword(engine)
        assert asks("el tiempo")
        assert not asks("farola")
    assert worked_out == [engine.catalog]
    # A reloaded catalog (a new object, same file) is worked out again, once.
    engine.reload(load_catalog(MATARO_CATALOG))
    assert other_keyword(engine)("punto limpio")
    assert not other_keyword(engine)("contenidor ple")
    assert worked_out[1:] == [engine.catalog]
    # Another engine has its own entry, which goes with the engine: nothing keyed by id().
    other = KeywordEngine(engine.catalog)
    assert other_keyword(other)("deixalleria")
    assert len(worked_out) == 3
    assert other in chat_module._TOPICS
    entries = len(chat_module._TOPICS)
    del other
    gc.collect()
    assert len(chat_module._TOPICS) == entries - 1


@pytest.mark.parametrize(
    ("language", "start", "cancel", "cancelled", "nothing"),
    [
        ("ca", "incidència", "cancel·lar", "he cancel·lat", "No hi ha cap incidència en curs."),
        ("es", "queja", "cancelar", "he cancelado", "No hay ninguna queja en curso."),
    ],
)
async def test_cancel_soon_after_a_report_ended_says_there_is_none_then_routing_again(
    mataro_config: CasesConfig,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
    language: str,
    start: str,
    cancel: str,
    cancelled: str,
    nothing: str,
) -> None:
    store = MemoryCaseStore()
    monkeypatch.setattr(SqlCaseStore, "in_transaction", lambda connection: store)
    chat = CaseChat(mataro_config, clock=clock)
    data: dict[str, Any] = {}
    counter = iter(range(1, 100))

    async def send(text: str) -> FlowStep:
        message = InboundMessage(
            channel="whatsapp",
            account="mataro",
            provider_message_id=f"m{next(counter)}",
            sender=Sender(id="34600000001"),
            timestamp=clock.now(),
            content=Text(body=text),
        )
        return await chat.step(None, data, message, language=language, default_language="ca")  # type: ignore[arg-type]

    # Never a report in this conversation: "cancelar" is routing's, as before.
    assert not (await send(cancel)).handled
    assert (await send(start)).state is not None
    first = await send(cancel)
    assert first.handled
    assert cancelled in first.contents[0].body  # type: ignore[union-attr]
    assert "case_flow" not in data
    again = await send(cancel)
    assert again.handled
    assert again.state is None
    assert [c.body for c in again.contents] == [nothing]  # type: ignore[union-attr]
    # Not a bare cancel word: routing answers it.
    assert not (await send("horari bus")).handled
    # Past the flow's expiry the report is no longer recent: routing answers, the note goes.
    clock.advance(mataro_config.expiry + timedelta(minutes=1))
    late = await send(cancel)
    assert not late.handled
    assert late.contents == ()
    assert "case_flow_ended" not in data


async def test_an_unreadable_note_of_the_last_report_is_dropped_not_fatal(
    mataro_config: CasesConfig, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SqlCaseStore, "in_transaction", lambda connection: MemoryCaseStore())
    chat = CaseChat(mataro_config, clock=clock)
    for note in ({"at": "yesterday"}, "garbage", {"at": "2026-11-28T10:00:00", "kind": "x"}):
        data: dict[str, Any] = {"case_flow_ended": note}
        message = InboundMessage(
            channel="whatsapp",
            account="mataro",
            provider_message_id="m1",
            sender=Sender(id="34600000001"),
            timestamp=clock.now(),
            content=Text(body="cancelar"),
        )
        step = await chat.step(None, data, message, language="es", default_language="ca")  # type: ignore[arg-type]
        assert not step.handled
        assert "case_flow_ended" not in data
