"""Which category a citizen's answer names, and the menu that offers the categories.

An answer is a category when it is the tap on the category's button or row, its number in the
list (for channels that show buttons as a numbered list), a close spelling of a label or id
("enllumenat public"), or uses a label's words as the keyword engine matches them: singular or
plural ("soroll" for "Sorolls i civisme", "ruido" for "Ruidos y civismo"), small typos
("sorols"), stop words aside::

    category = pick_category(config.categories, message)   # CaseCategory | None

The text is folded with the keyword engine's normalisation (:func:`civicchat.cases._text.fold`),
so accents, case and elisions never matter.
"""

from __future__ import annotations

from collections.abc import Sequence

from rapidfuzz import fuzz
from rapidfuzz.distance import OSA

from civicchat.cases._answers import reply_id, text_of
from civicchat.cases._text import fold, short
from civicchat.cases.config import CaseCategory
from civicchat.cases.texts import say
from civicchat.keywords.matcher import singular_forms, typo_tolerance
from civicchat.keywords.normalize import content_tokens
from civicchat.messages import Buttons, InboundMessage, ListMenu, ListRow, ListSection, ReplyButton

__all__ = ["CATEGORY_PREFIX", "category_by_words", "category_menu", "pick_category"]

#: The prefix of a category button's or row's id: ``case:cat:<category id>``.
CATEGORY_PREFIX = "case:cat:"

# A category answer by its words ("soroll" for "Sorolls i civisme") has at most this many
# other words, like a keyword request ("hi ha soroll al carrer"); more is a description.
_MAX_OTHER_CATEGORY_WORDS = 2
# A whole answer this close to a label or id (rapidfuzz, 0-100) is that category.
_CLOSE_SPELLING = 85
_BUTTON_TITLE_MAX = 20
_ROW_TITLE_MAX = 24
_MAX_LIST_ROWS = 10
_MAX_BUTTONS = 3


def pick_category(
    categories: Sequence[CaseCategory], message: InboundMessage
) -> CaseCategory | None:
    """The category ``message`` answers with, or None when it names none or several equally."""
    reply = reply_id(message)
    if reply is not None and reply.startswith(CATEGORY_PREFIX):
        wanted = reply.removeprefix(CATEGORY_PREFIX)
        return next((c for c in categories if c.id == wanted), None)
    text = text_of(message)
    if text is None:
        return None
    folded = fold(text)
    if folded.isdigit():
        index = int(folded) - 1
        return categories[index] if 0 <= index < len(categories) else None
    if len(folded) < 3:
        return None
    scored: list[tuple[float, CaseCategory]] = []
    for category in categories:
        best = max(
            max(fuzz.ratio(folded, name), fuzz.token_set_ratio(folded, name))
            for name in category.match_names
        )
        scored.append((best, category))
    scored.sort(key=lambda pair: pair[0], reverse=True)
    if scored[0][0] < _CLOSE_SPELLING or (len(scored) > 1 and scored[1][0] == scored[0][0]):
        return category_by_words(categories, folded)
    return scored[0][1]


def category_by_words(categories: Sequence[CaseCategory], folded: str) -> CaseCategory | None:
    """The one category whose label words the (folded) answer uses, as the keyword engine
    matches: singular or plural ("soroll", "sorolls"), small typos ("sorols"), stop words aside.

    None when no category's words are there, when two categories share the most, or when the
    answer has more than two other words (then it is a description, not a category)."""
    tokens = [t for t in content_tokens(folded) if len(t) >= 3]
    if not tokens:
        return None
    best: list[tuple[int, CaseCategory]] = []
    for category in categories:
        words = category.match_words
        hits = sum(any(_same_word(token, word) for word in words) for token in tokens)
        if hits:
            best.append((hits, category))
    best.sort(key=lambda pair: pair[0], reverse=True)
    if not best or (len(best) > 1 and best[1][0] == best[0][0]):
        return None
    hits, category = best[0]
    return category if len(tokens) - hits <= _MAX_OTHER_CATEGORY_WORDS else None


def category_menu(categories: Sequence[CaseCategory], body: str, lang: str) -> Buttons | ListMenu:
    """The question ``body`` with the categories to tap: buttons for up to three, else a list
    (the first ten; titles shortened to what WhatsApp shows, the full label as description)."""
    if len(categories) <= _MAX_BUTTONS:
        return Buttons(
            body=body,
            buttons=tuple(
                ReplyButton(
                    id=f"{CATEGORY_PREFIX}{c.id}",
                    title=short(c.label(lang), _BUTTON_TITLE_MAX),
                )
                for c in categories
            ),
        )
    rows = tuple(
        ListRow(
            id=f"{CATEGORY_PREFIX}{c.id}",
            title=short(c.label(lang), _ROW_TITLE_MAX),
            description=c.label(lang) if len(c.label(lang)) > _ROW_TITLE_MAX else None,
        )
        for c in categories[:_MAX_LIST_ROWS]
    )
    return ListMenu(body=body, button=say("list_button", lang), sections=(ListSection(rows=rows),))


def _same_word(token: str, word: str) -> bool:
    """``token`` (the citizen's) is ``word`` (a label's), in the singular or plural or with a
    typo the keyword engine would forgive for a word of that length."""
    if token == word or word in singular_forms(token) or token in singular_forms(word):
        return True
    tolerance = typo_tolerance(len(word))
    return tolerance > 0 and OSA.distance(token, word, score_cutoff=tolerance) <= tolerance
