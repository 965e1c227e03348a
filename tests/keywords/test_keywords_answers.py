from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from civicchat.keywords import AnswerKind, Catalog, KeywordEngine, parse_catalog
from civicchat.keywords.index import build_index, split_text
from civicchat.messages import Buttons, Location, Media, MediaKind, Text


def test_keyword_answer_text_with_preview(engine: KeywordEngine) -> None:
    answer = engine.answer("rodalies")
    assert answer is not None
    assert answer.kind is AnswerKind.KEYWORD
    assert answer.match is not None
    assert answer.match.keyword_id == "tren"
    assert answer.contents == (
        Text(body="Horaris de Rodalies R1: https://example.org/ca/tren", preview_url=True),
    )


def test_preview_can_be_switched_off(engine: KeywordEngine) -> None:
    answer = engine.answer("lluvia")
    assert answer is not None
    assert answer.language == "es"
    assert answer.contents == (
        Text(body="La previsión del tiempo: https://example.org/tiempo", preview_url=False),
    )


def test_buttons_ride_on_the_reply_and_answer_the_other_keyword(engine: KeywordEngine) -> None:
    answer = engine.answer("autobuses")
    assert answer is not None
    (content,) = answer.contents
    assert isinstance(content, Buttons)
    assert content.body.startswith("Líneas y horarios del bus urbano")
    assert [(b.id, b.title) for b in content.buttons] == [("kw:bus_nit", "Bus nocturno")]
    chosen = engine.answer_choice(content.buttons[0].id, language=answer.language)
    assert chosen is not None
    assert chosen.match is not None
    assert chosen.match.keyword_id == "bus_nit"
    assert chosen.contents == (
        Text(body="El bus nocturno sale cada hora de la plaza de Santa Anna.", preview_url=False),
    )


def test_answer_choice_accepts_the_bare_id_and_refuses_unknown_ids(engine: KeywordEngine) -> None:
    answer = engine.answer_choice("tren", language="fr")
    assert answer is not None
    assert answer.language == "ca"  # an unknown language falls back to the catalog default
    assert engine.answer_choice("kw:nope", language="ca") is None


def test_location_follows_the_reply_text(engine: KeywordEngine) -> None:
    answer = engine.answer("grua")
    assert answer is not None
    text, location = answer.contents
    assert isinstance(text, Text)
    assert isinstance(location, Location)
    assert location.name == "Dipòsit municipal"
    assert location.address == "Carrer d'Exemple, 1, 08301 Mataró"
    assert (location.latitude, location.longitude) == (41.5381, 2.4445)


def test_media_follows_the_reply_and_dates_render_in_the_reply_language(
    engine: KeywordEngine,
) -> None:
    answer = engine.answer("on és la deixalleria?")
    assert answer is not None
    text, media = answer.contents
    assert isinstance(text, Text)
    assert text.body.endswith("Avui és 27 de març del 2026.")
    assert isinstance(media, Media)
    assert media.media_kind is MediaKind.DOCUMENT
    assert media.link == "https://example.org/deixalleria.pdf"
    assert media.caption == "Què s'hi pot portar"
    assert media.filename == "deixalleria.pdf"
    spanish = engine.answer("punto limpio")
    assert spanish is not None
    assert isinstance(spanish.contents[0], Text)
    assert spanish.contents[0].body.endswith("Hoy es 27 de marzo de 2026.")


def test_context_name_now_and_office_hours(engine: KeywordEngine) -> None:
    answer = engine.answer("agenda", context={"name": "Núria"})
    assert answer is not None
    assert isinstance(answer.contents[0], Text)
    assert answer.contents[0].body.startswith("Hola Núria! L'agenda")
    answer = engine.answer(
        "atención ciudadana",
        context={"office_hours": {"ca": "de 8 a 19 h", "es": "de lunes a viernes de 8 a 19 h"}},
    )
    assert answer is not None
    assert answer.contents[0] == Text(body="La OAC atiende de lunes a viernes de 8 a 19 h.")


def test_now_from_the_context_is_shown_in_the_city_time_zone(small_catalog: Catalog) -> None:
    catalog = parse_catalog(
        """
languages: [ca, es]
keywords:
  - id: hora
    topic: t
    aliases: {ca: [hora], es: [hora]}
    reply: {ca: "Són les {{ now | time }} del {{ now | date('short') }}.", es: "Son las {{ now | time }}."}
"""
    )
    engine = KeywordEngine(catalog)
    at = datetime(2026, 7, 1, 22, 5, tzinfo=UTC)
    assert engine.render_reply("hora", "ca", {"now": at}) == "Són les 0:05 del 2/7/26."
    assert engine.render_reply("hora", "es", {"now": at}) == "Son las 0:05."
    assert engine.render_reply("nope", "ca") is None


def test_templates_cannot_escape_the_sandbox() -> None:
    catalog = parse_catalog(
        """
languages: [ca]
keywords:
  - id: x
    topic: t
    aliases: {ca: [prova]}
    reply: "{{ name.__class__.__mro__[1].__subclasses__() }}"
"""
    )
    engine = KeywordEngine(catalog)
    answer = engine.answer("prova", context={"name": "Anna"})
    assert answer is not None
    assert isinstance(answer.contents[0], Text)
    assert "class" not in answer.contents[0].body


def test_a_near_tie_asks_which_one(engine: KeywordEngine) -> None:
    answer = engine.answer("bus o tren?")
    assert answer is not None
    assert answer.kind is AnswerKind.CLARIFY
    (content,) = answer.contents
    assert isinstance(content, Buttons)
    assert content.body == "Volia dir...?"
    assert sorted(b.id for b in content.buttons) == ["kw:bus", "kw:tren"]
    assert "Bus urbà" in [b.title for b in content.buttons]


def test_no_answer_for_a_person(engine: KeywordEngine) -> None:
    assert engine.answer("vull parlar amb una persona sobre una multa que m'han posat") is None


@pytest.mark.parametrize(
    ("text", "language", "topic"),
    [
        ("PARAULES CLAU", "ca", None),
        ("paraules clau", "ca", None),
        ("Paraula clau", "ca", None),
        ("paraules clao", "ca", None),
        ("parules clau", "ca", None),
        ("PALABRAS CLAVE", "es", None),
        ("palabras claves", "es", None),
        ("palabras clabe", "es", None),
        ("paraules clau transport", "ca", "transport"),
        ("PALABRAS CLAVE transporte", "es", "transport"),
        ("paraules clau serveis", "ca", "services"),
        ("paraules clau temps", "ca", "weather"),
        ("Bon dia! Quines són les paraules clau?", "ca", None),
        ("hola, me pasas las palabras clave de transporte?", "es", "transport"),
    ],
)
def test_the_index_is_asked_for(
    engine: KeywordEngine, text: str, language: str, topic: str | None
) -> None:
    answer = engine.answer(text)
    assert answer is not None
    assert answer.kind is AnswerKind.INDEX
    assert answer.language == language
    bodies = [c.body for c in answer.contents if isinstance(c, Text)]
    assert bodies == engine.index(language, topic)


@pytest.mark.parametrize(
    "text",
    [
        "paraules clau de la festa major del poble",
        "he oblidat les paraules clau del wifi de la biblioteca",
    ],
)
def test_the_index_phrase_inside_another_request_is_not_an_index_request(
    engine: KeywordEngine, text: str
) -> None:
    answer = engine.answer(text)
    assert answer is None or answer.kind is not AnswerKind.INDEX


def test_index_content(engine: KeywordEngine) -> None:
    (ca,) = engine.index("ca")
    assert ca.startswith("*Paraules clau*")
    assert "*Transport*\n• BUS: Bus urbà\n• BUS NOCTURN\n• TREN\n" in ca  # no title twice
    assert "*Serveis*" in ca
    assert "PARAULES CLAU TRANSPORT" in ca
    (es,) = engine.index("es", "transport")
    assert "*Transporte*" in es
    assert "*Servicios*" not in es
    assert "• AUTOBÚS: Bus urbano" in es
    assert engine.index("ca", "nope") == []


def test_the_index_splits_cleanly_when_longer_than_the_channel_allows(
    small_catalog: Catalog,
) -> None:
    whole = "\n\n".join(build_index(small_catalog, "ca"))
    pages = build_index(small_catalog, "ca", max_length=120)
    assert len(pages) > 1
    assert all(0 < len(p) <= 120 for p in pages)
    # Nothing is lost or cut in the middle of a line.
    assert {line for p in pages for line in p.split("\n") if line} == {
        line for line in whole.split("\n") if line
    }


def test_split_text_cuts_words_only_when_a_word_is_too_long() -> None:
    assert split_text("abc", 10) == ["abc"]
    assert split_text("aaa bbb\n\nccc", 7) == ["aaa bbb", "ccc"]
    assert split_text("aaaa bbbb cccc", 9) == ["aaaa bbbb", "cccc"]
    assert split_text("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]


def test_long_replies_are_split_to_max_length() -> None:
    long_reply = "\n\n".join(f"Paràgraf {i}: " + "text " * 30 for i in range(10))
    catalog = parse_catalog(
        "languages: [ca]\nkeywords:\n  - id: llarg\n    topic: t\n    aliases: {ca: [llarg]}\n"
        f"    reply: {long_reply!r}\n"
    )
    answer = KeywordEngine(catalog).answer("llarg", max_length=400)
    assert answer is not None
    assert len(answer.contents) > 1
    assert all(isinstance(c, Text) and len(c.body) <= 400 for c in answer.contents)


def test_reload_swaps_the_catalog(engine: KeywordEngine, small_catalog: Catalog) -> None:
    other = parse_catalog(
        "languages: [es]\nkeywords:\n  - id: playa\n    topic: t\n    aliases: {es: [playa]}\n"
        "    reply: Playas.\n"
    )
    engine.reload(other)
    assert engine.catalog is other
    assert engine.match("bus") is None
    found = engine.match("playas")
    assert found is not None
    assert found.language == "es"
    engine.reload(small_catalog)
    assert engine.match("playa") is None


@pytest.mark.parametrize(
    "template",
    ["{{ 1 / 0 }}", "{{ name + 1 }}", "{{ name.__class__.__base__ }}", "{{ now.nothing.deeper }}"],
)
def test_a_template_failing_at_run_time_still_answers(template: str) -> None:
    catalog = parse_catalog(
        "languages: [ca]\nkeywords:\n  - id: x\n    topic: t\n    aliases: {ca: [prova]}\n"
        f"    reply: 'Obert de 9 a 14 h. {template}'\n"
    )
    answer = KeywordEngine(catalog).answer("prova", context={"name": "Anna"})
    assert answer is not None
    (content,) = answer.contents
    assert isinstance(content, Text)
    assert content.body.startswith("Obert de 9 a 14 h.")
    assert "{{" not in content.body


# --------------------------------------------------------------------------- one bubble

RICH = """\
languages: [ca, es]
texts:
  see_also: {ca: "Mira també:", es: "Mira también:"}
keywords:
  - id: planol
    topic: t
    aliases: {ca: [plànol], es: [plano]}
    reply: {ca: "El plànol", es: "El plano"}
    media: {kind: image, url: "https://example.org/p.png", caption: "Plànol"}
    buttons: [{keyword: tren}]
  - id: tren
    topic: t
    aliases: {ca: [tren], es: [tren]}
    reply: "Rodalies"
  - id: oac
    topic: t
    aliases: {ca: [oac], es: [oac]}
    reply: {ca: "L'OAC", es: "La OAC"}
    location: {latitude: 41.5, longitude: 2.4}
    media: {kind: document, url: "https://example.org/oac.pdf"}
    buttons: [{keyword: tren}]
  - id: audio
    topic: t
    aliases: {ca: [audioguia], es: [audioguía]}
    reply: "Escolta"
    media: {kind: audio, url: "https://example.org/a.mp3"}
    buttons: [{keyword: tren}]
"""


def test_the_mataro_bus_is_one_message_with_its_plan_and_buttons() -> None:
    from civicchat.keywords import load_catalog

    engine = KeywordEngine(load_catalog("examples/mataro/catalog.yaml"))
    answer = engine.answer("horari bus")
    assert answer is not None
    (bubble,) = answer.contents
    assert isinstance(bubble, Buttons)
    assert bubble.body.startswith("🚌 Línies, horaris i parades de Mataró Bus")
    assert bubble.header is None
    assert bubble.media == Media(
        media_kind=MediaKind.DOCUMENT,
        link="https://www.mataro.cat/ca/la-ciutat/mobilitat/transport-public/mataro-bus/planol-xarxa-mataro-bus.pdf",
        filename="planol-xarxa-mataro-bus.pdf",
    )  # its caption moved to the footer (below), said once
    assert [(b.id, b.title) for b in bubble.buttons] == [
        ("kw:targetes_transport", "Targetes i tarifes"),
        ("kw:bus_interurba", "Bus interurbà"),
        ("kw:tren", "Tren"),
    ]
    # A header file shows only its name: its caption goes in the footer, not lost.
    assert bubble.footer == "Plànol de la xarxa de Mataró Bus"


def test_a_file_caption_too_long_for_a_footer_goes_above_the_text() -> None:
    long_caption = "Plànol de la xarxa, amb totes les línies i parades de l'any 2026"
    assert len(long_caption) > 60  # WhatsApp's footer limit
    engine = KeywordEngine(
        parse_catalog(RICH.replace('caption: "Plànol"', f'caption: "{long_caption}"'))
    )
    answer = engine.answer("plànol")
    assert answer is not None
    (bubble,) = answer.contents
    assert isinstance(bubble, Buttons)
    assert bubble.footer is None
    assert bubble.body == f"{long_caption}\n\nEl plànol"
    short = KeywordEngine(parse_catalog(RICH)).answer("plànol")
    assert short is not None
    assert short.contents[0].footer == "Plànol"  # type: ignore[union-attr]


def test_an_image_with_buttons_is_one_message_and_a_long_text_keeps_the_split() -> None:
    engine = KeywordEngine(parse_catalog(RICH))
    answer = engine.answer("plànol")
    assert answer is not None
    (bubble,) = answer.contents
    assert isinstance(bubble, Buttons)
    assert bubble.body == "El plànol"
    assert bubble.media is not None
    assert bubble.media.media_kind is MediaKind.IMAGE
    # Over the 1,024 characters a message with buttons may carry: text, media, "see also".
    long_engine = KeywordEngine(parse_catalog(RICH.replace('"El plànol"', '"' + "x " * 600 + '"')))
    answer = long_engine.answer("plànol")
    assert answer is not None
    kinds = [c.kind for c in answer.contents]
    assert kinds == ["text", "media", "buttons"]
    last = answer.contents[-1]
    assert isinstance(last, Buttons)
    assert last.body == "Mira també:"
    assert last.media is None


def test_a_location_or_an_audio_keeps_todays_split() -> None:
    engine = KeywordEngine(parse_catalog(RICH))
    oac = engine.answer("oac")
    assert oac is not None
    assert [c.kind for c in oac.contents] == ["text", "location", "media", "buttons"]
    audio = engine.answer("audioguia")
    assert audio is not None
    assert [c.kind for c in audio.contents] == ["text", "media", "buttons"]
    see_also = audio.contents[-1]
    assert isinstance(see_also, Buttons)
    assert see_also.body == "Mira també:"


def test_the_split_uses_the_library_words_when_the_catalog_has_none() -> None:
    catalog = parse_catalog(
        RICH.replace('texts:\n  see_also: {ca: "Mira també:", es: "Mira también:"}\n', "")
    )
    for language, words in (("ca", "Vegeu també:"), ("es", "Ver también:")):
        answer = KeywordEngine(catalog).answer_choice("audio", language=language)
        assert answer is not None
        see_also = answer.contents[-1]
        assert isinstance(see_also, Buttons)
        assert see_also.body == words


LINK = "https://www.mataro.cat/ca/tramits-i-gestions/padro-municipal-d-habitants/alta"


def _long_link_reply(lang: str) -> str:
    word = "paraula" if lang == "ca" else "palabra"
    # Up to just before 4,096 characters, so that the link straddles WhatsApp's text limit.
    words = " ".join(f"{word}{i}" for i in range(450))[:4070].rsplit(" ", 1)[0]
    return f"{words} {LINK} .\n\nMés: {LINK}/requisits"


@pytest.mark.parametrize("lang", ["ca", "es"])
def test_a_long_link_reply_with_buttons_fits_whatsapp_and_keeps_its_link(lang: str) -> None:
    from civicchat.channels.degrade import degrade
    from civicchat.channels.whatsapp import WHATSAPP_CAPABILITIES

    reply = _long_link_reply(lang)
    assert len(reply) > 4096
    assert 4040 < reply.index(LINK) < 4096 < reply.index(LINK) + len(LINK)
    catalog = parse_catalog(
        "languages: [ca, es]\nkeywords:\n"
        "  - id: padro\n    topic: t\n    aliases: {ca: [padró], es: [padrón]}\n"
        f"    reply: {{ca: {json.dumps(reply)}, es: {json.dumps(reply)}}}\n"
        "    buttons: [{keyword: tren}]\n"
        "  - id: tren\n    topic: t\n    aliases: {ca: [tren], es: [tren]}\n    reply: Rodalies\n"
    )
    answer = KeywordEngine(catalog).answer("padró" if lang == "ca" else "padrón", language=lang)
    assert answer is not None
    sent = [p for c in answer.contents for p in degrade(c, WHATSAPP_CAPABILITIES, lang)]
    texts = [p for p in sent if isinstance(p, Text)]
    assert len(texts) == 2
    assert all(0 < len(t.body) <= WHATSAPP_CAPABILITIES.max_text_length for t in texts)
    # Cut between words, nothing lost, the link whole in one message and previewed.
    assert " ".join(t.body for t in texts).split() == reply.split()
    assert sum(t.body.count(LINK) for t in texts) == 2
    assert texts[1].body.startswith(LINK)
    assert all(t.preview_url for t in texts)
    (buttons,) = [p for p in sent if isinstance(p, Buttons)]
    assert [b.id for b in buttons.buttons] == ["kw:tren"]
    assert sent[-1] is buttons  # the buttons come after the whole text
