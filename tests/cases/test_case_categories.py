"""``civicchat.cases.categories``: which category an answer names, and the category menu."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from civicchat.cases.categories import (
    CATEGORY_PREFIX,
    category_by_words,
    category_menu,
    pick_category,
)
from civicchat.cases.config import CaseCategory, CasesConfig
from civicchat.keywords.normalize import normalize
from civicchat.messages import Buttons, InboundMessage, InteractiveReply, ListMenu, Location, Text

MessageFactory = Callable[..., InboundMessage]

THREE = (
    CaseCategory(id="enllumenat", labels={"ca": "Enllumenat públic", "es": "Alumbrado público"}),
    CaseCategory(id="civisme", labels={"ca": "Sorolls i civisme", "es": "Ruidos y civismo"}),
    CaseCategory(
        id="mobiliari-urba-de-la-ciutat",
        labels={"ca": "Mobiliari urbà de tota la ciutat", "es": "Mobiliario urbano de la ciudad"},
    ),
)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Enllumenat públic", "enllumenat"),  # the label, either language
        ("alumbrado publico", "enllumenat"),
        ("enllumenat public", "enllumenat"),  # no accents
        ("enllumenat publik", "enllumenat"),  # a typo in the whole name
        ("2", "civisme"),  # its number in a numbered list
        ("soroll", "civisme"),  # a word of the label, singular
        ("hi ha molt soroll al carrer", "civisme"),  # two other words at most, stop words aside
        ("ruido", "civisme"),
        ("sorols", "civisme"),  # a typo in a word
        ("4", None),  # no fourth category
        ("0", None),
        ("no", None),  # too short to be a name
        ("soroll i mobiliari", None),  # two categories as much
        ("els veïns fan soroll cada nit fins tard", None),  # a description
        ("el tiempo", None),
    ],
)
def test_an_answer_in_words_or_by_number(
    msg: MessageFactory, answer: str, expected: str | None
) -> None:
    picked = pick_category(THREE, msg(Text(body=answer)))
    assert (None if picked is None else picked.id) == expected


def test_a_tapped_row_is_its_category_and_an_unknown_row_none(msg: MessageFactory) -> None:
    tapped = InteractiveReply(reply_id=f"{CATEGORY_PREFIX}civisme", title="whatever")
    picked = pick_category(THREE, msg(tapped))
    assert picked is not None
    assert picked.id == "civisme"
    gone = InteractiveReply(reply_id=f"{CATEGORY_PREFIX}parcs", title="Parcs i jardins")
    assert pick_category(THREE, msg(gone)) is None


def test_a_message_without_text_names_no_category(msg: MessageFactory) -> None:
    assert pick_category(THREE, msg(Location(latitude=41.5, longitude=2.4))) is None


def test_the_mataro_categories_by_their_words(mataro_config: CasesConfig) -> None:
    categories = mataro_config.categories
    found = category_by_words(categories, normalize("contenidor ple"))
    assert found is not None
    assert found.id == "residus"
    assert category_by_words(categories, normalize("de la")) is None  # stop words only


@pytest.mark.parametrize("category", THREE, ids=[c.id for c in THREE])
@pytest.mark.parametrize("language", ["ca", "es"])
def test_every_label_word_of_one_category_alone_names_it(
    category: CaseCategory, language: str
) -> None:
    # A word only one category's names use is that category, in any case and with an "s" more.
    others = {
        word
        for other in THREE
        if other is not category
        for label in (*other.labels.values(), other.id)
        for word in normalize(label).split()
    }
    for word in normalize(category.labels[language]).split():
        if len(word) < 4 or word in others:
            continue
        for said in (word, word.upper(), f"{word}s"):
            found = category_by_words(THREE, normalize(said))
            assert found is category, said


def test_few_categories_are_buttons_many_a_list_with_short_titles() -> None:
    menu = category_menu(THREE, "Quina categoria?", "ca")
    assert isinstance(menu, Buttons)
    assert [b.id for b in menu.buttons] == [f"{CATEGORY_PREFIX}{c.id}" for c in THREE]
    assert menu.buttons[2].title == "Mobiliari urbà de t…"
    assert len(menu.buttons[2].title) == 20

    many = (*THREE, CaseCategory(id="altres", labels={"ca": "Altres", "es": "Otros"}))
    listed = category_menu(many, "¿Qué categoría?", "es")
    assert isinstance(listed, ListMenu)
    assert listed.button == "Categorías"
    rows = listed.sections[0].rows
    assert [r.title for r in rows][-1] == "Otros"
    assert rows[2].title == "Mobiliario urbano de la…"
    assert len(rows[2].title) == 24
    assert rows[2].description == "Mobiliario urbano de la ciudad"
    assert rows[3].description is None


def test_label_words_are_worked_out_once_per_category(
    mataro_config: CasesConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from civicchat.keywords.normalize import content_tokens

    fresh = CasesConfig.model_validate(mataro_config.model_dump())  # nothing cached yet
    worked_out: list[str] = []

    def counted(text: str) -> list[str]:
        worked_out.append(text)
        return list(content_tokens(text))

    monkeypatch.setattr("civicchat.cases.config.content_tokens", counted)
    assert category_by_words(fresh.categories, "hi ha soroll") is not None
    first = len(worked_out)
    assert first >= len(fresh.categories)  # every category's names, once
    for answer in ("hi ha soroll", "sorolls al carrer", "fanal"):
        category_by_words(fresh.categories, answer)
    assert len(worked_out) == first
    noise = next(c for c in fresh.categories if c.id == "civisme")
    assert "soroll" in noise.match_words or "sorolls" in noise.match_words
    assert noise.match_words is noise.match_words
