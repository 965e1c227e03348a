from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from civicchat.exceptions import RoutingError
from civicchat.routing import (
    ALLOWED_TRANSITIONS,
    ConversationState,
    ConversationView,
    transition,
)

S = ConversationState
T0 = datetime(2026, 6, 15, 9, 0, tzinfo=UTC)


def _view() -> ConversationView:
    return ConversationView(id="c1", account="wa-010", channel="whatsapp", citizen_id="x")


def test_full_lifecycle_with_history() -> None:
    v = transition(_view(), S.QUEUED, at=T0, actor="bot", note="handoff")
    v = transition(v, S.ASSIGNED, at=T0 + timedelta(minutes=3), actor="system", operator="anna")
    v = transition(v, S.CLOSED, at=T0 + timedelta(minutes=20), actor="anna")
    v = transition(v, S.BOT, at=T0 + timedelta(days=2), actor="citizen")
    assert v.state is S.BOT
    assert [(h.from_state, h.to_state) for h in v.history] == [
        (S.BOT, S.QUEUED),
        (S.QUEUED, S.ASSIGNED),
        (S.ASSIGNED, S.CLOSED),
        (S.CLOSED, S.BOT),
    ]
    assert v.history[-1].note == "reopened"
    assert v.history[2].actor == "anna"
    assert v.last_operator == "anna"
    assert v.assigned_operator is None
    assert v.queued_at is None


def test_queue_age_survives_a_bounce_from_an_operator() -> None:
    v = transition(_view(), S.QUEUED, at=T0, actor="bot")
    v = transition(v, S.ASSIGNED, at=T0 + timedelta(minutes=5), actor="system", operator="anna")
    assert v.assigned_at == T0 + timedelta(minutes=5)
    v = transition(v, S.QUEUED, at=T0 + timedelta(minutes=30), actor="system")
    assert v.queued_at == T0


@pytest.mark.parametrize("start", list(S))
@pytest.mark.parametrize("to", list(S))
def test_only_allowed_transitions(start: ConversationState, to: ConversationState) -> None:
    view = _view().replace(state=start, assigned_operator="anna" if start is S.ASSIGNED else None)
    if (start, to) in ALLOWED_TRANSITIONS:
        after = transition(view, to, at=T0, actor="x", operator="bob")
        assert after.state is to
        assert view.state is start  # views are immutable
    else:
        with pytest.raises(RoutingError, match=f"cannot go from {start.value} to {to.value}"):
            transition(view, to, at=T0, actor="x", operator="bob")


def test_assigning_needs_an_operator_and_time_must_be_aware() -> None:
    queued = transition(_view(), S.QUEUED, at=T0, actor="bot")
    with pytest.raises(RoutingError, match="needs an operator"):
        transition(queued, S.ASSIGNED, at=T0, actor="system")
    with pytest.raises(ValueError, match="zone-aware"):
        transition(queued, S.CLOSED, at=datetime(2026, 1, 1), actor="x")
