"""What routing decides, as plain values: the service carries them out (send, store, notify).

Routing never sends or stores anything itself; :class:`Outcome` holds the decisions for one
inbound message together with the new :class:`~civicchat.routing.state.ConversationView`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from civicchat.messages import OutboundContent
from civicchat.routing.state import ConversationView

__all__ = [
    "Assign",
    "Decision",
    "Enqueue",
    "Escalate",
    "NotifyOperator",
    "Outcome",
    "Reply",
    "ReplyReason",
    "Requeue",
]


class ReplyReason(enum.StrEnum):
    KEYWORD = "keyword"  # a keyword's automatic answer
    INDEX = "index"  # the keyword index (PARAULES CLAU / PALABRAS CLAVE)
    CLARIFY = "clarify"  # "Volia dir...?" with buttons
    ACK = "ack"  # "Un moment, us atendrà una persona del 010."
    OUT_OF_HOURS = "out_of_hours"  # closed now, when we reopen, how to use keywords
    REMINDER = "reminder"  # still queued: "we have your messages", paced by ReminderPolicy


@dataclass(frozen=True, slots=True)
class Reply:
    """Send ``contents`` to the citizen, in order (pass them through ``prepare_outbound``)."""

    contents: tuple[OutboundContent, ...]
    reason: ReplyReason
    language: str


@dataclass(frozen=True, slots=True)
class Enqueue:
    """The conversation waits for a person: hand it (again) to the assigner.

    Sent on the handoff and on every later message while it waits, because each message moves
    ``window_closes_at``; :meth:`civicchat.routing.Assigner.enqueue` is idempotent.
    """

    conversation_id: str
    priority: int
    queued_at: datetime
    language: str | None = None
    team: str | None = None
    window_closes_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class NotifyOperator:
    """Tell the attending operator that something came in (``reason``: message, keyword...)."""

    conversation_id: str
    operator_id: str
    reason: str = "message"


@dataclass(frozen=True, slots=True)
class Assign:
    """Give the conversation to ``operator_id`` (``reason``: dispatch, sticky, reassign, transfer)."""

    conversation_id: str
    operator_id: str
    reason: str = "dispatch"
    previous_operator: str | None = None


@dataclass(frozen=True, slots=True)
class Requeue:
    """Take the conversation from ``operator_id`` and put it back in the queue (keeping its age)."""

    conversation_id: str
    operator_id: str
    reason: str = "operator_offline"


@dataclass(frozen=True, slots=True)
class Escalate:
    """An assigned conversation had no operator reply for ``waited``; alert a supervisor."""

    conversation_id: str
    operator_id: str
    waited: timedelta


Decision = Reply | Enqueue | NotifyOperator | Assign | Requeue | Escalate


@dataclass(frozen=True, slots=True)
class Outcome:
    """The decisions for one inbound message and the conversation as it is afterwards."""

    view: ConversationView
    decisions: tuple[Decision, ...] = ()

    @property
    def replies(self) -> tuple[Reply, ...]:
        return tuple(d for d in self.decisions if isinstance(d, Reply))
