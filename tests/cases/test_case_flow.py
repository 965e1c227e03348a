from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from civicchat.cases.chat import other_keyword
from civicchat.cases.config import CasesConfig
from civicchat.cases.flow import CaseFlow, FlowStage, FlowState, FlowStep, start_kind
from civicchat.cases.memory import MemoryCaseStore
from civicchat.cases.models import Case, CaseKind, CaseStatus
from civicchat.cases.texts import say
from civicchat.clock import ManualClock
from civicchat.keywords import KeywordEngine, load_catalog
from civicchat.messages import (
    Buttons,
    InboundMessage,
    InteractiveReply,
    ListMenu,
    Location,
    LocationRequest,
    Media,
    MediaKind,
    OutboundContent,
    Reaction,
    Sender,
    Text,
    Unsupported,
)

INSIDE = Location(latitude=41.5385, longitude=2.4447)  # the town hall square
BARCELONA = Location(latitude=41.3874, longitude=2.1686)
PHOTO = Media(media_kind=MediaKind.IMAGE, media_id="wa-media-1", mime_type="image/jpeg")


class Chat:
    """One citizen talking to the flow; the state goes through JSON between messages."""

    def __init__(self, flow: CaseFlow, msg, language: str, sender: str = "34600000001") -> None:
        self.flow = flow
        self.msg = msg
        self.language = language
        self.sender = sender
        self.state: FlowState | None = None
        self.last: FlowStep | None = None

    async def send(self, content) -> tuple[OutboundContent, ...]:
        if isinstance(content, str):
            content = Text(body=content)
        step = await self.flow.handle(
            self.state, self.msg(content, sender=self.sender), self.language
        )
        stored = None if step.state is None else step.state.to_json()
        self.state = None if stored is None else FlowState.from_json(stored)
        assert self.state == step.state
        self.last = step
        return step.contents

    @property
    def st(self) -> FlowState:
        assert self.state is not None
        return self.state

    @property
    def case(self) -> Case | None:
        assert self.last is not None
        return self.last.case

    def handled(self) -> bool:
        assert self.last is not None
        return self.last.handled

    def finished(self) -> bool:
        return self.state is None

    def stage(self) -> FlowStage | None:
        return None if self.state is None else self.state.stage


def body(content: OutboundContent) -> str:
    assert isinstance(content, Text | Buttons | ListMenu | LocationRequest), content
    return content.body


def joined(contents: tuple[OutboundContent, ...]) -> str:
    return "\n".join(body(c) for c in contents)


async def test_catalan_report_from_keyword_to_reference(flow, msg, store: MemoryCaseStore) -> None:
    chat = Chat(flow, msg, "ca")

    (menu,) = await chat.send("Incidència")
    assert isinstance(menu, ListMenu)
    assert menu.body.startswith("D'acord, registrem una incidència")
    assert [r.id for r in menu.rows][:2] == ["case:cat:enllumenat", "case:cat:voreres"]
    assert all(len(r.title) <= 24 for r in menu.rows)

    (question,) = await chat.send(
        InteractiveReply(reply_id="case:cat:enllumenat", title="Enllumenat públic", source="list")
    )
    assert body(question) == "Explica'ns breument què passa."

    (media_q,) = await chat.send("La farola del davant de l'Ajuntament no s'encén")
    assert isinstance(media_q, Buttons)
    assert media_q.buttons[0].id == "case:skip"

    (where,) = await chat.send(PHOTO)
    assert isinstance(where, LocationRequest)

    (confirm,) = await chat.send(INSIDE)
    assert isinstance(confirm, Buttons)
    assert "Enllumenat públic" in confirm.body
    assert "Plaça de l'Ajuntament" in confirm.body  # reverse geocoded
    assert "openstreetmap.org/?mlat=41.538500" in confirm.body
    assert [b.id for b in confirm.buttons] == ["case:yes", "case:no"]

    (done,) = await chat.send(InteractiveReply(reply_id="case:yes", title="Sí"))
    assert chat.finished()
    case = chat.case
    assert case is not None
    assert case.reference == "MTR-2026-000001"
    assert body(done) == (
        "Gràcies! Hem registrat la teva incidència amb el número MTR-2026-000001. "
        "Per saber-ne l'estat, escriu «estat MTR-2026-000001»."
    )
    stored = await store.get("MTR-2026-000001")
    assert stored == case
    assert case.category == "enllumenat"
    assert case.department == "manteniment"
    assert case.kind is CaseKind.INCIDENT
    assert case.status is CaseStatus.RECEIVED
    assert case.media[0].ref == "wa-media-1"
    assert case.location is not None
    assert case.location.inside_boundary is True
    assert case.citizen_id == "34600000001"
    assert case.language == "ca"


async def test_spanish_complaint_with_typed_choices_and_address(flow, msg, geocoder) -> None:
    chat = Chat(flow, msg, "es")

    (menu,) = await chat.send("queja")
    assert body(menu).startswith("De acuerdo, registramos una queja")
    await chat.send("limpieza viaria")
    assert chat.st.category == "neteja"
    await chat.send("Hay basura acumulada en la esquina desde el lunes")
    (where,) = await chat.send("ninguna")
    assert body(where).startswith("¿Dónde está?")
    (confirm,) = await chat.send("La Riera, 48")
    assert "Limpieza viaria" in body(confirm)
    assert "¿Lo enviamos?" in body(confirm)
    (done,) = await chat.send("si")
    case = chat.case
    assert case is not None
    assert case.kind is CaseKind.COMPLAINT
    assert body(done).startswith(
        "¡Gracias! Hemos registrado tu queja con el número MTR-2026-000001"
    )
    assert case.location is not None
    assert case.location.source == "geocoded"
    assert (case.location.latitude, case.location.longitude) == (41.5381, 2.4445)
    assert case.location.address == "La Riera, 48"
    assert case.media == ()
    assert case.language == "es"


async def test_a_category_by_number_and_an_unknown_address_kept_as_text(flow, msg) -> None:
    chat = Chat(flow, msg, "ca")
    await chat.send("suggeriment")
    await chat.send("5")
    assert chat.st.category == "parcs"
    await chat.send("Caldria posar més bancs al parc Central")
    await chat.send("cap")
    await chat.send("Parc Central, zona dels jocs")
    case_location = chat.st.location
    assert case_location is not None
    assert case_location.source == "typed"
    assert case_location.latitude is None
    assert case_location.inside_boundary is None
    assert chat.stage() is FlowStage.CONFIRM
    (done,) = await chat.send("d'acord")
    assert body(done).startswith("Gràcies! Hem registrat el teu suggeriment")


@pytest.mark.parametrize(
    ("language", "word", "expected"),
    [
        ("ca", "cancel·lar", "He cancel·lat la incidència"),
        ("es", "Cancelar", "he cancelado la incidencia"),
    ],
)
@pytest.mark.parametrize("answers", [0, 1, 2, 3, 4])
async def test_cancel_at_any_step(flow, msg, store, language, word, expected, answers) -> None:
    chat = Chat(flow, msg, language)
    script = ["incidencia", "1", "No funciona la farola", "no", INSIDE][: answers + 1]
    for content in script:
        await chat.send(content)
    assert not chat.finished()
    (bye,) = await chat.send(word)
    assert chat.finished()
    assert expected.lower() in body(bye).lower()
    assert await store.list_cases() == []


async def test_no_at_confirmation_discards(flow, msg, store) -> None:
    chat = Chat(flow, msg, "es")
    for content in ["incidencia", "2", "Falta una baldosa", "no", "no lo sé"]:
        await chat.send(content)
    assert chat.stage() is FlowStage.CONFIRM
    (bye,) = await chat.send(InteractiveReply(reply_id="case:no", title="No"))
    assert chat.finished()
    assert body(bye).startswith("De acuerdo, no la enviamos")
    assert await store.list_cases() == []


@pytest.mark.parametrize(
    ("language", "again"),
    [("ca", "No he entès la categoria"), ("es", "No he entendido la categoría")],
)
async def test_a_wrong_category_answer_asks_again_with_the_options(
    flow, msg, language, again
) -> None:
    chat = Chat(flow, msg, language)
    await chat.send("incidencia")
    for wrong in ["pizza", "42", "0", InteractiveReply(reply_id="case:cat:nope", title="?")]:
        (menu,) = await chat.send(wrong)
        assert isinstance(menu, ListMenu)
        assert menu.body.startswith(again)
        assert len(menu.rows) == 9
        assert chat.stage() is FlowStage.CATEGORY
    await chat.send("parcs i jardins")
    assert chat.st.category == "parcs"
    assert chat.stage() is FlowStage.DESCRIPTION


async def test_few_categories_are_buttons(store, geocoder, clock, msg) -> None:
    config = CasesConfig.model_validate(
        {
            "categories": [
                {"id": "llum", "labels": {"ca": "Llum", "es": "Luz"}},
                {"id": "aigua", "labels": {"ca": "Aigua", "es": "Agua"}},
                {"id": "altres", "labels": {"ca": "Altres", "es": "Otros"}},
            ]
        }
    )
    chat = Chat(CaseFlow(config, store, geocoder, clock), msg, "es")
    (menu,) = await chat.send("sugerencia")
    assert isinstance(menu, Buttons)
    assert [b.title for b in menu.buttons] == ["Luz", "Agua", "Otros"]
    await chat.send(InteractiveReply(reply_id="case:cat:aigua", title="Agua"))
    assert chat.st.category == "aigua"


async def test_wrong_answers_at_later_steps_re_ask_politely(flow, msg) -> None:
    chat = Chat(flow, msg, "ca")
    await chat.send("incidència")
    await chat.send("1")
    sticker = Media(media_kind=MediaKind.STICKER, media_id="st1")
    again = await chat.send(sticker)
    assert chat.stage() is FlowStage.DESCRIPTION
    assert joined(again).startswith("Necessito una descripció escrita")
    await chat.send("Farola trencada")
    again = await chat.send(Media(media_kind=MediaKind.DOCUMENT, media_id="d1"))
    assert chat.stage() is FlowStage.MEDIA
    assert "Només puc afegir una foto o un vídeo" in joined(again)
    await chat.send("no")
    again = await chat.send(sticker)
    assert chat.stage() is FlowStage.LOCATION
    assert isinstance(again[-1], LocationRequest)
    await chat.send("no ho sé")
    again = await chat.send("potser")
    assert chat.stage() is FlowStage.CONFIRM
    assert joined(again).startswith("Respon «sí» per enviar-ho")


async def test_an_interrupted_flow_resumes_hours_later(flow, msg, clock: ManualClock) -> None:
    chat = Chat(flow, msg, "ca")
    await chat.send("queixa")
    await chat.send("3")
    clock.advance(timedelta(hours=3))
    contents = await chat.send("Els contenidors fa dies que no es buiden")
    assert body(contents[0]) == "Continuem amb la teva queixa. Per deixar-ho, escriu «cancel·lar»."
    assert isinstance(contents[1], Buttons)  # the next question: a photo?
    assert chat.stage() is FlowStage.MEDIA
    assert chat.st.updated_at == clock.now()

    clock.advance(timedelta(hours=5))
    contents = await chat.send(Media(media_kind=MediaKind.STICKER, media_id="s"))
    assert body(contents[0]) == "Continuem amb la teva queixa. Per deixar-ho, escriu «cancel·lar»."
    assert body(contents[1]).startswith("Si vols, envia una foto")  # asked again, not scolded
    assert "Només puc" not in joined(contents)
    assert chat.stage() is FlowStage.MEDIA


async def test_a_flow_older_than_the_expiry_expires_politely(flow, msg, clock, store) -> None:
    chat = Chat(flow, msg, "es")
    await chat.send("incidencia")
    await chat.send("2")
    clock.advance(timedelta(hours=25))
    contents = await chat.send("hola")
    assert chat.finished()
    assert not chat.handled()  # the keyword engine answers "hola"
    assert body(contents[0]).startswith("La incidencia que habías empezado ha caducado")

    await chat.send("incidencia")
    clock.advance(timedelta(hours=30))
    contents = await chat.send("incidencia")  # expired, and starts a new one at once
    assert chat.handled()
    assert "ha caducado" in body(contents[0])
    assert isinstance(contents[1], ListMenu)
    assert chat.stage() is FlowStage.CATEGORY
    assert await store.list_cases() == []


@pytest.mark.parametrize(
    ("language", "question"),
    [
        ("ca", "Aquest punt sembla fora de Mataró. És correcte?"),
        ("es", "Este punto parece fuera de Mataró. ¿Es correcto?"),
    ],
)
async def test_a_location_outside_the_boundary_is_questioned(flow, msg, language, question) -> None:
    chat = Chat(flow, msg, language)
    for content in ["incidencia", "2", "Hi ha un forat a la vorera", "no"]:
        await chat.send(content)
    (doubt,) = await chat.send(BARCELONA)
    assert isinstance(doubt, Buttons)
    assert doubt.body == question
    assert chat.stage() is FlowStage.CONFIRM_OUTSIDE

    (retry,) = await chat.send("no")
    assert isinstance(retry, LocationRequest)
    assert chat.stage() is FlowStage.LOCATION
    assert chat.st.location is None

    await chat.send(BARCELONA)
    (confirm,) = await chat.send("sí")
    assert chat.stage() is FlowStage.CONFIRM
    assert isinstance(confirm, Buttons)
    await chat.send("si")
    case = chat.case
    assert case is not None
    assert case.location is not None
    assert case.location.inside_boundary is False


async def test_a_typed_address_outside_the_boundary_is_questioned_too(flow, msg) -> None:
    chat = Chat(flow, msg, "ca")
    for content in ["incidencia", "2", "Forat", "no"]:
        await chat.send(content)
    (doubt,) = await chat.send("Passeig de Gràcia 1")
    assert chat.stage() is FlowStage.CONFIRM_OUTSIDE
    assert "fora de Mataró" in body(doubt)


async def test_a_photo_out_of_the_blue_starts_a_report_without_location(flow, msg, store) -> None:
    chat = Chat(flow, msg, "ca")
    photo = PHOTO.model_copy(update={"caption": "Arbre caigut al parc"})
    (menu,) = await chat.send(photo)
    assert isinstance(menu, ListMenu)
    assert chat.st.media[0].ref == "wa-media-1"
    assert chat.st.description == "Arbre caigut al parc"
    (where,) = await chat.send("parcs")  # description and photo are already there
    assert isinstance(where, LocationRequest)
    (confirm,) = await chat.send("No ho sé")
    assert "Ubicació: no indicada" in body(confirm)
    await chat.send("sí")
    case = chat.case
    assert case is not None
    assert case.location is None
    assert case.media[0].media_kind is MediaKind.IMAGE
    assert case.description == "Arbre caigut al parc"


async def test_a_location_out_of_the_blue_starts_a_report_and_is_reverse_geocoded(
    flow, msg, geocoder
) -> None:
    chat = Chat(flow, msg, "es")
    (menu,) = await chat.send(INSIDE)
    assert isinstance(menu, ListMenu)
    assert geocoder.reverse_calls == [(41.5385, 2.4447)]
    assert chat.st.location is not None
    assert chat.st.location.address == "Plaça de l'Ajuntament, Mataró"
    await chat.send("1")
    (media_q,) = await chat.send("Farola apagada")
    await chat.send(PHOTO)
    assert chat.stage() is FlowStage.CONFIRM  # the location was given at the start
    assert isinstance(media_q, Buttons)


async def test_a_photo_sent_early_is_kept_for_its_step(flow, msg) -> None:
    chat = Chat(flow, msg, "ca")
    await chat.send("incidència")
    contents = await chat.send(PHOTO)
    assert chat.stage() is FlowStage.CATEGORY
    assert isinstance(contents[-1], ListMenu)
    await chat.send("1")
    await chat.send("Farola")
    assert chat.stage() is FlowStage.LOCATION  # no second question about a photo


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("incidència", CaseKind.INCIDENT),
        ("INCIDENCIA", CaseKind.INCIDENT),
        ("insidencia", CaseKind.INCIDENT),
        ("Incidéncia!", CaseKind.INCIDENT),
        ("vull posar una queixa", CaseKind.COMPLAINT),
        ("quexa", CaseKind.COMPLAINT),
        ("Queja", CaseKind.COMPLAINT),
        ("suggeriment", CaseKind.SUGGESTION),
        ("sugerencia", CaseKind.SUGGESTION),
        ("sugerència", CaseKind.SUGGESTION),
        ("hola", None),
        ("horari bus", None),
        ("", None),
        ("ahir vaig veure que la web explica com posar una queixa formal", None),
    ],
)
def test_start_keywords_tolerate_typos_and_accents(text: str, kind: CaseKind | None) -> None:
    assert start_kind(text) is kind


async def test_other_messages_are_not_for_the_flow(flow, msg) -> None:
    for content in [
        Text(body="horari de la deixalleria"),
        Media(media_kind=MediaKind.VOICE, media_id="v"),
    ]:
        step = await flow.handle(None, msg(content), "ca")
        assert step.handled is False
        assert step.state is None
        assert step.contents == ()


async def test_status_query_in_both_languages(flow, msg, store, clock) -> None:
    chat = Chat(flow, msg, "ca")
    for content in ["incidència", "1", "Farola apagada", "no", "no ho sé", "sí"]:
        await chat.send(content)
    assert chat.case is not None
    reference = chat.case.reference

    (answer,) = await chat.send(f"estat {reference}")
    assert chat.finished()
    assert body(answer) == f"La incidència {reference} (Enllumenat públic) està rebuda."

    await store.update_status(
        reference, CaseStatus.RESOLVED, note="Bombeta canviada", actor="op:anna", at=clock.now()
    )
    (answer,) = await chat.send(f"Estado {reference.lower()}")
    assert body(answer) == (
        f"La incidencia {reference} (Alumbrado público) está resuelta.\nNota: Bombeta canviada"
    )

    stranger = Chat(flow, msg, "ca", sender="34600000999")
    (answer,) = await stranger.send(f"estat {reference}")
    assert "resolta" in body(answer)
    assert "Bombeta" not in body(answer)  # notes only for the citizen who reported it

    (answer,) = await chat.send("estat MTR-2026-009999")
    assert body(answer).startswith("No trobo cap cas amb el número MTR-2026-009999")
    (answer,) = await chat.send("estado")
    assert "estado MTR-2026-000123" in body(answer)


async def test_status_query_during_a_flow_keeps_the_flow(flow, msg) -> None:
    chat = Chat(flow, msg, "ca")
    await chat.send("incidència")
    await chat.send("1")
    contents = await chat.send("estat MTR-2026-000001")
    assert "No trobo cap cas" in body(contents[0])
    assert body(contents[1]) == "Explica'ns breument què passa."
    assert chat.stage() is FlowStage.DESCRIPTION


def test_unreadable_stored_state_is_dropped_not_fatal() -> None:
    assert FlowState.load(None) is None
    assert FlowState.load('{"stage": "nowhere"}') is None
    assert FlowState.load({"version": 1}) is None


async def test_stored_state_round_trips_through_conversation_data(flow, msg) -> None:
    chat = Chat(flow, msg, "ca")
    await chat.send(PHOTO)
    data = chat.st.to_data()
    assert data["stage"] == "category"
    assert FlowState.load(data) == chat.state


async def test_a_photo_with_caption_answers_the_description(flow, msg) -> None:
    chat = Chat(flow, msg, "ca")
    await chat.send("incidència")
    await chat.send("1")
    again = await chat.send(PHOTO)  # no caption: kept, the description is still asked
    assert chat.stage() is FlowStage.DESCRIPTION
    assert joined(again).startswith("Necessito una descripció escrita")
    assert len(chat.st.media) == 1
    video = Media(media_kind=MediaKind.VIDEO, media_id="vid-2", caption="Fanal tort")
    await chat.send(video)
    assert chat.st.description == "Fanal tort"
    assert len(chat.st.media) == 1  # the first one is kept; one is enough for a report
    assert chat.stage() is FlowStage.LOCATION


async def test_a_location_sent_early_is_kept_and_a_location_can_replace_the_photo(
    flow, msg
) -> None:
    chat = Chat(flow, msg, "ca")
    await chat.send("incidència")
    await chat.send(INSIDE)
    assert chat.stage() is FlowStage.CATEGORY
    assert chat.st.location_done
    await chat.send("1")
    await chat.send("Farola")
    (confirm,) = await chat.send("no")
    assert chat.stage() is FlowStage.CONFIRM
    assert isinstance(confirm, Buttons)

    other = Chat(flow, msg, "es", sender="34600000002")
    for content in ["incidencia", "1", "Farola"]:
        await other.send(content)
    await other.send(BARCELONA)  # a location instead of a photo: no photo, and on we go
    assert other.stage() is FlowStage.CONFIRM_OUTSIDE
    again = await other.send("quizás")
    assert body(again[0]).startswith("Responde «sí» si el punto es correcto")
    assert isinstance(again[1], Buttons)
    assert other.stage() is FlowStage.CONFIRM_OUTSIDE


inbound_contents = st.one_of(
    st.text(max_size=60).map(lambda t: Text(body=t)),
    st.sampled_from(
        [
            Text(body="sí"),
            Text(body="no"),
            Text(body="1"),
            Text(body="cancel·lar"),
            Text(body="estat MTR-2026-000001"),
            Text(body="estado XX-1-2"),
            PHOTO,
            INSIDE,
            BARCELONA,
            Media(media_kind=MediaKind.STICKER, media_id="s"),
            InteractiveReply(reply_id="case:yes", title="Sí"),
            InteractiveReply(reply_id="case:cat:parcs", title="Parcs"),
            InteractiveReply(reply_id="kw:bus", title="Bus"),
            Reaction(message_id="x", emoji="👍"),
            Unsupported(provider_type="poll"),
        ]
    ),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    script=st.lists(inbound_contents, min_size=1, max_size=12),
    language=st.sampled_from(["ca", "es", "en", None]),
)
async def test_any_sequence_of_messages_keeps_the_flow_sound(
    mataro_config, geocoder, script, language
) -> None:
    clock = ManualClock(datetime(2026, 3, 27, 9, 0, tzinfo=UTC))
    store = MemoryCaseStore()
    flow = CaseFlow(mataro_config, store, geocoder, clock)
    state: FlowState | None = None
    for n, content in enumerate([Text(body="incidència"), *script]):
        message = InboundMessage(
            channel="whatsapp",
            account="mataro",
            provider_message_id=f"p{n}",
            sender=Sender(id="34600000001"),
            timestamp=clock.now(),
            content=content,
        )
        step = await flow.handle(state, message, language)
        if step.state is not None:
            assert FlowState.load(step.state.to_data()) == step.state
        if step.case is not None:
            assert step.state is None
        assert step.handled or step.state is None
        state = step.state
        clock.advance(timedelta(minutes=7))
    created = await store.list_cases()
    assert len(created) <= 1 + len(script) // 5


async def test_the_reference_year_is_the_local_year(mataro_config, store, geocoder, msg) -> None:
    # 23:30 UTC on New Year's Eve is already 00:30 on 1 January in Mataró.
    clock = ManualClock(datetime(2026, 12, 31, 23, 30, tzinfo=UTC))
    chat = Chat(CaseFlow(mataro_config, store, geocoder, clock), msg, "ca")
    for content in ["incidència", "1", "Farola apagada", "no", "no ho sé", "sí"]:
        await chat.send(content)
    assert chat.case is not None
    assert chat.case.reference == "MTR-2027-000001"


# ---------------------------------------------------------------- how to stop, other questions

CANCEL_HINT = {
    "ca": "Per deixar-ho, escriu «cancel·lar».",
    "es": "Para dejarlo, escribe «cancelar».",
}


@pytest.mark.parametrize("language", ["ca", "es"])
async def test_the_first_question_and_every_question_asked_again_say_how_to_stop(
    flow, msg, language
) -> None:
    chat = Chat(flow, msg, language)
    hint = CANCEL_HINT[language]
    (menu,) = await chat.send("incidencia")
    assert isinstance(menu, ListMenu)
    assert menu.body.endswith(hint)
    (again,) = await chat.send("pizza")
    assert isinstance(again, ListMenu)
    assert again.body.endswith(hint)
    # An answer that fits moves on without repeating it...
    (question,) = await chat.send("1")
    assert hint not in body(question)
    # ...and a question asked again says it once more, the question itself last.
    contents = await chat.send(Media(media_kind=MediaKind.STICKER, media_id="s"))
    assert body(contents[0]).endswith(hint)
    assert hint not in body(contents[-1])
    assert joined(contents).count(hint) == 1
    (bye,) = await chat.send("cancel·lar" if language == "ca" else "cancelar")
    assert chat.finished()
    assert hint not in body(bye)


async def test_a_photo_out_of_the_blue_says_how_to_stop_too(flow, msg) -> None:
    chat = Chat(flow, msg, "es")
    (menu,) = await chat.send(PHOTO)
    assert isinstance(menu, ListMenu)
    assert menu.body.endswith(CANCEL_HINT["es"])


def _asks_about(*texts: str):
    return lambda text: text in texts


@pytest.mark.parametrize(
    ("language", "question", "notice"),
    [
        (
            "ca",
            "el temps",
            "D'acord, deixem la incidència aquí. Per tornar a començar, escriu «incidència».",
        ),
        (
            "es",
            "punto limpio",
            "De acuerdo, dejamos la incidencia aquí. Para volver a empezar, escribe «incidencia».",
        ),
    ],
)
async def test_another_question_instead_of_a_category_leaves_the_flow_for_the_keyword_engine(
    flow, msg, store, language, question, notice
) -> None:
    state = (await flow.handle(None, msg(Text(body="incidencia")), language)).state
    assert state is not None
    asks = _asks_about(question)
    step = await flow.handle(state, msg(Text(body=question)), language, other_request=asks)
    assert step.handled is False  # the caller's keyword engine answers the question
    assert step.state is None
    assert [body(c) for c in step.contents] == [notice]
    assert await store.list_cases() == []


async def test_a_category_a_report_word_or_a_non_question_is_no_other_request(
    flow, msg, clock
) -> None:
    asks = _asks_about("1", "parcs i jardins", "queixa", "pizza")  # would leave if asked
    state = (await flow.handle(None, msg(Text(body="incidencia")), "ca")).state
    assert state is not None
    # A report word while the category is asked: the citizen meant that kind of report.
    step = await flow.handle(state, msg(Text(body="queixa")), "ca", other_request=asks)
    assert step.handled
    assert step.state is not None
    assert step.state.kind is CaseKind.COMPLAINT
    assert step.state.stage is FlowStage.CATEGORY
    assert body(step.contents[0]).startswith("D'acord, registrem una queixa")
    # Not recognised by the caller: asked again, as before.
    pizza = await flow.handle(step.state, msg(Text(body="pizza2")), "ca", other_request=asks)
    assert pizza.handled
    assert body(pizza.contents[0]).startswith("No he entès la categoria")
    # Categories, by number or by name, win over the caller's predicate.
    for answer, category in [("1", "enllumenat"), ("parcs i jardins", "parcs")]:
        picked = await flow.handle(step.state, msg(Text(body=answer)), "ca", other_request=asks)
        assert picked.handled
        assert picked.state is not None
        assert picked.state.category == category
    # Past the category question a description is never taken for another question.
    assert picked.state is not None
    described = await flow.handle(picked.state, msg(Text(body="pizza")), "ca", other_request=asks)
    assert described.handled
    assert described.state is not None
    assert described.state.description == "pizza"


def test_other_keyword_tells_a_question_of_another_topic_from_words_of_a_report() -> None:
    catalog = Path(__file__).resolve().parents[2] / "examples" / "mataro" / "catalog.yaml"
    asks = other_keyword(KeywordEngine(load_catalog(catalog)))
    # Keywords of other topics (weather, services, transport), in Spanish and Catalan:
    for text in ["el tiempo", "punto limpio", "deixalleria", "horari bus", "previsió del temps"]:
        assert asks(text), text
    # Keywords of the reporting topics (where "incidència" and "queixa" live) are about the
    # report ("farola" while the category is asked), and no keyword at all is no question:
    for text in ["farola", "forat a la vorera", "contenidor ple", "incidència", "xyz qwerty", "1"]:
        assert not asks(text), text


_MATARO_ENGINE: list[KeywordEngine] = []


def _mataro_asks(text: str) -> bool:
    """Mataró's own ``other_keyword``: "soroll" and "ruido" are its noise keyword's words."""
    if not _MATARO_ENGINE:
        catalog = Path(__file__).resolve().parents[2] / "examples" / "mataro" / "catalog.yaml"
        _MATARO_ENGINE.append(KeywordEngine(load_catalog(catalog)))
    return other_keyword(_MATARO_ENGINE[0])(text)


@pytest.mark.parametrize(
    ("language", "answer"),
    [
        ("ca", "soroll"),  # singular, the label says "Sorolls i civisme"
        ("ca", "sorolls"),
        ("ca", "sorols"),  # one letter missing
        ("ca", "hi ha molt soroll al carrer"),
        ("es", "ruido"),  # singular, the label says "Ruidos y civismo"
        ("es", "ruídos"),
        ("es", "ruidso"),  # two letters swapped
        ("es", "hay mucho ruido en la calle"),
    ],
)
async def test_a_category_answered_in_the_singular_plural_or_with_a_typo_is_that_category(
    flow, msg, language, answer
) -> None:
    assert _mataro_asks(answer)  # also the noise keyword: the flow must not leave for it
    state = (await flow.handle(None, msg(Text(body="incidencia")), language)).state
    assert state is not None
    step = await flow.handle(state, msg(Text(body=answer)), language, other_request=_mataro_asks)
    assert step.handled
    assert step.state is not None
    assert step.state.category == "civisme"
    assert step.state.stage is FlowStage.DESCRIPTION
    expected = "Explica'ns breument" if language == "ca" else "Explícanos brevemente"
    assert body(step.contents[0]).startswith(expected)


@pytest.mark.parametrize(
    ("answer", "category"),
    [
        ("contenidor ple", "residus"),
        ("contenedor", "residus"),
        ("parc", "parcs"),
        ("semàfor", "senyals"),
        ("acera", "voreres"),
        ("altre", "altres"),
    ],
)
async def test_category_words_match_like_keywords_in_both_languages(
    flow, msg, answer, category
) -> None:
    state = (await flow.handle(None, msg(Text(body="incidencia")), "ca")).state
    step = await flow.handle(state, msg(Text(body=answer)), "ca")
    assert step.state is not None
    assert step.state.category == category


@pytest.mark.parametrize(
    "answer",
    [
        "pizza",  # no label word
        "sor",  # too short to forgive anything
        "soroll i contenidors",  # two categories as much: ask which one
        "els veïns fan soroll cada nit fins tard",  # a description, not a category
    ],
)
async def test_an_answer_that_names_no_single_category_is_asked_again(flow, msg, answer) -> None:
    state = (await flow.handle(None, msg(Text(body="incidencia")), "ca")).state
    step = await flow.handle(state, msg(Text(body=answer)), "ca")
    assert step.state is not None
    assert step.state.category is None
    assert step.state.stage is FlowStage.CATEGORY
    assert body(step.contents[0]).startswith("No he entès la categoria")


async def test_the_category_step_matches_an_answer_once(
    flow, msg, monkeypatch: pytest.MonkeyPatch
) -> None:
    from civicchat.cases.categories import pick_category
    from civicchat.keywords.normalize import content_tokens

    picks: list[str] = []

    def counted(categories: Any, message: InboundMessage) -> Any:
        picks.append(str(getattr(message.content, "body", "")))
        return pick_category(categories, message)

    monkeypatch.setattr("civicchat.cases.flow.pick_category", counted)
    state = (await flow.handle(None, msg(Text(body="incidencia")), "ca")).state
    assert state is not None
    # With the "another question?" check (other_request) as the bot asks it, and without.
    for asks in (lambda text: False, None):
        picks.clear()
        step = await flow.handle(state, msg(Text(body="sorolls")), "ca", other_request=asks)
        assert step.state is not None
        assert step.state.category == "civisme"
        assert picks == ["sorolls"]
    # The labels' words are worked out once per category, not for every answer.
    tokenised: list[str] = []

    def counted_tokens(text: str) -> Any:
        tokenised.append(text)
        return content_tokens(text)

    monkeypatch.setattr("civicchat.cases.categories.content_tokens", counted_tokens)
    picks.clear()
    again = await flow.handle(state, msg(Text(body="hi ha soroll")), "ca", other_request=None)
    assert again.state is not None
    assert again.state.category == "civisme"
    assert tokenised == ["hi ha soroll"]


# ------------------------------------------------ what the citizen already sent is not lost


@pytest.mark.parametrize(
    ("language", "question", "paused", "again"),
    [
        ("ca", "horari bus", "D'acord, deixem la incidència en pausa", "incidència"),
        ("es", "el tiempo", "De acuerdo, dejamos la incidencia en pausa", "incidencia"),
    ],
)
async def test_another_question_at_the_category_keeps_a_report_that_holds_something(
    flow, msg, clock, store, language, question, paused, again
) -> None:
    chat = Chat(flow, msg, language)
    await chat.send(PHOTO)  # starts the report, the photo kept
    await chat.send(INSIDE)
    assert chat.stage() is FlowStage.CATEGORY
    clock.advance(timedelta(minutes=2))
    step = await flow.handle(
        chat.state, msg(Text(body=question)), language, other_request=_mataro_asks
    )
    assert not step.handled  # the keyword engine answers the question
    assert [body(c) for c in step.contents] == [say("paused", language, kind=CaseKind.INCIDENT)]
    assert body(step.contents[0]).startswith(paused)
    assert step.state is not None  # paused, not dropped
    assert step.state.updated_at == clock.now()
    assert [m.ref for m in step.state.media] == ["wa-media-1"]
    assert step.state.location is not None
    # The citizen comes back: the trigger word shows the categories again, nothing was lost.
    chat.state = step.state
    (menu, *_) = await chat.send(again)
    assert isinstance(menu, ListMenu)
    await chat.send("1")
    await chat.send("La farola no s'encén")
    assert chat.stage() is FlowStage.CONFIRM  # photo and place already there
    await chat.send("sí")
    assert chat.case is not None
    assert [m.ref for m in chat.case.media] == ["wa-media-1"]
    assert chat.case.location is not None
    assert chat.case.location.latitude == INSIDE.latitude


async def test_a_paused_report_still_expires_as_usual(flow, msg, clock, mataro_config) -> None:
    chat = Chat(flow, msg, "es")
    await chat.send(Media(media_kind=MediaKind.IMAGE, media_id="p1", caption="Farola rota"))
    step = await flow.handle(
        chat.state, msg(Text(body="el tiempo")), "es", other_request=_mataro_asks
    )
    assert step.state is not None
    clock.advance(mataro_config.expiry + timedelta(minutes=1))
    later = await flow.handle(step.state, msg(Text(body="1")), "es", other_request=_mataro_asks)
    assert later.state is None
    assert body(later.contents[0]).startswith("La incidencia que habías empezado ha caducado")


async def test_another_question_at_the_category_still_leaves_an_empty_report(flow, msg) -> None:
    chat = Chat(flow, msg, "ca")
    await chat.send("incidència")
    step = await flow.handle(
        chat.state, msg(Text(body="horari bus")), "ca", other_request=_mataro_asks
    )
    assert not step.handled
    assert step.state is None
    assert body(step.contents[0]).startswith("D'acord, deixem la incidència aquí.")


@pytest.mark.parametrize(
    ("language", "got"),
    [
        ("ca", "Tinc la ubicació. Ara, quin tipus de problema és?"),
        ("es", "Tengo la ubicación. Ahora, ¿qué tipo de problema es?"),
    ],
)
async def test_a_location_at_the_category_step_is_acknowledged_not_misunderstood(
    flow, msg, language, got
) -> None:
    chat = Chat(flow, msg, language)
    await chat.send("incidencia")
    (menu,) = await chat.send(INSIDE)
    assert isinstance(menu, ListMenu)
    assert menu.body == got
    assert len(menu.rows) == 9  # the categories, listed again
    assert chat.stage() is FlowStage.CATEGORY
    assert chat.st.location is not None
    assert chat.st.location.latitude == INSIDE.latitude
    # A second place replaces the first: the latest is where the problem is.
    await chat.send(BARCELONA)
    assert chat.st.location is not None
    assert chat.st.location.latitude == BARCELONA.latitude
    await chat.send("1")
    await chat.send("Farola trencada")
    await chat.send("no")
    assert chat.stage() is FlowStage.CONFIRM_OUTSIDE  # the place kept, its step skipped


@pytest.mark.parametrize(
    ("language", "expected", "skip"),
    [
        (
            "ca",
            "Només puc afegir una foto o un vídeo en aquest pas; l'adreça te la demano després. "
            "Envia'n un o respon «no» per continuar sense foto.",
            "Sense foto",
        ),
        (
            "es",
            "Solo puedo añadir una foto o un vídeo en este paso; la dirección te la pido después. "
            "Envía uno o responde «no» para seguir sin foto.",
            "Sin foto",
        ),
    ],
)
async def test_an_address_typed_at_the_photo_step_gets_one_message_saying_how_to_skip(
    flow, msg, language, expected, skip
) -> None:
    chat = Chat(flow, msg, language)
    for answer in ["incidencia", "1", "Farola trencada"]:
        await chat.send(answer)
    assert chat.stage() is FlowStage.MEDIA
    contents = await chat.send("Carrer de la Riera 48")
    assert len(contents) == 1  # one bubble, not a scolding plus the whole question
    (again,) = contents
    assert isinstance(again, Buttons)
    assert again.body.startswith(expected)
    assert say("cancel_hint", language) in again.body
    assert [b.title for b in again.buttons] == [skip]
    assert chat.stage() is FlowStage.MEDIA
    assert chat.st.location is None  # not taken for the address: it is asked for next
    await chat.send(InteractiveReply(reply_id="case:skip", title=skip))
    assert chat.stage() is FlowStage.LOCATION
