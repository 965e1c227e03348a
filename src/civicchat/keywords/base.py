"""What the rest of civicchat needs from the keyword engine.

Routing depends on :class:`KeywordResponder`, not on the engine's internals, so a city can plug in
its own responder (or tests a tiny fake) and the engine can change without touching routing.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from civicchat.messages import OutboundContent

__all__ = ["AnswerKind", "KeywordAnswer", "KeywordMatch", "KeywordResponder"]


@dataclass(frozen=True, slots=True)
class KeywordMatch:
    """The keyword a message asks for.

    ``alias`` is the catalog alias that matched (as written in the catalog), ``score`` is 0-100,
    ``language`` is the reply language, ``exact`` is true when the whole message, normalised, is
    that alias. ``runner_up`` is set when a second keyword scored so close that the engine should
    not guess; the bot then asks "Volia dir...?".
    """

    keyword_id: str
    alias: str
    score: float
    language: str
    exact: bool
    runner_up: KeywordMatch | None = None

    @property
    def ambiguous(self) -> bool:
        return self.runner_up is not None


class AnswerKind(enum.StrEnum):
    INDEX = "index"  # PARAULES CLAU / PALABRAS CLAVE, possibly for one topic
    KEYWORD = "keyword"  # one keyword's reply
    CLARIFY = "clarify"  # "Volia dir...?" with a button per candidate


@dataclass(frozen=True, slots=True)
class KeywordAnswer:
    """A ready-to-send automatic answer: ``contents`` go out in order."""

    kind: AnswerKind
    language: str
    contents: tuple[OutboundContent, ...]
    match: KeywordMatch | None = None  # None for the index


@runtime_checkable
class KeywordResponder(Protocol):
    """Answers a message automatically, or returns ``None`` when a person should."""

    def answer(
        self,
        text: str,
        *,
        language: str | None = None,
        context: Mapping[str, object] | None = None,
        max_length: int = 4096,
    ) -> KeywordAnswer | None:
        """Answer ``text``; ``language`` is the conversation's last language, if known."""
        ...

    def answer_choice(
        self,
        keyword_id: str,
        *,
        language: str,
        context: Mapping[str, object] | None = None,
        max_length: int = 4096,
    ) -> KeywordAnswer | None:
        """Answer a keyword picked from a button (``reply_id`` ``"kw:<id>"``); None if unknown."""
        ...
