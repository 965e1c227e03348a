"""Messages that ask for a person ("vull parlar amb una persona"): no keyword answers them.

A phrase matches when its words other than stop words appear in the message one after the
other, after normalisation: "Vull parlar amb una persona sobre el padró" holds ``parlar
persona``, so it reaches a person even though it also names the padró keyword::

    >>> requests = PersonRequests(TO_PERSON_PHRASES)
    >>> requests.find("Vull parlar amb una persona sobre el padró")
    'parlar amb una persona'
    >>> requests.find("Quiero hablar con alguien, por favor")
    'hablar con alguien'
    >>> requests.find("horari del padró") is None
    True

A catalog adds its own phrases under ``to_person:`` (see ``docs/catalog.md``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType

from civicchat.keywords.normalize import STOP_WORDS, content_tokens, normalize

__all__ = ["TO_PERSON_PHRASES", "PersonRequests", "phrase_words"]

#: What citizens write to be answered by a person, per language. A catalog's ``to_person:`` adds
#: to these; every phrase applies whatever the message's language.
TO_PERSON_PHRASES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "ca": (
            "parlar amb una persona",
            "parlar amb persones",
            "parlar amb algú",
            "parlar amb un operador",
            "parlar amb una operadora",
            "parlar amb un humà",
            "parlar amb un agent",
            "atenció personal",
            "atenció personalitzada",
            "una persona real",
            "un operador",
            "una operadora",
            "que em truqui algú",
            "que em truqui una persona",
            "que m'atengui una persona",
            "que m'atengui algú",
            "no vull parlar amb un robot",
        ),
        "es": (
            "hablar con una persona",
            "hablar con personas",
            "hablar con alguien",
            "hablar con un operador",
            "hablar con una operadora",
            "hablar con un humano",
            "hablar con un agente",
            "atención personal",
            "atención personalizada",
            "una persona real",
            "un operador",
            "una operadora",
            "que me llame alguien",
            "que me llame una persona",
            "que me atienda una persona",
            "que me atienda alguien",
            "no quiero hablar con un robot",
        ),
    }
)


def phrase_words(phrase: str, stop_words: frozenset[str] = STOP_WORDS) -> tuple[str, ...]:
    """The words of ``phrase`` a message must hold, in order (normalised, no stop words).

    >>> phrase_words("Parlar amb una persona")
    ('parlar', 'persona')
    """
    return tuple(content_tokens(normalize(phrase), stop_words))


class PersonRequests:
    """The phrases that ask for a person, normalised once; :meth:`find` looks for them.

    ``phrases`` maps a language to its phrases (:data:`TO_PERSON_PHRASES`, a catalog's
    ``to_person``); a phrase without words other than stop words is ignored (the catalog loader
    refuses it with a message).
    """

    def __init__(
        self,
        *phrases: Mapping[str, Iterable[str]],
        stop_words: frozenset[str] = STOP_WORDS,
    ) -> None:
        self.stop_words = stop_words
        by_first: dict[str, dict[tuple[str, ...], str]] = {}
        for table in phrases:
            for texts in table.values():
                for text in texts:
                    words = phrase_words(text, stop_words)
                    if words:
                        by_first.setdefault(words[0], {}).setdefault(words, text)
        # Longest first, so the phrase reported is the most specific one.
        self._by_first = {
            first: tuple(sorted(found.items(), key=lambda item: -len(item[0])))
            for first, found in by_first.items()
        }

    def find(self, text: str) -> str | None:
        """The phrase ``text`` asks for a person with, or ``None``."""
        value: object = text
        if not isinstance(value, str):
            return None
        return self.find_in(content_tokens(normalize(value), self.stop_words))

    def find_in(self, words: Sequence[str]) -> str | None:
        """:meth:`find` for a message's words already normalised, without stop words."""
        for start, word in enumerate(words):
            for phrase, text in self._by_first.get(word, ()):
                if tuple(words[start : start + len(phrase)]) == phrase:
                    return text
        return None
