"""The QA walkthrough of the Mataró service (2026-11): reply language, generic words in real
questions, topic names, and the hint that a question in one's own words reaches a person."""

from __future__ import annotations

from pathlib import Path

import pytest

from civicchat.exceptions import CatalogError
from civicchat.keywords import AnswerKind, KeywordEngine, load_catalog, parse_catalog
from civicchat.messages import Buttons, Text

MATARO = Path(__file__).resolve().parents[2] / "examples" / "mataro" / "catalog.yaml"
HINT = {
    "ca": "escriu-nos la teva pregunta amb les teves paraules i et respondrà una persona del 010",
    "es": "escríbenos tu pregunta con tus palabras y te responderá una persona del 010",
}


@pytest.fixture(scope="module")
def mataro() -> KeywordEngine:
    return KeywordEngine(load_catalog(MATARO))


def _body(answer_contents: tuple[object, ...]) -> str:
    first = answer_contents[0]
    assert isinstance(first, Text | Buttons)
    return first.body


# ----------------------------------------------------------------- reply language


@pytest.mark.parametrize("text", ["bus", "BUS", "TV", "taxi", "Bus?"])
@pytest.mark.parametrize("known", ["ca", "es"])
def test_a_shared_word_keeps_the_known_language(
    mataro: KeywordEngine, text: str, known: str
) -> None:
    # "bus" is listed under ca only, but Spanish aliases use it too ("horario bus").
    answer = mataro.answer(text, language=known)
    assert answer is not None
    assert answer.kind is AnswerKind.KEYWORD
    assert answer.language == known
    assert HINT[known] in _body(answer.contents)


def test_with_no_known_language_the_alias_still_decides_as_before(mataro: KeywordEngine) -> None:
    found = mataro.match("bus")
    assert found is not None
    assert found.language == "ca"
    found = mataro.match("bus", hint="es-ES")  # a client setting only breaks ties
    assert found is not None
    assert found.language == "ca"


@pytest.mark.parametrize(
    ("text", "known", "expected"),
    [
        ("quin és l'horari del bus?", "es", "ca"),  # clearly Catalan
        ("busos", "es", "ca"),  # a word only Catalan aliases use
        ("¿horario del bus?", "ca", "es"),  # clearly Spanish
        ("autobuses", "ca", "es"),
        ("horario bus", "es", "es"),
    ],
)
def test_a_message_clearly_in_the_other_language_switches(
    mataro: KeywordEngine, text: str, known: str, expected: str
) -> None:
    found = mataro.match(text, language=known)
    assert found is not None
    assert found.keyword_id == "bus"
    assert found.language == expected


# ----------------------------------------------------------------- generic words in questions


@pytest.mark.parametrize(
    "text",
    [
        "Necesito ayuda con un papel del ayuntamiento, no encuentro dónde pedirlo",
        "Necessito ajuda amb un paper de l'ajuntament, no trobo on demanar-lo",
        "mi vecino tiene un perro que ladra toda la noche",
        "el meu veí té un gos que borda tota la nit",
    ],
)
def test_one_catalog_word_in_a_real_question_goes_to_a_person(
    mataro: KeywordEngine, text: str
) -> None:
    assert mataro.match(text) is None
    assert mataro.answer(text) is None


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        ("necessito un taxi per anar a l'hospital", "taxi"),  # one word and two more: still asks
        ("a quina hora tanca la deixalleria?", "deixalleria"),
        ("he trobat un gos perdut", "animals"),  # a two-word alias tolerates three more
        ("ayuntamiento", "oac"),
        ("perro", "animals"),
    ],
)
def test_short_questions_around_one_word_still_answer(
    mataro: KeywordEngine, text: str, keyword: str
) -> None:
    found = mataro.match(text)
    assert found is not None
    assert found.keyword_id == keyword


# ----------------------------------------------------------------- topic names


@pytest.mark.parametrize(
    ("text", "known", "language", "heading"),
    [
        ("cultura", None, "ca", "*Cultura*"),
        ("Cultura", "es", "es", "*Cultura*"),
        ("Transporte", None, "es", "*Transporte*"),
        ("transport", None, "ca", "*Transport*"),
        ("transport", "es", "es", "*Transporte*"),  # the name alone does not switch
        ("cultrua", None, "ca", "*Cultura*"),  # a typo
        ("la cultura", None, "ca", "*Cultura*"),
        ("Incidencias en la vía pública", None, "es", "*Incidencias en la vía pública*"),
    ],
)
def test_a_topic_name_alone_answers_that_part_of_the_index(
    mataro: KeywordEngine, text: str, known: str | None, language: str, heading: str
) -> None:
    answer = mataro.answer(text, language=known)
    assert answer is not None
    assert answer.kind is AnswerKind.INDEX
    assert answer.language == language
    body = "\n".join(_body((c,)) for c in answer.contents)
    assert heading in body
    assert body.count("\n*") == 1  # the header, then one topic only
    assert mataro.index(language, answer_topic(mataro, heading, language))[0] == body


def answer_topic(engine: KeywordEngine, heading: str, language: str) -> str:
    for topic in engine.catalog.topic_order():
        if f"*{engine.catalog.topic_name(topic, language)}*" == heading:
            return topic
    raise AssertionError(heading)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("temps", AnswerKind.KEYWORD),  # a keyword's own alias stays that keyword
        ("Turismo", AnswerKind.KEYWORD),
        ("policia", AnswerKind.KEYWORD),
        ("policai", AnswerKind.KEYWORD),  # a typo: the keyword's before the topic's
        ("media", None),  # a topic id is not a name citizens see
        ("m'agrada molt la cultura d'aquesta ciutat", None),
    ],
)
def test_keywords_win_over_topic_names_and_ids_are_not_names(
    mataro: KeywordEngine, text: str, kind: AnswerKind | None
) -> None:
    answer = mataro.answer(text)
    assert (answer.kind if answer is not None else None) is kind


# ----------------------------------------------------------------- the hint to reach a person

_SMALL = """
languages: [ca, es]
{texts}keywords:
  - id: bus
    topic: transport
    aliases: {{ca: [bus], es: [autobús]}}
    reply: {{ca: "Bus urbà.", es: "Bus urbano."}}
    buttons: [{{keyword: tren}}]
  - id: tren
    topic: transport
    aliases: {{ca: [tren], es: [tren]}}
    reply: {{ca: "Rodalies.", es: "Cercanías."}}
"""


def test_keyword_answers_end_with_the_catalogs_hint_in_their_language() -> None:
    texts = 'texts:\n  human_hint: {ca: "Escriu-nos i et respondrem.", es: "Escríbenos."}\n'
    engine = KeywordEngine(parse_catalog(_SMALL.format(texts=texts)))
    ca = engine.answer("bus")
    assert ca is not None
    assert _body(ca.contents) == "Bus urbà.\n\nEscriu-nos i et respondrem."
    es = engine.answer("autobús")
    assert es is not None
    assert _body(es.contents) == "Bus urbano.\n\nEscríbenos."
    picked = engine.answer_choice("kw:tren", language="es")
    assert picked is not None
    assert _body(picked.contents) == "Cercanías.\n\nEscríbenos."
    # The index and "Volia dir...?" are not keyword answers: no hint there.
    index = engine.answer("paraules clau")
    assert index is not None
    assert "Escriu-nos" not in _body(index.contents)
    # The operators' preview of a reply is the reply alone.
    assert engine.render_reply("bus", "ca") == "Bus urbà."


def test_without_a_hint_in_the_catalog_answers_are_unchanged() -> None:
    engine = KeywordEngine(parse_catalog(_SMALL.format(texts="")))
    answer = engine.answer("bus")
    assert answer is not None
    assert _body(answer.contents) == "Bus urbà."


def test_a_hint_missing_a_language_is_refused_with_its_line() -> None:
    texts = 'texts:\n  human_hint: {ca: "Escriu-nos."}\n'
    with pytest.raises(CatalogError) as caught:
        parse_catalog(_SMALL.format(texts=texts), source="city.yaml")
    assert "city.yaml:4: 'texts' human_hint has no text in es" in str(caught.value)


def test_the_mataro_hint_speaks_as_tu_in_both_languages(mataro: KeywordEngine) -> None:
    for text, lang in (("deixalleria", "ca"), ("punto limpio", "es")):
        answer = mataro.answer(text)
        assert answer is not None
        assert answer.language == lang
        assert _body(answer.contents).endswith(HINT[lang] + ".")


def test_topic_names_are_found_by_name_not_by_id() -> None:
    from civicchat.keywords.index import TopicNames, find_topic_name

    catalog = load_catalog(MATARO)
    assert find_topic_name(["cultura"], catalog) == ("culture", frozenset({"ca", "es"}), True)
    names = TopicNames(catalog)
    assert names.find(["transporte"]) == ("transport", frozenset({"es"}), True)
    assert names.find(["cultrua"]) == ("culture", frozenset({"ca", "es"}), False)
    assert names.find(["media"]) is None  # an id
    assert names.find(["tv"]) is None  # part of a name ("TV i ràdio") is not the name
    assert names.find(["vull", "saber", "coses", "de", "cultura", "i", "de", "festes"]) is None
    assert TopicNames(parse_catalog(_SMALL.format(texts=""))).find(["transport"]) is None
