from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from routing_support import FakeResponder, inbound, local

from civicchat.exceptions import ConfigError, RoutingError
from civicchat.messages import (
    Buttons,
    ContactCard,
    Contacts,
    InteractiveReply,
    Location,
    Media,
    MediaKind,
    Reaction,
    Text,
    Unsupported,
)
from civicchat.routing import (
    ConversationState,
    ConversationView,
    Enqueue,
    NotifyOperator,
    OfficeHours,
    Outcome,
    Pipeline,
    ReminderPolicy,
    ReplyReason,
    Router,
    RoutingTexts,
    transition,
)

S = ConversationState


def _no_detector(
    text: str, *, previous: str | None = None, default: str = "ca", hint: str | None = None
) -> str:
    return previous or hint or default


@pytest.fixture
def pipeline(mataro: OfficeHours, responder: FakeResponder) -> Pipeline:
    return Pipeline(
        account="wa-010",
        office_hours=mataro,
        responder=responder,
        reengagement_template="reprendre_conversa",
        detect_language=_no_detector,
    )


def _view(**changes: object) -> ConversationView:
    base = ConversationView(id="c1", account="wa-010", channel="whatsapp", citizen_id="x")
    return base.replace(**changes)


def _say(pipeline: Pipeline, view: ConversationView, content: object, at: datetime) -> Outcome:
    return pipeline.decide(view, inbound(content, at), at)  # type: ignore[arg-type]


def _reasons(outcome: Outcome) -> list[ReplyReason]:
    return [r.reason for r in outcome.replies]


def test_keywords_answer_at_any_hour(pipeline: Pipeline) -> None:
    saturday_night = local(2026, 3, 28, 3, 0)
    out = _say(pipeline, _view(), "bus", saturday_night)
    assert _reasons(out) == [ReplyReason.KEYWORD]
    assert out.replies[0].contents == (Text(body="[ca] bus"),)
    assert out.view.state is S.BOT
    assert out.view.last_out_of_hours_period is None
    index = _say(pipeline, out.view, "PARAULES CLAU", saturday_night)
    assert _reasons(index) == [ReplyReason.INDEX]


def test_office_hours_handoff_acknowledges_once_per_period(pipeline: Pipeline) -> None:
    t = local(2026, 6, 15, 9, 0)
    first = _say(pipeline, _view(), "Tinc un problema amb una multa", t)
    assert first.view.state is S.QUEUED
    assert first.view.queued_at == t
    enqueue = [d for d in first.decisions if isinstance(d, Enqueue)]
    window = t + timedelta(hours=24)
    assert enqueue == [Enqueue("c1", 0, t, language="ca", team=None, window_closes_at=window)]
    assert _reasons(first) == [ReplyReason.ACK]
    assert first.replies[0].contents == (Text(body="Un moment, us atendrà una persona del 010."),)
    second = _say(pipeline, first.view, "Hola?", t + timedelta(minutes=5))
    assert second.replies == ()
    # Only the assigner's entry is refreshed: the new message moved the WhatsApp window.
    assert second.decisions == (
        Enqueue("c1", 0, t, language="ca", window_closes_at=window + timedelta(minutes=5)),
    )
    assert second.view.state is S.QUEUED
    # Still waiting the next morning: a new open period, a new acknowledgement.
    third = _say(pipeline, second.view, "Hola??", local(2026, 6, 16, 9, 0))
    assert _reasons(third) == [ReplyReason.ACK]


def test_out_of_hours_reply_once_per_closed_period(pipeline: Pipeline) -> None:
    friday = local(2026, 3, 27, 19, 1)
    first = _say(pipeline, _view(), "Hi ha un forat al carrer", friday)
    assert _reasons(first) == [ReplyReason.OUT_OF_HOURS]
    body = first.replies[0].contents[0]
    assert isinstance(body, Text)
    assert "Tornem a obrir dilluns a les 8:00" in body.body
    assert "de dilluns a divendres, de 8:00 a 19:00" in body.body
    assert "PARAULES CLAU" in body.body
    assert first.view.state is S.QUEUED
    # The next message gets a short note (see the out-of-hours reminder tests), not this reply.
    noted = _say(pipeline, first.view, "És al carrer Nou", friday + timedelta(minutes=1))
    assert _reasons(noted) == [ReplyReason.REMINDER]
    later = _say(pipeline, noted.view, "Algú?", friday + timedelta(minutes=30))
    assert later.replies == ()
    assert later.view.state is S.QUEUED
    monday = _say(pipeline, later.view, "Bon dia", local(2026, 3, 30, 8, 30))
    assert _reasons(monday) == [ReplyReason.ACK]


def test_out_of_hours_in_spanish(pipeline: Pipeline) -> None:
    out = _say(pipeline, _view(language="es"), "Tengo una queja", local(2026, 12, 24, 15, 0))
    text = out.replies[0].contents[0]
    assert isinstance(text, Text)
    assert "Volvemos a abrir el lunes a las 8:00" in text.body
    assert "PALABRAS CLAVE" in text.body


def test_media_and_locations_go_to_a_person(pipeline: Pipeline) -> None:
    photo = Media(media_kind=MediaKind.IMAGE, media_id="123", caption="bus")
    out = _say(pipeline, _view(), photo, local(2026, 6, 15, 10, 0))
    assert out.view.state is S.QUEUED
    assert _reasons(out) == [ReplyReason.ACK]
    where = Location(latitude=41.54, longitude=2.44)
    late = _say(pipeline, _view(), where, local(2026, 6, 15, 22, 0))
    assert late.view.state is S.QUEUED
    assert _reasons(late) == [ReplyReason.OUT_OF_HOURS]


def test_attended_conversation_only_exact_keywords_answer(pipeline: Pipeline) -> None:
    t = local(2026, 6, 15, 10, 0)
    view = transition(_view(), S.QUEUED, at=t, actor="bot")
    view = transition(view, S.ASSIGNED, at=t, actor="system", operator="anna")
    chat = _say(pipeline, view, "quin bus he d'agafar?", t)
    assert chat.replies == ()
    assert chat.decisions == (NotifyOperator("c1", "anna", "message"),)
    exact = _say(pipeline, view, "bus", t)
    assert _reasons(exact) == [ReplyReason.KEYWORD]
    assert NotifyOperator("c1", "anna", "keyword_answered") in exact.decisions
    assert exact.view.state is S.ASSIGNED


def test_unclear_match_asks_did_you_mean_and_buttons_answer(pipeline: Pipeline) -> None:
    t = local(2026, 6, 15, 10, 0)
    out = _say(pipeline, _view(), "bu", t)
    assert _reasons(out) == [ReplyReason.CLARIFY]
    buttons = out.replies[0].contents[0]
    assert isinstance(buttons, Buttons)
    assert buttons.body == "Volia dir...?"
    pressed = InteractiveReply(reply_id="kw:bus_nit", title="Bus nit")
    answer = _say(pipeline, out.view, pressed, t)
    assert answer.replies[0].contents == (Text(body="[ca] bus_nit"),)
    assert answer.view.state is S.BOT


def test_a_closed_conversation_reopens(pipeline: Pipeline) -> None:
    t = local(2026, 6, 15, 10, 0)
    closed = transition(_view(), S.CLOSED, at=t, actor="anna")
    out = _say(pipeline, closed, "Torno a ser jo", t + timedelta(days=1))
    assert out.view.state is S.QUEUED
    assert [h.note for h in out.view.history] == ["", "reopened", "handoff"]


def test_language_follows_answers_hints_and_the_detector(
    mataro: OfficeHours, responder: FakeResponder
) -> None:
    t = local(2026, 6, 15, 10, 0)
    plain = Pipeline(
        account="wa-010", office_hours=mataro, responder=responder, detect_language=_no_detector
    )
    es = _say(plain, _view(), "autobús", t)
    assert es.view.language == "es"
    assert plain.decide(_view(), inbound("??", t, hint="es-ES"), t).view.language == "es"
    spanish = Pipeline(
        account="wa-010",
        office_hours=mataro,
        responder=responder,
        detect_language=lambda text, *, previous=None, default="ca", hint=None: "es",
    )
    out = _say(spanish, _view(language="ca"), "necesito ayuda", t)
    assert out.replies[0].contents == (Text(body="Un momento, le atenderá una persona del 010."),)


def test_reactions_change_nothing(pipeline: Pipeline) -> None:
    view = _view()
    out = _say(pipeline, view, Reaction(message_id="w1", emoji="👍"), local(2026, 6, 15, 10))
    assert out == Outcome(view)


def test_last_inbound_never_goes_back(pipeline: Pipeline) -> None:
    t = local(2026, 6, 15, 10, 0)
    view = _view(last_inbound_at=t)
    late_redelivery = pipeline.decide(view, inbound("bus", t - timedelta(hours=3)), t)
    assert late_redelivery.view.last_inbound_at == t
    fresh = pipeline.decide(view, inbound("bus", t + timedelta(hours=1)), t + timedelta(hours=1))
    assert fresh.view.last_inbound_at == t + timedelta(hours=1)


def test_wrong_account_and_bad_configuration_are_refused(
    pipeline: Pipeline, mataro: OfficeHours, responder: FakeResponder
) -> None:
    t = local(2026, 6, 15, 10, 0)
    with pytest.raises(RoutingError, match="account"):
        pipeline.decide(_view(), inbound("bus", t, account="tg-010"), t)
    only_ca = RoutingTexts(
        {"ack": {"ca": "a"}, "out_of_hours": {"ca": "b"}, "out_of_hours_unknown": {"ca": "c"}}
    )
    with pytest.raises(ConfigError, match="no es version"):
        Pipeline(account="a", office_hours=mataro, responder=responder, texts=only_ca)
    with pytest.raises(ValueError, match="zone-aware"):
        pipeline.decide(_view(), inbound("bus", t), datetime(2026, 1, 1))


def test_replies_outside_the_window_become_the_template(pipeline: Pipeline) -> None:
    friday = local(2026, 3, 27, 19, 1)
    view = _say(pipeline, _view(), "Hi ha un forat", friday).view
    monday = local(2026, 3, 30, 8, 0)
    prepared = pipeline.prepare_outbound(view, [Text(body="Bon dia, ja ho mirem")], monday)
    assert prepared.used_template
    assert prepared.contents[0].kind == "template"
    assert prepared.held == (Text(body="Bon dia, ja ho mirem"),)
    within = pipeline.prepare_outbound(view, [Text(body="Ara mateix")], friday + timedelta(hours=2))
    assert within.contents == (Text(body="Ara mateix"),)
    assert not within.used_template


def test_router_uses_each_accounts_pipeline(mataro: OfficeHours, responder: FakeResponder) -> None:
    always_closed = OfficeHours(timezone="Europe/Madrid", weekly={})
    whatsapp = Pipeline(
        account="wa-010", office_hours=mataro, responder=responder, detect_language=_no_detector
    )
    telegram = Pipeline(
        account="tg-010",
        office_hours=always_closed,
        responder=responder,
        detect_language=_no_detector,
    )
    router = Router([whatsapp, telegram])
    t = local(2026, 6, 15, 10, 0)
    on_wa = router.decide(_view(), inbound("Ajuda", t), t)
    on_tg = router.decide(
        _view(account="tg-010", channel="telegram"), inbound("Ajuda", t, account="tg-010"), t
    )
    assert _reasons(on_wa) == [ReplyReason.ACK]
    assert _reasons(on_tg) == [ReplyReason.OUT_OF_HOURS]
    with pytest.raises(RoutingError, match="no routing pipeline for account 'web'"):
        router.decide(_view(account="web"), inbound("x", t, account="web"), t)
    with pytest.raises(ConfigError, match="two pipelines"):
        Router([whatsapp, whatsapp])


def test_contact_cards_and_unsupported_content_go_to_a_person(pipeline: Pipeline) -> None:
    t = local(2026, 6, 15, 10, 0)
    card = Contacts(contacts=(ContactCard(name="Veí del 3r"),))
    poll = Unsupported(provider_type="poll")
    for content in (card, poll):
        out = _say(pipeline, _view(), content, t)
        assert out.view.state is S.QUEUED
        assert _reasons(out) == [ReplyReason.ACK]


_SATURDAY_MORNINGS = "timezone: Europe/Madrid\nweekly:\n  saturday: ['09:00-13:00']\n"


def test_new_office_hours_take_effect_at_the_next_decision(pipeline: Pipeline) -> None:
    from civicchat.routing import parse_office_hours

    saturday = local(2026, 3, 28, 10, 0)
    assert _reasons(_say(pipeline, _view(), "Tinc un problema", saturday)) == [
        ReplyReason.OUT_OF_HOURS
    ]
    pipeline.set_office_hours(parse_office_hours(_SATURDAY_MORNINGS))
    assert _reasons(_say(pipeline, _view(), "Tinc un problema", saturday)) == [ReplyReason.ACK]
    friday = _say(pipeline, _view(), "Tinc un problema", local(2026, 3, 27, 10, 0))
    assert _reasons(friday) == [ReplyReason.OUT_OF_HOURS]
    body = friday.replies[0].contents[0]
    assert isinstance(body, Text)
    assert "dissabte" in body.body  # the out-of-hours text describes the new week
    assert "de dilluns a divendres" not in body.body


def test_office_hours_that_cannot_be_described_are_refused_whole(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    from civicchat.routing import parse_office_hours

    before = pipeline.office_hours
    new = parse_office_hours(_SATURDAY_MORNINGS)

    def no_words(self: OfficeHours, language: str) -> str:
        raise ValueError(f"no words for {language}")

    monkeypatch.setattr(OfficeHours, "describe", no_words)
    with pytest.raises(ConfigError, match="wa-010"):
        pipeline.set_office_hours(new)
    monkeypatch.undo()
    assert pipeline.office_hours is before
    out = _say(pipeline, _view(), "Tinc un problema", local(2026, 3, 27, 19, 1))
    body = out.replies[0].contents[0]
    assert isinstance(body, Text)
    assert "de dilluns a divendres, de 8:00 a 19:00" in body.body


# --------------------------------------------------------------------------- reminders (rule 2)

REMINDER_CA = "Tenim els vostres missatges. Una persona del 010 us respondrà tan aviat com pugui."


def _queued_and_acknowledged(pipeline: Pipeline, t: datetime) -> Outcome:
    first = _say(pipeline, _view(), "Tinc un problema amb una multa", t)
    assert _reasons(first) == [ReplyReason.ACK]
    assert (first.view.last_ack_at, first.view.messages_since_ack) == (t, 1)
    return first


def test_the_third_message_while_queued_gets_one_gentle_reminder(pipeline: Pipeline) -> None:
    t = local(2026, 6, 15, 9, 0)
    view = _queued_and_acknowledged(pipeline, t).view
    second = _say(pipeline, view, "Hola?", t + timedelta(minutes=3))
    assert second.replies == ()
    assert second.view.messages_since_ack == 2
    third = _say(pipeline, second.view, "Hi ha algú?", t + timedelta(minutes=4))
    assert _reasons(third) == [ReplyReason.REMINDER]
    assert third.replies[0].contents == (Text(body=REMINDER_CA),)
    assert third.replies[0].language == "ca"
    assert (third.view.last_ack_at, third.view.messages_since_ack) == (t + timedelta(minutes=4), 1)
    assert any(isinstance(d, Enqueue) for d in third.decisions)  # still refreshed in the queue
    # Two more messages within two minutes of the reminder: silence (never spam).
    fourth = _say(pipeline, third.view, "?", t + timedelta(minutes=4, seconds=30))
    fifth = _say(pipeline, fourth.view, "??", t + timedelta(minutes=5, seconds=59))
    assert fourth.replies == fifth.replies == ()
    # Two minutes after the reminder, the third message since it gets the next one.
    sixth = _say(pipeline, fifth.view, "???", t + timedelta(minutes=6))
    assert _reasons(sixth) == [ReplyReason.REMINDER]


def test_a_message_ten_minutes_after_the_acknowledgement_gets_a_reminder_with_the_position(
    pipeline: Pipeline,
) -> None:
    t = local(2026, 6, 15, 9, 0)
    view = _queued_and_acknowledged(pipeline, t).view.replace(language="es")
    nine = t + timedelta(minutes=9)
    early = pipeline.decide(view, inbound("¿Hola?", nine), nine, queue_position=4)
    assert early.replies == ()
    later = t + timedelta(minutes=10)
    out = pipeline.decide(view, inbound("¿Hola?", later), later, queue_position=4)
    assert _reasons(out) == [ReplyReason.REMINDER]
    assert out.replies[0].contents == (
        Text(
            body="Tenemos sus mensajes. Una persona del 010 le responderá lo antes posible; "
            "es el número 4 de la cola."
        ),
    )
    # A position the caller does not know (or a nonsense one) leaves it out.
    unknown = pipeline.decide(view, inbound("¿Hola?", later), later, queue_position=0)
    assert unknown.replies[0].contents[0] == Text(
        body="Tenemos sus mensajes. Una persona del 010 le responderá lo antes posible."
    )


def test_no_reminder_while_an_operator_attends(pipeline: Pipeline) -> None:
    t = local(2026, 6, 15, 9, 0)
    view = _queued_and_acknowledged(pipeline, t).view
    view = transition(view, S.ASSIGNED, at=t, actor="system", operator="anna")
    for minutes in (3, 4, 30):
        out = _say(pipeline, view, "Hola?", t + timedelta(minutes=minutes))
        assert out.decisions == (NotifyOperator("c1", "anna", "message"),)
        view = out.view


def test_an_operators_reply_counts_as_an_answer_for_the_reminder(pipeline: Pipeline) -> None:
    t = local(2026, 6, 15, 9, 0)
    view = _queued_and_acknowledged(pipeline, t).view
    # Anna answered at 9:20 and put the conversation back in the queue (a transfer).
    view = transition(view, S.ASSIGNED, at=t, actor="system", operator="anna")
    view = view.replace(last_operator_reply_at=t + timedelta(minutes=20))
    view = transition(view, S.QUEUED, at=t + timedelta(minutes=21), actor="anna")
    soon = _say(pipeline, view, "Gràcies, i ara?", t + timedelta(minutes=25))
    assert soon.replies == ()
    later = _say(pipeline, soon.view, "Hola?", t + timedelta(minutes=30))
    assert _reasons(later) == [ReplyReason.REMINDER]


def test_no_reminder_without_a_known_acknowledgement_time(pipeline: Pipeline) -> None:
    friday = local(2026, 3, 27, 19, 30)  # closed: the out-of-hours reply, once
    view = _say(pipeline, _view(), "Tinc un dubte", friday).view
    # A store that keeps no acknowledgement time gets no out-of-hours note either.
    view = view.replace(last_ack_at=None, messages_since_ack=0)
    for minutes in (5, 20, 60, 600):
        out = _say(pipeline, view, "Hola?", friday + timedelta(minutes=minutes))
        assert out.replies == ()
        view = out.view
    # A conversation stored before reminders existed: acknowledged, but at an unknown time.
    t = local(2026, 6, 15, 9, 0)
    legacy = _queued_and_acknowledged(pipeline, t).view.replace(last_ack_at=None)
    out = _say(pipeline, legacy, "Hola?", t + timedelta(hours=2))
    assert out.replies == ()


def test_reminders_can_be_switched_off_or_paced_and_worded_per_account(
    mataro: OfficeHours, responder: FakeResponder
) -> None:
    t = local(2026, 6, 15, 9, 0)
    quiet = Pipeline(
        account="wa-010",
        office_hours=mataro,
        responder=responder,
        detect_language=_no_detector,
        reminder=None,
    )
    view = _queued_and_acknowledged(quiet, t).view
    assert _say(quiet, view, "Hola?", t + timedelta(hours=1)).replies == ()
    texts = RoutingTexts(
        {
            "ack": {"ca": "Un moment."},
            "out_of_hours": {"ca": "Tancat fins {reopening}."},
            "out_of_hours_unknown": {"ca": "Tancat."},
            "reminder": {"ca": "Tenim els teus missatges; et respondrem aviat."},
        }
    )
    paced = Pipeline(
        account="wa-010",
        office_hours=mataro,
        responder=responder,
        texts=texts,
        languages=("ca",),
        detect_language=_no_detector,
        reminder=ReminderPolicy(after=timedelta(minutes=3), every_messages=10),
    )
    view = _say(paced, _view(), "Tinc un dubte", t).view
    out = _say(paced, view, "Hola?", t + timedelta(minutes=3))
    assert out.replies[0].contents == (Text(body="Tenim els teus missatges; et respondrem aviat."),)
    # Its reminder_position was not given: the library's words, with the position.
    position = paced.decide(view, inbound("Hola?", t), t + timedelta(minutes=3), queue_position=2)
    assert "sou el número 2 de la cua" in position.replies[0].contents[0].body  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_interval": timedelta(0)}, "min_interval must be positive"),
        ({"after": timedelta(minutes=1)}, "after must be at least min_interval"),
        ({"every_messages": 1}, "every_messages must be 2 or more"),
    ],
)
def test_a_reminder_policy_that_makes_no_sense_is_refused(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        ReminderPolicy(**kwargs)  # type: ignore[arg-type]


def test_reminder_texts_are_validated() -> None:
    base = {
        "ack": {"ca": "Un moment."},
        "out_of_hours": {"ca": "Tancat."},
        "out_of_hours_unknown": {"ca": "Tancat."},
    }
    with pytest.raises(
        ConfigError, match=r"reminder_position.ca uses unknown field\(s\) \['pos'\]"
    ):
        RoutingTexts({**base, "reminder_position": {"ca": "Ets el {pos}"}})
    with pytest.raises(ConfigError, match=r"reminder.ca uses unknown field\(s\) \['position'\]"):
        RoutingTexts({**base, "reminder": {"ca": "Ets el {position}"}})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['recordatori'\]"):
        RoutingTexts({**base, "recordatori": {"ca": "Hola"}})
    with pytest.raises(ConfigError, match="'reminder' is empty"):
        RoutingTexts({**base, "reminder": {}})


@settings(max_examples=60, deadline=None)
@given(gaps=st.lists(st.integers(min_value=0, max_value=15 * 60), min_size=1, max_size=25))
def test_reminders_are_never_closer_than_the_interval_and_never_missed_after_it(
    gaps: list[int],
) -> None:
    from routing_support import MATARO_HOURS

    from civicchat.routing import load_office_hours

    pipeline = Pipeline(
        account="wa-010",
        office_hours=load_office_hours(MATARO_HOURS),
        responder=FakeResponder(),
        detect_language=_no_detector,
    )
    policy = ReminderPolicy()
    t = local(2026, 6, 15, 9, 0)  # a Monday morning: open until well after 6 hours of gaps
    view = _queued_and_acknowledged(pipeline, t).view
    last_reply, unanswered = t, 1
    for gap in gaps:
        t += timedelta(seconds=gap)
        out = _say(pipeline, view, "Hola?", t)
        reminded = _reasons(out) == [ReplyReason.REMINDER]
        waited = t - last_reply
        # The obviously correct reference: the policy's words, one message at a time.
        expected = waited >= policy.min_interval and (
            waited >= policy.after or unanswered + 1 >= policy.every_messages
        )
        assert reminded is expected
        if reminded:
            assert waited >= policy.min_interval
            last_reply, unanswered = t, 1
        else:
            assert out.replies == ()
            unanswered += 1
        view = out.view
