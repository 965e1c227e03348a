"""The keyword engine: normalisation, the catalog, matching, language, replies.

::

    from civicchat.keywords import KeywordEngine, load_catalog

    engine = KeywordEngine(load_catalog("examples/mataro/catalog.yaml"))
    answer = engine.answer("on és la deixalleria?")   # KeywordAnswer, or None for a person

See ``docs/keywords.md`` and ``docs/catalog.md``.
"""

from civicchat.keywords.base import AnswerKind, KeywordAnswer, KeywordMatch, KeywordResponder
from civicchat.keywords.catalog import (
    Catalog,
    Keyword,
    KeywordButton,
    KeywordLocation,
    KeywordMedia,
    load_catalog,
    parse_catalog,
)
from civicchat.keywords.engine import KW_REPLY_PREFIX, KeywordEngine
from civicchat.keywords.language import detect_language, language_evidence
from civicchat.keywords.normalize import normalize

__all__ = [
    "KW_REPLY_PREFIX",
    "AnswerKind",
    "Catalog",
    "Keyword",
    "KeywordAnswer",
    "KeywordButton",
    "KeywordEngine",
    "KeywordLocation",
    "KeywordMatch",
    "KeywordMedia",
    "KeywordResponder",
    "detect_language",
    "language_evidence",
    "load_catalog",
    "normalize",
    "parse_catalog",
]
