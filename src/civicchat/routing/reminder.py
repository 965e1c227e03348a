"""When a citizen who keeps writing while queued gets a gentle reminder, as a pure rule.

One acknowledgement per open period is deliberate (no reply to every "hola?"), but a citizen
whose second and third messages get nothing thinks the chat is broken. So, while the
conversation waits in the queue during office hours, a later message gets one reminder ("we
have your messages, a person will answer you soon", with the queue position when the caller
knows it) when enough time or enough messages have gone by since the last acknowledgement or
reminder, and never more than one per ``min_interval``::

    >>> from datetime import datetime, timedelta, UTC
    >>> from civicchat.routing import ConversationState, ConversationView
    >>> acked = datetime(2026, 6, 15, 7, 0, tzinfo=UTC)
    >>> view = ConversationView(id="c1", account="wa", channel="whatsapp", citizen_id="x",
    ...                         state=ConversationState.QUEUED, last_ack_at=acked,
    ...                         messages_since_ack=1)
    >>> policy = ReminderPolicy()
    >>> policy.due(view, acked + timedelta(minutes=5))     # the 2nd message, 5 minutes later
    False
    >>> policy.due(view, acked + timedelta(minutes=10))    # 10 minutes after the acknowledgement
    True
    >>> policy.due(view.replace(messages_since_ack=2), acked + timedelta(minutes=3))  # the 3rd
    True

Out of hours the pipeline answers the first message with the out-of-hours reply (when the office
reopens). The citizen's next message, usually the question itself, gets one short "we have your
message, a person answers you on Monday at 8:00" at once; later ones at most one such note per
``out_of_hours_every``, so a chat left open overnight is not a stream of bot messages::

    >>> closed = view.replace(last_ack_at=acked, messages_since_ack=1)  # the out-of-hours reply
    >>> policy.due_closed(closed, acked + timedelta(seconds=30))        # the next message
    True
    >>> noted = closed.replace(last_ack_at=acked + timedelta(seconds=30), messages_since_ack=2)
    >>> policy.due_closed(noted, acked + timedelta(hours=1))
    False
    >>> policy.due_closed(noted, acked + timedelta(hours=4))
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from civicchat.exceptions import ConfigError
from civicchat.routing.state import ConversationState, ConversationView

__all__ = ["ReminderPolicy"]


@dataclass(frozen=True, slots=True)
class ReminderPolicy:
    """How often a queued citizen who keeps writing is reminded that a person will answer.

    A message gets a reminder when ``after`` has passed since the last acknowledgement or
    reminder (or since the operator's last reply, if later), or when it is the
    ``every_messages``-th message that acknowledgement covers; in both cases only once
    ``min_interval`` has passed, so there is never more than one reminder per ``min_interval``.

    Out of hours (:meth:`due_closed`): the first message after the out-of-hours reply gets a
    short note, later ones at most one per ``out_of_hours_every`` (``None``: never).
    """

    after: timedelta = timedelta(minutes=10)
    every_messages: int = 3
    min_interval: timedelta = timedelta(minutes=2)
    out_of_hours_every: timedelta | None = timedelta(hours=3)

    def __post_init__(self) -> None:
        if self.min_interval <= timedelta(0):
            raise ConfigError("ReminderPolicy.min_interval must be positive (e.g. 2 minutes)")
        if self.after < self.min_interval:
            raise ConfigError(
                "ReminderPolicy.after must be at least min_interval "
                f"({self.after} < {self.min_interval})"
            )
        if self.every_messages < 2:
            raise ConfigError(
                "ReminderPolicy.every_messages must be 2 or more (the acknowledged message "
                "counts as the first)"
            )
        if self.out_of_hours_every is not None and self.out_of_hours_every < self.min_interval:
            raise ConfigError(
                "ReminderPolicy.out_of_hours_every must be at least min_interval "
                f"({self.out_of_hours_every} < {self.min_interval}), or None for no notes"
            )

    def due(self, view: ConversationView, now: datetime) -> bool:
        """Whether the message arriving at ``now`` on queued ``view`` gets a reminder.

        Only for a conversation waiting in the queue (never while an operator attends it) that
        was acknowledged at a known time; office hours and the period are the pipeline's part.
        """
        if view.state is not ConversationState.QUEUED or view.last_ack_at is None:
            return False
        since = view.last_ack_at
        if view.last_operator_reply_at is not None and view.last_operator_reply_at > since:
            since = view.last_operator_reply_at
        waited = now - since
        if waited < self.min_interval:
            return False
        return waited >= self.after or view.messages_since_ack + 1 >= self.every_messages

    def due_closed(self, view: ConversationView, now: datetime) -> bool:
        """Whether the message arriving at ``now`` on queued ``view``, out of hours and after
        this closed period's out-of-hours reply, gets a short "we have your message" note.

        ``view.last_ack_at`` is the out-of-hours reply or the last note, and
        ``view.messages_since_ack`` is 1 until the first message after that reply: the pipeline
        sets both. A store that keeps neither never gets a note.
        """
        if self.out_of_hours_every is None:
            return False
        if view.state is not ConversationState.QUEUED or view.last_ack_at is None:
            return False
        if view.messages_since_ack == 1:
            return True
        return now - view.last_ack_at >= self.out_of_hours_every
