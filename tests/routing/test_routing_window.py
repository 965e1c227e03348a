from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from civicchat.messages import MarkRead, OutboundContent, Template, Text
from civicchat.routing import (
    ConversationView,
    prepare_outbound,
    window_closes_at,
    window_is_open,
)

T0 = datetime(2026, 3, 27, 18, 1, tzinfo=UTC)


def _view(channel: str = "whatsapp", last: datetime | None = T0) -> ConversationView:
    return ConversationView(
        id="c1", account="a", channel=channel, citizen_id="x", language="es", last_inbound_at=last
    )


def test_window_is_24_hours_from_the_last_inbound_message() -> None:
    assert window_closes_at(T0) == T0 + timedelta(hours=24)
    assert window_closes_at(None) is None
    assert window_is_open(_view(), T0 + timedelta(hours=23, minutes=59))
    assert not window_is_open(_view(), T0 + timedelta(hours=24))
    assert not window_is_open(_view(last=None), T0)
    assert window_is_open(_view(channel="telegram", last=None), T0 + timedelta(days=9))


def test_closed_window_sends_the_template_and_holds_the_rest() -> None:
    monday = T0 + timedelta(hours=61)
    contents: list[OutboundContent] = [
        Text(body="Hola, som el 010"),
        MarkRead(message_id="w1"),
        Text(body="2"),
    ]
    prepared = prepare_outbound(_view(), contents, monday, "reprendre_conversa")
    assert prepared.contents == (
        Template(name="reprendre_conversa", language="es", fallback_text="Hola, som el 010"),
    )
    assert prepared.held == (Text(body="Hola, som el 010"), Text(body="2"))
    assert prepared.used_template


def test_templates_pass_and_a_missing_template_is_refused() -> None:
    later = T0 + timedelta(days=2)
    tpl = Template(name="avis", language="ca")
    assert prepare_outbound(_view(), [tpl], later, None).contents == (tpl,)
    with pytest.raises(ValueError, match="no re-engagement template"):
        prepare_outbound(_view(), [Text(body="x")], later, None)
    with pytest.raises(ValueError, match="zone-aware"):
        prepare_outbound(_view(), [Text(body="x")], datetime(2026, 1, 1), "t")
