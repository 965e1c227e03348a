"""The QA walkthrough of the Mataró service (2026-11) through the pipeline: the web chat's
language choice, the conversation's language on the other channels, the topic index, questions
that reach a person, and the note to a citizen who writes again while the office is closed."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from routing_support import FakeResponder, inbound, local

from civicchat.exceptions import ConfigError
from civicchat.keywords import KeywordEngine, load_catalog
from civicchat.messages import Buttons, InteractiveReply, Text
from civicchat.routing import (
    ConversationState,
    ConversationView,
    OfficeHours,
    Outcome,
    Pipeline,
    ReminderPolicy,
    ReplyReason,
    RoutingTexts,
)

MATARO_CATALOG = Path(__file__).resolve().parents[2] / "examples" / "mataro" / "catalog.yaml"
MONDAY_10 = local(2026, 6, 15, 10, 0)
FRIDAY_NIGHT = local(2026, 3, 27, 19, 30)  # closed until Monday 8:00


@pytest.fixture(scope="module")
def engine() -> KeywordEngine:
    return KeywordEngine(load_catalog(MATARO_CATALOG))


@pytest.fixture
def pipeline(engine: KeywordEngine, mataro: OfficeHours) -> Pipeline:
    return Pipeline(account="mataro", office_hours=mataro, responder=engine)


def _view(channel: str = "webchat", **changes: object) -> ConversationView:
    view = ConversationView(id="c1", account="mataro", channel=channel, citizen_id="v")
    return view.replace(**changes)


def _send(
    pipeline: Pipeline,
    view: ConversationView,
    content: str | InteractiveReply,
    at: datetime = MONDAY_10,
    *,
    hint: str | None = None,
) -> Outcome:
    message = inbound(content, at, account="mataro", channel=view.channel, hint=hint)
    return pipeline.decide(view, message, at)


def _text(outcome: Outcome) -> str:
    first = outcome.replies[0].contents[0]
    assert isinstance(first, Text | Buttons)
    return first.body


# ----------------------------------------------------------------- the web chat's language


@pytest.mark.parametrize("word", ["bus", "TV", "taxi"])
def test_the_spanish_web_chat_answers_a_shared_word_in_spanish(
    pipeline: Pipeline, word: str
) -> None:
    out = _send(pipeline, _view(), word, hint="es")
    assert [r.reason for r in out.replies] == [ReplyReason.KEYWORD]
    assert out.replies[0].language == "es"
    assert out.view.language == "es"  # the privacy notice follows the conversation's language
    assert "te responderá una persona del 010" in _text(out)


def test_switching_the_selector_mid_chat_switches_the_answers(pipeline: Pipeline) -> None:
    first = _send(pipeline, _view(), "bus", hint="ca")
    assert first.view.language == "ca"
    taxi = _send(pipeline, first.view, "taxi", hint="es")
    assert taxi.replies[0].language == "es"
    assert "Paradas de taxi" in _text(taxi)
    # A button pressed after the switch answers in the chosen language too.
    pressed = InteractiveReply(reply_id="kw:bus", title="Bus")
    button = _send(pipeline, first.view, pressed, hint="es")
    assert button.replies[0].language == "es"
    # So does the acknowledgement of a message for a person.
    ack = _send(pipeline, first.view, "hola", hint="es-ES")
    assert [r.reason for r in ack.replies] == [ReplyReason.ACK]
    assert ack.replies[0].language == "es"


def test_a_message_clearly_in_the_other_language_wins_over_the_selector(
    pipeline: Pipeline,
) -> None:
    out = _send(pipeline, _view(), "Quin és l'horari de la deixalleria?", hint="es")
    assert out.replies[0].language == "ca"
    spanish = _send(pipeline, _view(), "¿Cuál es el horario del autobús?", hint="ca")
    assert spanish.replies[0].language == "es"


def test_on_whatsapp_the_hint_is_no_choice_and_shared_words_keep_the_conversation(
    pipeline: Pipeline,
) -> None:
    # No conversation language yet: today's rule (the alias is listed under ca).
    first = _send(pipeline, _view("whatsapp"), "bus")
    assert first.view.language == "ca"
    # A Spanish conversation does not turn Catalan on a shared word.
    spanish = _view("whatsapp", language="es")
    for word in ("bus", "TV", "taxi"):
        assert _send(pipeline, spanish, word).replies[0].language == "es"
    # Telegram's language_code is a client setting: it does not outweigh the conversation.
    telegram = _view("telegram", language="ca")
    assert _send(pipeline, telegram, "taxi", hint="es").replies[0].language == "ca"


def test_which_channels_carry_a_choice_is_configurable(
    engine: KeywordEngine, mataro: OfficeHours
) -> None:
    pipeline = Pipeline(
        account="mataro",
        office_hours=mataro,
        responder=engine,
        language_choice_channels=("webchat", "kiosk"),
    )
    view = _view("kiosk", language="ca")
    assert _send(pipeline, view, "taxi", hint="es").replies[0].language == "es"
    with pytest.raises(ConfigError, match="collection of channel names"):
        Pipeline(
            account="mataro",
            office_hours=mataro,
            responder=engine,
            language_choice_channels="webchat",
        )


# ----------------------------------------------------------------- topics and questions


def test_a_topic_name_gets_its_part_of_the_index_at_night(pipeline: Pipeline) -> None:
    at = local(2026, 3, 28, 23, 0)
    out = _send(pipeline, _view(), "cultura", at, hint="es")
    assert [r.reason for r in out.replies] == [ReplyReason.INDEX]
    assert out.replies[0].language == "es"
    assert "*Cultura*" in _text(out)
    assert out.view.state is ConversationState.BOT


@pytest.mark.parametrize(
    ("text", "ack"),
    [
        (
            "Necesito ayuda con un papel del ayuntamiento, no encuentro dónde pedirlo",
            "te atenderá una persona",
        ),
        ("el meu veí té un gos que borda tota la nit", "t'atendrà una persona"),
    ],
)
def test_a_real_question_with_one_catalog_word_reaches_a_person(
    engine: KeywordEngine, mataro: OfficeHours, text: str, ack: str
) -> None:
    texts = RoutingTexts(
        {
            "ack": {
                "ca": "Un moment, t'atendrà una persona.",
                "es": "Un momento, te atenderá una persona.",
            },
            "out_of_hours": {"ca": "Tancat.", "es": "Cerrado."},
            "out_of_hours_unknown": {"ca": "Tancat.", "es": "Cerrado."},
        }
    )
    pipeline = Pipeline(account="mataro", office_hours=mataro, responder=engine, texts=texts)
    out = _send(pipeline, _view("whatsapp"), text)
    assert [r.reason for r in out.replies] == [ReplyReason.ACK]
    assert ack in _text(out)
    assert out.view.state is ConversationState.QUEUED


# ----------------------------------------------------------------- out of hours, writing again


@pytest.fixture
def fake(mataro: OfficeHours, responder: FakeResponder) -> Pipeline:
    return Pipeline(account="mataro", office_hours=mataro, responder=responder)


def _closed_conversation(pipeline: Pipeline, language: str = "ca") -> Outcome:
    first = _send(pipeline, _view("whatsapp", language=language), "Tinc un dubte", FRIDAY_NIGHT)
    assert [r.reason for r in first.replies] == [ReplyReason.OUT_OF_HOURS]
    return first


def test_the_next_message_out_of_hours_gets_one_short_note(fake: Pipeline) -> None:
    view = _closed_conversation(fake).view
    note = _send(fake, view, "És sobre el padró", FRIDAY_NIGHT + timedelta(seconds=40))
    assert [r.reason for r in note.replies] == [ReplyReason.REMINDER]
    assert _text(note) == (
        "Hem rebut el vostre missatge. Una persona del 010 us respondrà dilluns a les 8:00."
    )
    assert note.view.state is ConversationState.QUEUED
    view = note.view
    for minutes in (2, 30, 120):  # then quiet for three hours
        out = _send(fake, view, "Hola?", FRIDAY_NIGHT + timedelta(minutes=minutes))
        assert out.replies == ()
        view = out.view
    later = _send(fake, view, "Encara hi sou?", FRIDAY_NIGHT + timedelta(hours=3, minutes=5))
    assert [r.reason for r in later.replies] == [ReplyReason.REMINDER]
    # Monday morning the office is open: the acknowledgement, not a note.
    monday = _send(fake, later.view, "Bon dia", local(2026, 3, 30, 8, 5))
    assert [r.reason for r in monday.replies] == [ReplyReason.ACK]


def test_the_note_in_spanish_and_in_the_accounts_words(
    mataro: OfficeHours, responder: FakeResponder
) -> None:
    default = Pipeline(account="mataro", office_hours=mataro, responder=responder)
    view = _closed_conversation(default, "es").view
    note = _send(default, view, "Es sobre el padrón", FRIDAY_NIGHT + timedelta(minutes=1))
    assert _text(note) == (
        "Hemos recibido su mensaje. Una persona del 010 le responderá el lunes a las 8:00."
    )
    texts = RoutingTexts(
        {
            "ack": {"ca": "Un moment.", "es": "Un momento."},
            "out_of_hours": {"ca": "Tancat.", "es": "Cerrado."},
            "out_of_hours_unknown": {"ca": "Tancat.", "es": "Cerrado."},
            "out_of_hours_reminder": {"ca": "Rebut; {reopening}.", "es": "Recibido; {reopening}."},
        }
    )
    own = Pipeline(account="mataro", office_hours=mataro, responder=responder, texts=texts)
    view = _closed_conversation(own, "es").view
    note = _send(own, view, "Es sobre el padrón", FRIDAY_NIGHT + timedelta(minutes=1))
    assert _text(note) == "Recibido; el lunes a las 8:00."


def test_no_known_reopening_gets_the_note_without_a_day() -> None:
    from civicchat.routing import parse_office_hours

    never = parse_office_hours("timezone: Europe/Madrid\nweekly: {}\n")
    pipeline = Pipeline(account="mataro", office_hours=never, responder=FakeResponder())
    view = _send(pipeline, _view("whatsapp", language="ca"), "Tinc un dubte", FRIDAY_NIGHT).view
    note = _send(pipeline, view, "Hola?", FRIDAY_NIGHT + timedelta(minutes=1))
    assert _text(note) == (
        "Hem rebut el vostre missatge. Una persona del 010 us respondrà quan obrim."
    )


def test_the_notes_can_be_switched_off_and_are_validated(
    mataro: OfficeHours, responder: FakeResponder
) -> None:
    quiet = Pipeline(
        account="mataro",
        office_hours=mataro,
        responder=responder,
        reminder=ReminderPolicy(out_of_hours_every=None),
    )
    view = _closed_conversation(quiet).view
    assert _send(quiet, view, "Hola?", FRIDAY_NIGHT + timedelta(minutes=1)).replies == ()
    with pytest.raises(ConfigError, match="out_of_hours_every must be at least min_interval"):
        ReminderPolicy(out_of_hours_every=timedelta(seconds=30))
    with pytest.raises(ConfigError, match="unknown field"):
        RoutingTexts(
            {
                "ack": {"ca": "a"},
                "out_of_hours": {"ca": "b"},
                "out_of_hours_unknown": {"ca": "c"},
                "out_of_hours_reminder": {"ca": "Rebut {hours}"},
            }
        )


def test_a_keyword_out_of_hours_is_still_answered_and_no_note_without_a_closed_reply(
    fake: Pipeline,
) -> None:
    out = _send(fake, _view("whatsapp"), "bus", FRIDAY_NIGHT)
    assert [r.reason for r in out.replies] == [ReplyReason.KEYWORD]
    # While the conversation is with the bot, no note is due.
    assert ReminderPolicy().due_closed(out.view, FRIDAY_NIGHT + timedelta(hours=5)) is False
