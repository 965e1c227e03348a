"""The conversation lifecycle: states, allowed transitions, and the view the pipeline works on.

A :class:`ConversationView` is an immutable snapshot; every change returns a new view with one
more :class:`HistoryEntry`. "Reopened" is not a state but a transition from ``closed`` back to
``bot`` or ``queued``, recorded in the history with the note ``"reopened"``::

    >>> from datetime import datetime, UTC
    >>> view = ConversationView(id="c1", account="wa-010", channel="whatsapp", citizen_id="x")
    >>> view = transition(view, ConversationState.QUEUED, at=datetime(2026, 1, 2, tzinfo=UTC),
    ...                   actor="bot", note="handoff")
    >>> view.state, view.history[-1].from_state
    (<ConversationState.QUEUED: 'queued'>, <ConversationState.BOT: 'bot'>)
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from civicchat.exceptions import RoutingError

__all__ = [
    "ALLOWED_TRANSITIONS",
    "ConversationState",
    "ConversationView",
    "HistoryEntry",
    "transition",
]


class ConversationState(enum.StrEnum):
    """Where a conversation is: with the bot, waiting for a person, with a person, or closed."""

    BOT = "bot"
    QUEUED = "queued"
    ASSIGNED = "assigned"
    CLOSED = "closed"


_S = ConversationState

ALLOWED_TRANSITIONS: frozenset[tuple[ConversationState, ConversationState]] = frozenset(
    {
        (_S.BOT, _S.QUEUED),  # handoff to a person
        (_S.BOT, _S.ASSIGNED),  # an operator takes a conversation directly
        (_S.BOT, _S.CLOSED),
        (_S.QUEUED, _S.ASSIGNED),
        (_S.QUEUED, _S.BOT),  # the citizen's question was answered by a keyword after all
        (_S.QUEUED, _S.CLOSED),
        (_S.ASSIGNED, _S.ASSIGNED),  # transfer or reassignment to another operator
        (_S.ASSIGNED, _S.QUEUED),  # back to the queue (operator went away, transfer to a team)
        (_S.ASSIGNED, _S.BOT),  # the operator hands the conversation back to the bot
        (_S.ASSIGNED, _S.CLOSED),
        (_S.CLOSED, _S.BOT),  # reopened: the citizen wrote again
        (_S.CLOSED, _S.QUEUED),  # reopened straight into the queue
    }
)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """Who moved a conversation from one state to another, when, and why."""

    at: datetime
    actor: str  # "bot", "citizen", "system", or an operator id
    from_state: ConversationState
    to_state: ConversationState
    note: str = ""


@dataclass(frozen=True, slots=True)
class ConversationView:
    """What routing needs to know about one conversation (one citizen on one account).

    The storage layer persists every field; routing never mutates a view, it returns a new one.
    Times are zone-aware. ``last_ack_period`` / ``last_out_of_hours_period`` hold
    :meth:`~civicchat.routing.hours.OfficeHours.period_key` values, so a citizen gets one
    acknowledgement and one out-of-hours reply per period; ``last_ack_at`` and
    ``messages_since_ack`` pace the reminders (:class:`~civicchat.routing.ReminderPolicy`): a
    store that does not keep them simply never gets a reminder.
    """

    id: str
    account: str
    channel: str
    citizen_id: str
    state: ConversationState = ConversationState.BOT
    language: str | None = None
    assigned_operator: str | None = None
    assigned_at: datetime | None = None
    last_operator: str | None = None  # who helped this citizen last (sticky assignment)
    queued_at: datetime | None = None
    last_inbound_at: datetime | None = None
    last_operator_reply_at: datetime | None = None
    last_ack_period: str | None = None
    last_out_of_hours_period: str | None = None
    last_ack_at: datetime | None = None  # the last acknowledgement or reminder, for reminders
    messages_since_ack: int = 0  # citizen messages it covers, the acknowledged one included
    priority: int = 0  # higher is served first
    team: str | None = None
    topic: str | None = None
    history: tuple[HistoryEntry, ...] = ()

    def replace(self, **changes: Any) -> ConversationView:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


def transition(
    view: ConversationView,
    to: ConversationState,
    *,
    at: datetime,
    actor: str,
    note: str = "",
    operator: str | None = None,
) -> ConversationView:
    """Move ``view`` to state ``to``, or raise :class:`RoutingError` if that move is not allowed.

    Entering ``queued`` sets ``queued_at``; entering ``assigned`` needs ``operator`` and sets
    ``assigned_operator``/``assigned_at``; leaving ``assigned`` remembers the operator in
    ``last_operator``. Leaving ``closed`` is recorded with the note ``"reopened"``.
    """
    if at.tzinfo is None:
        raise ValueError("transition needs a zone-aware datetime")
    if (view.state, to) not in ALLOWED_TRANSITIONS:
        raise RoutingError(
            f"conversation {view.id}: cannot go from {view.state.value} to {to.value}"
        )
    if to is ConversationState.ASSIGNED and not operator:
        raise RoutingError(f"conversation {view.id}: assigning needs an operator id")
    if view.state is ConversationState.CLOSED and not note:
        note = "reopened"
    changes: dict[str, Any] = {"state": to}
    if view.state is ConversationState.ASSIGNED and view.assigned_operator is not None:
        changes["last_operator"] = view.assigned_operator
    if to is ConversationState.ASSIGNED:
        changes.update(assigned_operator=operator, assigned_at=at, last_operator_reply_at=None)
    else:
        changes.update(assigned_operator=None, assigned_at=None)
    if to is ConversationState.QUEUED:
        # Keep the original queue time when bouncing back from an operator: age is fairness.
        changes["queued_at"] = view.queued_at if view.state is ConversationState.ASSIGNED else at
        changes["queued_at"] = changes["queued_at"] or at
    elif to in (ConversationState.BOT, ConversationState.CLOSED):
        changes["queued_at"] = None
    entry = HistoryEntry(at=at, actor=actor, from_state=view.state, to_state=to, note=note)
    changes["history"] = (*view.history, entry)
    return dataclasses.replace(view, **changes)
