"""The second QA pass of the Mataró service (2026-11): a Spanish conversation answered in Spanish
for words written the same in both languages, a request for a person sent to a person, and the
residents' parking card that is not the disabled-parking card."""

from __future__ import annotations

from pathlib import Path

import pytest

from civicchat.exceptions import CatalogError
from civicchat.keywords import AnswerKind, KeywordEngine, load_catalog, parse_catalog
from civicchat.keywords.matcher import AliasIndex, telling_words
from civicchat.keywords.to_person import TO_PERSON_PHRASES, PersonRequests, phrase_words
from civicchat.messages import Buttons, Text

MATARO = Path(__file__).resolve().parents[2] / "examples" / "mataro" / "catalog.yaml"

# The Mataró catalog as QA found it: 112, urgent, ibi and renfe listed under Catalan only.
_ONE_SIDED = """
languages: [ca, es]
keywords:
  - id: emergencies
    topic: police
    aliases:
      ca: [emergència, emergències, urgència, urgent, "112", bombers]
      es: [emergencia, emergencias, urgencia, bomberos]
    reply: {ca: "Truca al 112.", es: "Llama al 112."}
  - id: impostos
    topic: procedures
    aliases: {ca: [impostos, ibi, rebuts], es: [impuestos, recibos]}
    reply: {ca: "Impostos.", es: "Impuestos."}
  - id: tren
    topic: transport
    aliases: {ca: [tren, trens, rodalies, renfe], es: [tren, trenes, cercanías]}
    reply: {ca: "Tren.", es: "Tren."}
  - id: bus
    topic: transport
    aliases: {ca: [bus, busos, horari bus], es: [autobús, autobuses, horario bus]}
    reply: {ca: "Bus.", es: "Bus."}
"""
_SMALL = """
languages: [ca, es]
{extra}
keywords:
  - id: padro
    topic: procedures
    aliases: {{ca: [padró, empadronament], es: [padrón, empadronamiento]}}
    reply: {{ca: "Padró.", es: "Padrón."}}
"""


@pytest.fixture(scope="module")
def mataro() -> KeywordEngine:
    return KeywordEngine(load_catalog(MATARO))


@pytest.fixture(scope="module")
def one_sided() -> KeywordEngine:
    return KeywordEngine(parse_catalog(_ONE_SIDED))


def _body(contents: tuple[object, ...]) -> str:
    first = contents[0]
    assert isinstance(first, Text | Buttons)
    return first.body


# ----------------------------------------------------------------- 1. the reply language


@pytest.mark.parametrize(
    ("text", "keyword"),
    [("112", "emergencies"), ("IBI", "impostos"), ("renfe", "tren"), ("urgente", "emergencies")],
)
@pytest.mark.parametrize("known", ["ca", "es"])
def test_a_neutral_word_or_a_typo_keeps_the_known_language(
    one_sided: KeywordEngine, text: str, keyword: str, known: str
) -> None:
    # The rule alone, on a catalog that lists these words under Catalan only.
    found = one_sided.match(text, language=known)
    assert found is not None
    assert found.keyword_id == keyword
    assert found.language == known


@pytest.mark.parametrize(
    ("text", "known", "expected"),
    [
        ("busos", "es", "ca"),  # a Catalan plural of a word the keyword uses ("bus")
        ("trens", "es", "ca"),
        ("autobuses", "ca", "es"),
        ("trenes", "ca", "es"),
        ("bombers", "es", "ca"),  # its Spanish counterpart is spelt differently: "bomberos"
        ("urgent", "es", "ca"),  # written as is ("urgencia" in Spanish)
        ("horari bus", "es", "ca"),  # "horari": a word only Catalan writes
    ],
)
def test_a_word_that_shows_the_other_language_still_switches(
    one_sided: KeywordEngine, text: str, known: str, expected: str
) -> None:
    found = one_sided.match(text, language=known)
    assert found is not None
    assert found.language == expected


@pytest.mark.parametrize(("typo", "alias"), [("bomebros", "bomberos"), ("autobusess", "autobuses")])
def test_a_typo_reaching_a_telling_alias_does_not_switch(
    one_sided: KeywordEngine, typo: str, alias: str
) -> None:
    # "bomberos" and "autobuses" switch a Catalan conversation; a typo that reaches them does not.
    found = one_sided.match(typo, language="ca")
    assert found is not None
    assert (found.alias, found.exact, found.language) == (alias, False, "ca")
    written = one_sided.match(alias, language="ca")
    assert written is not None
    assert written.language == "es"


def test_telling_words_leave_out_digits_acronyms_and_names() -> None:
    languages = {"112": {"ca"}, "ibi": {"ca"}, "renfe": {"ca"}, "busos": {"ca"}, "r1": {"ca"}}
    words = {"ca": ["bus", "busos", "112", "ibi", "renfe", "r1"], "es": ["autobus", "tren"]}
    assert telling_words(["112", "ibi", "renfe", "r1"], "ca", languages, words) == frozenset()
    assert telling_words(["busos"], "ca", languages, words) == {"busos"}
    # A word that Spanish aliases use too is never telling, whatever its form.
    assert telling_words(["busos"], "ca", {"busos": {"ca", "es"}}, words) == frozenset()


def test_candidates_say_telling_only_for_words_written_as_is() -> None:
    index = AliasIndex(parse_catalog(_ONE_SIDED))
    (exact,) = [c for c in index.search("bombers") if c.keyword_id == "emergencies"]
    assert exact.telling_languages == {"ca"}
    (typo,) = [c for c in index.search("bomberss") if c.keyword_id == "emergencies"]
    assert typo.telling_languages == frozenset()
    (neutral,) = index.search("112")
    assert neutral.telling_languages == frozenset()


@pytest.mark.parametrize("text", ["112", "IBI", "renfe", "urgente", "emergencias"])
def test_the_mataro_web_chat_in_spanish_answers_in_spanish(
    mataro: KeywordEngine, text: str
) -> None:
    answer = mataro.answer(text, language="es")
    assert answer is not None
    assert answer.kind is AnswerKind.KEYWORD
    assert answer.language == "es"


def test_the_emergency_answer_comes_in_the_citizens_language(mataro: KeywordEngine) -> None:
    for text, known, words in (
        ("urgente", "es", "llama ahora al 112"),
        ("112", "es", "llama ahora al 112"),
        ("112", "ca", "truca ara al 112"),
        ("urgent", "ca", "truca ara al 112"),
        ("urgente", None, "llama ahora al 112"),  # the Spanish alias itself
    ):
        answer = mataro.answer(text, language=known)
        assert answer is not None
        assert words in _body(answer.contents), (text, known)


# ----------------------------------------------------------------- 2. a person, on request


@pytest.mark.parametrize(
    "text",
    [
        "Vull parlar amb una persona sobre el padró",
        "vull parlar amb algu del padro",
        "Puc parlar amb un operador?",
        "atenció personal",
        "Necessito atenció personalitzada per l'empadronament",
        "Quiero hablar con una persona sobre el padrón",
        "quiero hablar con alguien",
        "un operador por favor",
        "Atención personal, por favor",
        "no quiero hablar con un robot, es sobre el padrón",
    ],
)
def test_a_request_for_a_person_gets_no_keyword(mataro: KeywordEngine, text: str) -> None:
    assert mataro.asks_for_person(text) is not None
    assert mataro.match(text) is None
    assert mataro.match(text, language="es") is None
    assert mataro.answer(text) is None


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        ("padró", "padro"),
        ("Quiero el padrón", "padro"),
        ("targeta d'aparcament per a persones amb mobilitat reduïda", "targeta_pmr"),
        ("serveis socials", "serveis_socials"),
    ],
)
def test_other_messages_are_still_answered(mataro: KeywordEngine, text: str, keyword: str) -> None:
    assert mataro.asks_for_person(text) is None
    found = mataro.match(text)
    assert found is not None
    assert found.keyword_id == keyword


def test_the_phrases_exist_in_both_languages_and_all_have_words() -> None:
    assert set(TO_PERSON_PHRASES) == {"ca", "es"}
    for phrases in TO_PERSON_PHRASES.values():
        assert len(phrases) >= 10
        assert all(phrase_words(p) for p in phrases)
    assert phrase_words("Parlar amb una persona") == ("parlar", "persona")


def test_words_must_follow_each_other() -> None:
    requests = PersonRequests(TO_PERSON_PHRASES)
    assert requests.find("parlar amb una persona") == "parlar amb una persona"
    assert requests.find("una persona va parlar al ple") is None  # the words, not in order
    assert requests.find("") is None
    assert requests.find(42) is None  # type: ignore[arg-type]


def test_a_city_adds_its_own_phrases() -> None:
    extra = "to_person:\n  ca: [vull el gestor]\n  es: [quiero al gestor]"
    engine = KeywordEngine(parse_catalog(_SMALL.format(extra=extra)))
    assert engine.catalog.to_person == {"ca": ("vull el gestor",), "es": ("quiero al gestor",)}
    assert engine.asks_for_person("Vull el gestor del padró") == "vull el gestor"
    assert engine.answer("Quiero al gestor, padrón") is None
    assert engine.answer("padrón") is not None
    # The library's phrases still apply.
    assert engine.answer("hablar con alguien del padrón") is None


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("to_person:\n  ca: [una amb el]", "city.yaml:4: 'to_person' phrase 'una amb el' has only"),
        ("to_person:\n  fr: [parler]", "city.yaml:4: 'to_person': 'fr' is not a catalog language"),
        ("to_person:\n  ca: parlar", "city.yaml:4: 'to_person' [ca] must be a list"),
        ("to_person: [parlar]", "city.yaml:3: 'to_person' must be a mapping"),
        ("to_person:\n  ca: [padró]", "alias 'padró' asks for a person ('padró'"),
    ],
)
def test_bad_phrases_are_refused_with_their_line(extra: str, message: str) -> None:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(_SMALL.format(extra=extra), source="city.yaml")
    assert message in str(caught.value)


def test_an_alias_a_library_phrase_would_shadow_is_refused() -> None:
    text = _SMALL.format(extra="").replace("padró, empadronament", "padró, un operador")
    with pytest.raises(CatalogError) as caught:
        parse_catalog(text)
    assert "alias 'un operador' asks for a person ('un operador'" in str(caught.value)


# ----------------------------------------------------------------- 3. residents' parking


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Necesito saber cuándo puedo renovar la tarjeta de aparcamiento de residentes", "es"),
        ("Quan puc renovar la targeta d'aparcament de resident?", "ca"),
        ("tarjeta de residente", "es"),
    ],
)
def test_the_residents_parking_card_is_the_blue_zone_not_pmr(
    mataro: KeywordEngine, text: str, language: str
) -> None:
    found = mataro.match(text)
    assert found is not None
    assert found.keyword_id == "zona_blava"
    assert found.runner_up is None
    assert found.language == language


def test_the_disabled_parking_card_is_still_pmr(mataro: KeywordEngine) -> None:
    for text in ("tarjeta de aparcamiento", "targeta PMR", "tarjeta de aparcamiento discapacidad"):
        found = mataro.match(text)
        assert found is not None
        assert found.keyword_id == "targeta_pmr", text
