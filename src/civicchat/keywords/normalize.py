"""Text normalisation shared by the catalog, the matcher, language detection and operators.

``normalize`` folds what citizens type on a phone into one comparable form::

    >>> normalize("  L'AGENDA d'interès!!  ")
    'agenda interes'
    >>> normalize("Col·lecció, col.lecció i col•lecció 🚌")
    'colleccio colleccio i colleccio'

It never raises, whatever Unicode it is given (lone surrogates and control characters included),
and it is idempotent: ``normalize(normalize(t)) == normalize(t)``.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["MAX_INPUT_CHARS", "STOP_WORDS", "content_tokens", "normalize"]

#: Longer input is cut before normalising: no keyword request is this long, and cutting keeps
#: the time spent on a message bounded (a 100 KB paste costs the same as a 2 KB one).
MAX_INPUT_CHARS = 2000

_SURROGATES = re.compile(r"[\ud800-\udfff]")
# The Catalan punt volat and the ways phones type it: l·l, l.l, l•l, l‧l, l∙l, l⋅l.
_PUNT_VOLAT = re.compile(r"l[\u00b7\u2022\u2027\u2219\u22c5\u0387.]l")
# Elided articles and prepositions: l'agenda, d'interes, s'ha, m'agrada, n'hi, qu'hi...
_APOSTROPHES = re.compile(r"[\u2019\u2018\u02bc\u00b4`\u2032']")
_ELISION = re.compile(r"(?<![^\W_])(?:[ldsmtn]|qu)'(?=[^\W\d_])")
_NOT_WORD = re.compile(r"[\W_]+")
# The same for text already folded to ASCII (most messages): simpler patterns, faster.
_ELISION_ASCII = re.compile(r"(?<![a-z0-9])(?:[ldsmtn]|qu)'(?=[a-z])")
_NOT_WORD_ASCII = re.compile(r"[^a-z0-9]+")


def _fold_slow(text: str) -> str:
    """Lower-case and strip accents and diacritics (``ç`` -> ``c``, ``ñ`` -> ``n``)."""
    # Decompose, fold, decompose again: a few compatibility letters (mathematical capitals,
    # ligatures) only become foldable, or only decompose, after the other step.
    text = unicodedata.normalize("NFKD", text).casefold()
    text = unicodedata.normalize("NFKD", text)
    return "".join(c for c in text if not unicodedata.combining(c))


def _latin1_table() -> bytes:
    table = bytearray(range(256))
    for code in range(256):
        folded = _fold_slow(chr(code))
        if len(folded) == 1 and folded.isascii():
            table[code] = ord(folded)
    table[0xB7] = ord(".")  # the punt volat: "l·l" and "l.l" are the same to what follows
    return bytes(table)


# Catalan and Spanish text is Latin-1: folding it byte by byte is five times faster.
_LATIN1 = _latin1_table()


def _fold(text: str) -> str:
    try:
        raw = text.encode("latin-1")
    except UnicodeEncodeError:
        return _fold_slow(_SURROGATES.sub(" ", text))
    folded = raw.translate(_LATIN1).decode("latin-1")
    return folded if folded.isascii() else _fold_slow(folded)


def normalize(text: str) -> str:
    """Fold ``text`` for comparison.

    Lower-cases, removes accents and diacritics, joins the punt volat (``l·l`` -> ``ll``), drops
    elided articles (``l'agenda`` -> ``agenda``), turns punctuation, symbols and emoji into
    spaces and collapses whitespace. Text longer than :data:`MAX_INPUT_CHARS` is cut first.
    """
    value: object = text
    if not isinstance(value, str):
        return ""
    text = value[:MAX_INPUT_CHARS]
    if text.isascii():
        text = text.lower().replace("`", "'")
    else:
        # Before folding, so that "´" is an apostrophe and not an accent; after, for the
        # apostrophes that decomposing letters such as "ŉ" produces.
        text = _APOSTROPHES.sub("'", _fold(_APOSTROPHES.sub("'", text)))
    if "l" in text:
        text = _PUNT_VOLAT.sub("ll", text)
    if text.isascii():
        if "'" in text:
            text = _ELISION_ASCII.sub("", text)
        text = _NOT_WORD_ASCII.sub(" ", text)
    else:
        text = _NOT_WORD.sub(" ", _ELISION.sub("", text))
    return " ".join(text.split())


# Words that carry no keyword meaning: articles, prepositions, question words, greetings and
# politeness, in Catalan and Spanish, already normalised. A keyword request is what remains.
_STOP_CA = """
a al als amb aquest aquesta aquests aquestes aqui ara bon bona bones bons com cal d de del dels
demà dema diu dir el els em en ens es esta estan et fa fan fara farà fer gracies hi ho hola i jo
l la les li m me meu meva mes molt n ne o on per pel pels perque pot puc pots quan que quin
quina quines quins s sa saber se seu seva si sisplau plau sobre som son t te teniu tinc tot tots
tu u un una unes uns us vaig vull voldria volia vosaltres avui necessito necessita
informacio informacions podeu podries podria pregunta dubte ajuda ajudar siusplau hi ha hem
voste vostè heu sap saps sabeu indicar dieu bondia bonatarda bonanit
"""
_STOP_ES = """
a al algo buenas buenos como con cual cuales cuando de del donde el ella en es esa ese
esta estan este esto gracias hay hola hoy la las le lo los me mi mis muy necesito necesita no
nos o para pero por porfa favor puedo puede pueden que quiero queria quisiera saber se ser si
sobre son su sus te tengo tiene tienen un una unas uno unos usted ustedes y yo
noche noches manana ayuda ayudar informacion pregunta duda decir dicen podeis podria podrias
indicar sabe sabeis
"""
#: Normalised stop words of both languages.
STOP_WORDS: frozenset[str] = frozenset(normalize(w) for w in (_STOP_CA + _STOP_ES).split())


_GREETING_HEADS = frozenset({"bon", "bona", "bones", "bons", "buen", "buenos", "buenas"})
_GREETING_TAILS = frozenset(
    {"dia", "dies", "tarda", "tardes", "nit", "nits", "dias", "tarde", "noches"}
)


def content_tokens(normalized: str, stop_words: frozenset[str] = STOP_WORDS) -> list[str]:
    """The words of an already normalised text that are not stop words (nor the rest of a
    greeting such as "bon dia", "buenas tardes")."""
    out: list[str] = []
    previous = ""
    for token in normalized.split():
        if token not in stop_words and not (
            token in _GREETING_TAILS and previous in _GREETING_HEADS
        ):
            out.append(token)
        previous = token
    return out
