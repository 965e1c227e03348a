"""The routing extension point: how to pick an operator for a waiting conversation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from civicchat.routing.operators import OperatorLoad, WaitingConversation

__all__ = ["AssignmentStrategy"]


@runtime_checkable
class AssignmentStrategy(Protocol):
    """Chooses who takes a conversation.

    ``candidates`` are operators who are available and below their capacity (never empty); the
    strategy returns one of their ids, or ``None`` to leave the conversation waiting (e.g. nobody
    of the right team). The :class:`~civicchat.routing.assignment.Assigner` enforces presence and
    capacity, so a strategy only expresses preference.
    """

    def choose(
        self, item: WaitingConversation, candidates: Sequence[OperatorLoad]
    ) -> str | None: ...
