"""WhatsApp's 24-hour customer-service window.

Free-form messages may reach a WhatsApp citizen only within 24 hours of their last message; after
that only an approved template may. A message sent on Friday at 19:01 is first read by a person on
Monday at 8:00, 61 hours later, so answers often need the account's re-engagement template::

    >>> from datetime import datetime, UTC
    >>> window_closes_at(datetime(2026, 3, 27, 18, 1, tzinfo=UTC))
    datetime.datetime(2026, 3, 28, 18, 1, tzinfo=datetime.timezone.utc)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from civicchat.messages import MarkRead, OutboundContent, Template, Text
from civicchat.routing.state import ConversationView

__all__ = [
    "WINDOW",
    "WINDOW_CHANNELS",
    "PreparedOutbound",
    "prepare_outbound",
    "window_closes_at",
    "window_is_open",
]

WINDOW = timedelta(hours=24)
WINDOW_CHANNELS = frozenset({"whatsapp"})  # channels where free-form messages need an open window


def window_closes_at(last_inbound_at: datetime | None) -> datetime | None:
    """When free-form replies stop being allowed (``None`` if the citizen never wrote)."""
    if last_inbound_at is None:
        return None
    if last_inbound_at.tzinfo is None:
        raise ValueError("window_closes_at needs a zone-aware datetime")
    return last_inbound_at + WINDOW


def window_is_open(view: ConversationView, now: datetime) -> bool:
    """True if free-form content may be sent on ``view``'s channel at ``now``."""
    if view.channel not in WINDOW_CHANNELS:
        return True
    closes = window_closes_at(view.last_inbound_at)
    return closes is not None and now < closes


@dataclass(frozen=True, slots=True)
class PreparedOutbound:
    """What to send now, and what was held back until the citizen answers the template."""

    contents: tuple[OutboundContent, ...]
    used_template: bool = False
    held: tuple[OutboundContent, ...] = ()


def prepare_outbound(
    view: ConversationView,
    contents: Sequence[OutboundContent],
    now: datetime,
    template: str | None,
    *,
    default_language: str = "ca",
) -> PreparedOutbound:
    """Turn free-form ``contents`` into the account's re-engagement ``template`` when needed.

    Inside the window (or on a channel without one) the contents go out unchanged. Outside it,
    one :class:`~civicchat.messages.Template` named ``template`` goes out instead, in the
    conversation's language, with the first text as ``fallback_text``; the free-form contents are
    returned in ``held`` so the service can send them once the citizen replies (which reopens the
    window). Templates already in ``contents`` are kept; read receipts are dropped.

    Raises :class:`ValueError` if the window is closed and the account has no template: the service
    must not try a send that the provider will refuse.
    """
    if now.tzinfo is None:
        raise ValueError("prepare_outbound needs a zone-aware datetime")
    if window_is_open(view, now):
        return PreparedOutbound(tuple(contents))
    templates = tuple(c for c in contents if isinstance(c, Template))
    held = tuple(c for c in contents if not isinstance(c, Template | MarkRead))
    if not held:
        return PreparedOutbound(templates, used_template=bool(templates))
    if not template:
        raise ValueError(
            f"conversation {view.id}: the 24-hour window is closed and the account has no "
            "re-engagement template; configure one (e.g. reengagement_template='reprendre_conversa')"
        )
    first_text = next((c.body for c in held if isinstance(c, Text)), None)
    reengage = Template(
        name=template, language=view.language or default_language, fallback_text=first_text
    )
    return PreparedOutbound((*templates, reengage), used_template=True, held=held)
