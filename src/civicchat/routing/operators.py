"""Operators, their presence and load, and the waiting conversations they are matched with."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from civicchat.exceptions import ConfigError
from civicchat.routing.state import ConversationView
from civicchat.routing.window import WINDOW_CHANNELS, window_closes_at

__all__ = ["Operator", "OperatorLoad", "Presence", "WaitingConversation"]


class Presence(enum.StrEnum):
    """Available operators get new conversations; away ones keep theirs; offline ones lose them."""

    AVAILABLE = "available"
    AWAY = "away"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class Operator:
    """A person of the 010. Empty ``languages`` / ``teams`` mean "any"."""

    id: str
    capacity: int = 3  # conversations at once
    languages: frozenset[str] = frozenset()
    teams: frozenset[str] = frozenset()
    presence: Presence = Presence.OFFLINE

    def __post_init__(self) -> None:
        if not self.id:
            raise ConfigError("an operator needs a non-empty id")
        if self.capacity < 1:
            raise ConfigError(
                f"operator {self.id}: capacity must be at least 1 (got {self.capacity})"
            )

    def speaks(self, language: str | None) -> bool:
        return not self.languages or language is None or language in self.languages

    def in_team(self, team: str | None) -> bool:
        return team is None or not self.teams or team in self.teams


@dataclass(frozen=True, slots=True)
class OperatorLoad:
    """An operator who could take one more conversation, with what they already hold."""

    operator: Operator
    load: int
    last_assigned_at: datetime | None = None

    @property
    def id(self) -> str:
        return self.operator.id


@dataclass(frozen=True, slots=True)
class WaitingConversation:
    """A conversation in the backlog, with what ordering and strategies look at."""

    conversation_id: str
    queued_at: datetime
    priority: int = 0
    language: str | None = None
    team: str | None = None
    last_operator: str | None = None
    window_closes_at: datetime | None = None
    excluded: frozenset[str] = field(default_factory=frozenset)  # operators who let it time out

    def __post_init__(self) -> None:
        if self.queued_at.tzinfo is None:
            raise ValueError("WaitingConversation.queued_at must be zone-aware")

    @classmethod
    def from_view(cls, view: ConversationView, now: datetime) -> WaitingConversation:
        """The backlog entry of a queued conversation (``now`` if it has no ``queued_at``)."""
        closes = window_closes_at(view.last_inbound_at) if view.channel in WINDOW_CHANNELS else None
        return cls(
            conversation_id=view.id,
            queued_at=view.queued_at or now,
            priority=view.priority,
            language=view.language,
            team=view.team,
            last_operator=view.last_operator,
            window_closes_at=closes,
        )
