"""Small text helpers for the flow: folding (the keyword engine's), typo-tolerant matching, cutting."""

from __future__ import annotations

from collections.abc import Iterable

from rapidfuzz import fuzz

from civicchat.keywords.normalize import normalize

__all__ = ["fold", "fuzzy_in", "short"]


def fold(text: str) -> str:
    """The keyword engine's normalisation: no case, accents, elisions or punctuation.

    ``cancel·lar`` is ``cancellar``, ``d'acord`` is ``acord``, ``No ho sé!`` is ``no ho se``.
    """
    return normalize(text)


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


def short(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
