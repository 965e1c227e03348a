"""Small text helpers for the flow: accent folding and typo-tolerant word matching.

Local on purpose until ``civicchat.keywords`` publishes its normaliser; the flow only needs
``fold`` and ``fuzzy_in`` and can swap them without other changes.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from rapidfuzz import fuzz

__all__ = ["fold", "fuzzy_in", "words"]

_NOT_WORD = re.compile(r"[^a-z0-9\- ]+")
_SPACES = re.compile(r"\s+")


def fold(text: str) -> str:
    """Lower case, no accents, ``l·l`` as ``ll``, no punctuation but hyphens, single spaces."""
    text = text.lower().replace("l·l", "ll").replace("l.l", "ll").replace("ŀl", "ll")
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.replace("'", "").replace("’", "")
    text = _NOT_WORD.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def words(text: str) -> list[str]:
    return fold(text).split()


def fuzzy_in(candidate: str, vocabulary: Iterable[str], *, cutoff: float = 85.0) -> bool:
    """True when ``candidate`` (already folded) equals or is one typo away from a vocabulary entry.

    Short words must match exactly: a typo in a three-letter word is another word.
    """
    for entry in vocabulary:
        if candidate == entry:
            return True
        if min(len(candidate), len(entry)) >= 5 and fuzz.ratio(candidate, entry) >= cutoff:
            return True
    return False
