"""The second QA pass of the Mataró service through the routing pipeline, as ``make run`` wires
it: the web chat opened with ``?lang=es`` (its language selector: ``sender.language_hint`` on the
``webchat`` channel) keeps Spanish for 112, IBI, renfe and urgente, and a request for a person
reaches a person. The conversation's language is what the privacy notice and later texts use."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from civicchat.keywords import KeywordEngine, load_catalog
from civicchat.messages import Buttons, InboundMessage, Sender, Text
from civicchat.routing import (
    ConversationState,
    ConversationView,
    Outcome,
    Pipeline,
    ReplyReason,
    load_office_hours,
)

MATARO = Path(__file__).resolve().parents[2] / "examples" / "mataro"
MONDAY_10 = datetime(2026, 11, 30, 10, 0, tzinfo=ZoneInfo("Europe/Madrid"))


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline(
        account="mataro-web",
        office_hours=load_office_hours(MATARO / "hours.yaml"),
        responder=KeywordEngine(load_catalog(MATARO / "catalog.yaml")),
    )


def _send(pipeline: Pipeline, text: str, lang: str, n: int = 0) -> Outcome:
    view = ConversationView(id="c1", account="mataro-web", channel="webchat", citizen_id="v")
    message = InboundMessage(
        channel="webchat",
        account="mataro-web",
        provider_message_id=f"qa2-{lang}-{n}",
        sender=Sender(id="visitor-qa2-0000000", language_hint=lang),
        timestamp=MONDAY_10,
        content=Text(body=text),
    )
    return pipeline.decide(view, message, MONDAY_10)


def _body(outcome: Outcome) -> str:
    first = outcome.replies[0].contents[0]
    assert isinstance(first, Text | Buttons)
    return first.body


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("112", "llama ahora al 112"),
        ("urgente", "llama ahora al 112"),
        ("IBI", "calendario fiscal"),
        ("renfe", "Mataró está en la línea R1"),
    ],
)
def test_the_spanish_web_chat_answers_in_spanish(pipeline: Pipeline, text: str, words: str) -> None:
    out = _send(pipeline, text, "es")
    assert out.view.language == "es"
    assert [r.language for r in out.replies] == ["es"]
    assert words in _body(out)


def test_the_catalan_web_chat_still_answers_112_in_catalan(pipeline: Pipeline) -> None:
    out = _send(pipeline, "112", "ca")
    assert out.view.language == "ca"
    assert "truca ara al 112" in _body(out)


@pytest.mark.parametrize(
    ("text", "lang", "ack"),
    [
        ("Vull parlar amb una persona sobre el padró", "ca", "atendrà una persona"),
        ("Quiero hablar con una persona sobre el padrón", "es", "atenderá una persona"),
    ],
)
def test_a_request_for_a_person_is_queued_for_the_010(
    pipeline: Pipeline, text: str, lang: str, ack: str
) -> None:
    out = _send(pipeline, text, lang)
    assert out.view.state is ConversationState.QUEUED
    assert out.view.language == lang
    assert [r.reason for r in out.replies] == [ReplyReason.ACK]
    assert ack in _body(out)
    assert "padr" not in _body(out)  # not the padró keyword's answer
