"""The pipeline with the real keyword engine and language detection.

Most cases use a small inline catalog, so they test routing and not the Mataró content (which its
owners keep tuning); one uses the Mataró catalog for what the engine answers itself (the index).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from routing_support import inbound, local

from civicchat.keywords import KeywordEngine, load_catalog, parse_catalog
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

MATARO_CATALOG = Path(__file__).resolve().parents[2] / "examples" / "mataro" / "catalog.yaml"
CATALOG = """
languages: [ca, es]
keywords:
  - id: deixalleria
    topic: serveis
    title: {ca: Deixalleria, es: Punto limpio}
    aliases: {ca: [deixalleria], es: [punto limpio]}
    reply:
      ca: "Deixalleria. Per dubtes, el 010 atén {{ office_hours }}."
      es: "Punto limpio. Para dudas, el 010 atiende {{ office_hours }}."
  - id: horari
    topic: serveis
    title: {ca: Horari, es: Horario}
    aliases: {ca: [horari], es: [horario]}
    reply: {ca: "Horari: {{ office_hours }}", es: "Horario: {{ office_hours }}"}
"""


def _pipeline(engine: KeywordEngine, hours: OfficeHours) -> Pipeline:
    return Pipeline(
        account="wa-010",
        office_hours=hours,
        responder=engine,
        reengagement_template="reprendre_conversa",
    )


@pytest.fixture(scope="module")
def engine() -> KeywordEngine:
    return KeywordEngine(parse_catalog(CATALOG))


@pytest.fixture
def pipeline(engine: KeywordEngine, mataro: OfficeHours) -> Pipeline:
    return _pipeline(engine, mataro)


def _view() -> ConversationView:
    return ConversationView(id="c1", account="wa-010", channel="whatsapp", citizen_id="x")


def _body(contents: tuple[object, ...]) -> str:
    first = contents[0]
    assert isinstance(first, Text)
    return first.body


def test_spanish_out_of_hours_with_the_real_detector(pipeline: Pipeline) -> None:
    at = local(2026, 3, 28, 23, 0)
    out = pipeline.decide(_view(), inbound("Necesito hablar con una persona, por favor", at), at)
    assert out.view.state is ConversationState.QUEUED
    assert out.view.language == "es"
    assert [r.reason for r in out.replies] == [ReplyReason.OUT_OF_HOURS]
    body = _body(out.replies[0].contents)
    assert "Volvemos a abrir el lunes a las 8:00" in body
    assert "PALABRAS CLAVE" in body


def test_keyword_replies_get_the_office_hours_in_their_language(pipeline: Pipeline) -> None:
    at = local(2026, 3, 28, 23, 0)
    ca = pipeline.decide(_view(), inbound("horari", at), at)
    assert [r.reason for r in ca.replies] == [ReplyReason.KEYWORD]
    assert _body(ca.replies[0].contents) == "Horari: de dilluns a divendres, de 8:00 a 19:00"
    es = pipeline.decide(_view(), inbound("horario", at), at)
    assert _body(es.replies[0].contents) == "Horario: de lunes a viernes, de 8:00 a 19:00"


def test_did_you_mean_then_the_chosen_button(pipeline: Pipeline) -> None:
    at = local(2026, 6, 15, 10, 0)
    out = pipeline.decide(_view(), inbound("horari de la deixalleria", at), at)
    assert [r.reason for r in out.replies] == [ReplyReason.CLARIFY]
    question = out.replies[0].contents[0]
    assert isinstance(question, Buttons)
    assert question.body == "Volia dir...?"
    button = next(b for b in question.buttons if b.id == "kw:deixalleria")
    pressed = InteractiveReply(reply_id=button.id, title=button.title)
    answer = pipeline.decide(out.view, inbound(pressed, at), at)
    assert [r.reason for r in answer.replies] == [ReplyReason.KEYWORD]
    assert _body(answer.replies[0].contents).startswith("Deixalleria.")
    assert answer.view.state is ConversationState.BOT


def test_with_an_operator_only_exact_keywords_answer(pipeline: Pipeline) -> None:
    at = local(2026, 6, 15, 10, 0)
    view = transition(_view(), ConversationState.QUEUED, at=at, actor="bot")
    view = transition(view, ConversationState.ASSIGNED, at=at, actor="system", operator="anna")
    chat = pipeline.decide(view, inbound("I el de la deixalleria, a quina hora tanca?", at), at)
    assert chat.replies == ()
    assert chat.decisions == (NotifyOperator("c1", "anna", "message"),)
    exact = pipeline.decide(view, inbound("Deixalleria", at), at)
    assert [r.reason for r in exact.replies] == [ReplyReason.KEYWORD]
    index = pipeline.decide(view, inbound("PALABRAS CLAVE", at), at)
    assert [r.reason for r in index.replies] == [ReplyReason.INDEX]
    assert index.view.language == "es"


def test_the_mataro_catalog_index_at_night(mataro: OfficeHours) -> None:
    pipeline = _pipeline(KeywordEngine(load_catalog(MATARO_CATALOG)), mataro)
    at = local(2026, 3, 28, 23, 0)
    out = pipeline.decide(_view(), inbound("PARAULES CLAU", at), at)
    assert [r.reason for r in out.replies] == [ReplyReason.INDEX]
    assert "Paraules clau" in _body(out.replies[0].contents)
    assert out.view.state is ConversationState.BOT
