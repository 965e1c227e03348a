"""The pipeline with the real keyword engine, the Mataró catalog and language detection."""

from __future__ import annotations

from pathlib import Path

import pytest
from routing_support import inbound, local

from civicchat.keywords import KeywordEngine, load_catalog
from civicchat.messages import Buttons, InteractiveReply, Text
from civicchat.routing import (
    ConversationState,
    ConversationView,
    NotifyOperator,
    OfficeHours,
    Pipeline,
    ReplyReason,
    transition,
)

CATALOG = Path(__file__).resolve().parents[2] / "examples" / "mataro" / "catalog.yaml"


@pytest.fixture(scope="module")
def engine() -> KeywordEngine:
    return KeywordEngine(load_catalog(CATALOG))


@pytest.fixture
def pipeline(engine: KeywordEngine, mataro: OfficeHours) -> Pipeline:
    return Pipeline(
        account="wa-010",
        office_hours=mataro,
        responder=engine,
        reengagement_template="reprendre_conversa",
    )


def _view() -> ConversationView:
    return ConversationView(id="c1", account="wa-010", channel="whatsapp", citizen_id="x")


def _text(outcome_contents: tuple[object, ...]) -> str:
    first = outcome_contents[0]
    assert isinstance(first, Text)
    return first.body


def test_spanish_out_of_hours_with_the_real_detector(pipeline: Pipeline) -> None:
    at = local(2026, 3, 28, 23, 0)
    out = pipeline.decide(_view(), inbound("Necesito hablar con una persona, por favor", at), at)
    assert out.view.state is ConversationState.QUEUED
    assert out.view.language == "es"
    assert [r.reason for r in out.replies] == [ReplyReason.OUT_OF_HOURS]
    body = _text(out.replies[0].contents)
    assert "Volvemos a abrir el lunes a las 8:00" in body
    assert "PALABRAS CLAVE" in body


def test_keyword_replies_get_the_office_hours_in_their_context(pipeline: Pipeline) -> None:
    at = local(2026, 3, 28, 23, 0)
    out = pipeline.decide(_view(), inbound("horari oac", at), at)
    assert [r.reason for r in out.replies] == [ReplyReason.KEYWORD]
    assert "de dilluns a divendres, de 8:00 a 19:00" in _text(out.replies[0].contents)


def test_did_you_mean_then_the_chosen_button(pipeline: Pipeline) -> None:
    at = local(2026, 6, 15, 10, 0)
    out = pipeline.decide(_view(), inbound("horari de la deixalleria", at), at)
    question = out.replies[0].contents[0]
    assert isinstance(question, Buttons)
    assert question.body == "Volia dir...?"
    button = question.buttons[0]
    pressed = InteractiveReply(reply_id=button.id, title=button.title)
    answer = pipeline.decide(out.view, inbound(pressed, at), at)
    assert [r.reason for r in answer.replies] == [ReplyReason.KEYWORD]
    assert answer.view.state is ConversationState.BOT


def test_with_an_operator_only_exact_keywords_answer(pipeline: Pipeline) -> None:
    at = local(2026, 6, 15, 10, 0)
    view = transition(_view(), ConversationState.QUEUED, at=at, actor="bot")
    view = transition(view, ConversationState.ASSIGNED, at=at, actor="system", operator="anna")
    chat = pipeline.decide(view, inbound("Tinc un problema amb la meva veïna", at), at)
    assert chat.decisions == (NotifyOperator("c1", "anna", "message"),)
    index = pipeline.decide(view, inbound("PALABRAS CLAVE", at), at)
    assert [r.reason for r in index.replies] == [ReplyReason.INDEX]
    assert index.view.language == "es"
