"""The keyword index reply: every keyword grouped by topic, split to fit the channel.

Citizens ask for it with ``PARAULES CLAU`` or ``PALABRAS CLAVE`` (any case, accents or typos),
optionally followed by a topic (``PARAULES CLAU transport``). A topic's display name alone
(``cultura``, ``Transporte``) asks for that topic's part of the index too
(:func:`find_topic_name`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rapidfuzz.distance import OSA

from civicchat.keywords.catalog import Catalog
from civicchat.keywords.matcher import typo_tolerance
from civicchat.keywords.normalize import content_tokens, normalize
from civicchat.messages import split_text

__all__ = [
    "IndexRequest",
    "TopicNames",
    "build_index",
    "find_topic_name",
    "parse_index_request",
    "split_text",
]

_FIRST_WORDS = {"ca": ("paraules", "paraula"), "es": ("palabras", "palabra")}
_SECOND_WORDS = {"ca": ("clau", "claus"), "es": ("clave", "claves")}


@dataclass(frozen=True, slots=True)
class IndexRequest:
    """A request for the index: its language and, when one was named, its topic."""

    language: str
    topic: str | None


def _close(word: str, targets: Sequence[str]) -> bool:
    return any(OSA.distance(word, t) <= max(1, typo_tolerance(len(t))) for t in targets)


def _first_language(word: str) -> str | None:
    for lang, targets in _FIRST_WORDS.items():
        if word in targets:
            return lang
    best: tuple[int, str] | None = None
    for lang, targets in _FIRST_WORDS.items():
        for target in targets:
            distance = OSA.distance(word, target)
            if distance <= typo_tolerance(len(target)) and (best is None or distance < best[0]):
                best = (distance, lang)
    return None if best is None else best[1]


def parse_index_request(tokens: Sequence[str], catalog: Catalog) -> IndexRequest | None:
    """Whether normalised ``tokens`` ask for the index (``paraules clau [topic]``).

    The phrase may come after a greeting or a short question ("bon dia, quines són les
    paraules clau?"); apart from stop words, only a topic may follow it.
    """
    if len(tokens) < 2 or len(tokens) > 12:
        return None
    for start in range(len(tokens) - 1):
        lang = _first_language(tokens[start])
        if lang is None:
            continue
        second = tokens[start + 1]
        if not (_close(second, _SECOND_WORDS["ca"]) or _close(second, _SECOND_WORDS["es"])):
            continue
        before = content_tokens(" ".join(tokens[:start]), catalog.stop_words)
        if len(before) > 1:  # "em passes les paraules clau?" yes, a longer sentence no
            return None
        rest = tokens[start + 2 :]
        words = content_tokens(" ".join(rest), catalog.stop_words)
        if not words:
            return IndexRequest(lang, None)
        topic = _find_topic(rest, catalog)
        return IndexRequest(lang, topic) if topic is not None or len(words) <= 1 else None
    return None


def _find_topic(tokens: Sequence[str], catalog: Catalog) -> str | None:
    wanted = " ".join(tokens)
    words = [t for t in tokens if t not in catalog.stop_words]
    for topic in catalog.topic_order():
        names = {normalize(topic), normalize(topic.replace("_", " "))}
        names.update(normalize(name) for name in catalog.topics.get(topic, {}).values())
        for name in names:
            if not name:
                continue
            if name == wanted or name == " ".join(words):
                return topic
            if words and OSA.distance(" ".join(words), name) <= typo_tolerance(len(name)):
                return topic
    return None


class TopicNames:
    """The display names of a catalog's topics, folded once, to find a topic asked for by name.

    Only display names count, not topic ids (an id such as ``media`` is also a Spanish word);
    stop words around the name are ignored and typos are tolerated as for keywords
    ("cultrua"), but not in names of four letters or fewer.
    """

    def __init__(self, catalog: Catalog) -> None:
        self._stop_words = catalog.stop_words
        names: dict[str, dict[str, set[str]]] = {}  # folded name -> topic -> languages
        for topic in catalog.topic_order():
            for lang, name in catalog.topics.get(topic, {}).items():
                folded = " ".join(content_tokens(normalize(name), catalog.stop_words))
                if folded:
                    names.setdefault(folded, {}).setdefault(topic, set()).add(lang)
        # In topic order: the first topic wins when two have the same name.
        self._exact = {
            folded: next((t, frozenset(langs)) for t, langs in per_topic.items())
            for folded, per_topic in names.items()
        }
        self._longest = max((len(n.split()) for n in self._exact), default=0)

    def find(self, tokens: Sequence[str]) -> tuple[str, frozenset[str], bool] | None:
        """The topic whose display name normalised ``tokens`` are, alone, the languages of the
        names that matched and whether they matched without a typo
        (``("culture", frozenset({"ca", "es"}), True)`` for "cultura"); ``None`` otherwise."""
        if not self._exact or len(tokens) > 2 * self._longest + 4:
            return None
        words = content_tokens(" ".join(tokens), self._stop_words)
        if not words or len(words) > self._longest:
            return None
        wanted = " ".join(words)
        exact = self._exact.get(wanted)
        if exact is not None:
            return exact[0], exact[1], True
        best: tuple[int, str, frozenset[str]] | None = None
        for folded, (topic, langs) in self._exact.items():
            limit = typo_tolerance(len(folded))
            if limit == 0 or abs(len(folded) - len(wanted)) > limit:
                continue
            distance = OSA.distance(wanted, folded, score_cutoff=limit)
            if distance <= limit and (best is None or distance < best[0]):
                best = (distance, topic, langs)
        return None if best is None else (best[1], best[2], False)


def find_topic_name(
    tokens: Sequence[str], catalog: Catalog
) -> tuple[str, frozenset[str], bool] | None:
    """:meth:`TopicNames.find` for one message (build a :class:`TopicNames` to ask often)."""
    return TopicNames(catalog).find(tokens)


def build_index(
    catalog: Catalog, language: str, topic: str | None = None, max_length: int = 4096
) -> list[str]:
    """The index reply in ``language`` as messages of at most ``max_length`` characters.

    ``topic`` limits it to one topic; an unknown topic gives an empty list.
    """
    if language not in catalog.languages:
        language = catalog.default_language
    topics = catalog.topic_order()
    if topic is not None:
        if topic not in topics:
            return []
        topics = [topic]
    blocks: list[str] = [catalog.text("index_header", language)]
    for name in topics:
        lines = [f"*{catalog.topic_name(name, language)}*"]
        for kw in catalog.keywords:
            if kw.topic != name:
                continue
            aliases = kw.aliases.get(language) or next((a for a in kw.aliases.values() if a), ())
            word = aliases[0].upper() if aliases else kw.id
            title = kw.title.get(language)
            if title and normalize(title) != normalize(word):
                lines.append(f"• {word}: {title}")
            else:
                lines.append(f"• {word}")
        if len(lines) > 1:
            blocks.append("\n".join(lines))
    if topic is None and topics:
        footer = catalog.text("index_footer", language)
        blocks.append(footer.format(topic=catalog.topic_name(topics[0], language).upper()))
    return split_text("\n\n".join(blocks), max_length)
