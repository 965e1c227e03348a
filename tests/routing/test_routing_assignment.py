from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from civicchat.exceptions import RoutingError
from civicchat.routing import (
    Assign,
    Assigner,
    AssignmentStrategy,
    ByLanguage,
    ByTeam,
    ConversationState,
    ConversationView,
    Escalate,
    LeastBusy,
    Operator,
    OperatorLoad,
    Presence,
    Requeue,
    RoundRobin,
    Sticky,
    WaitingConversation,
    apply_decision,
    transition,
)

T0 = datetime(2026, 6, 15, 8, 0, tzinfo=UTC)
A = Presence.AVAILABLE


def _item(cid: str, minutes: int = 0, **kw: object) -> WaitingConversation:
    return WaitingConversation(cid, T0 + timedelta(minutes=minutes), **kw)  # type: ignore[arg-type]


def _loads(*ops: Operator, loads: Sequence[int] = ()) -> list[OperatorLoad]:
    return [OperatorLoad(op, loads[i] if loads else 0) for i, op in enumerate(ops)]


ANNA = Operator("anna", capacity=4, languages=frozenset({"ca"}), teams=frozenset({"mobilitat"}))
BOB = Operator("bob", capacity=2, languages=frozenset({"es"}))
CARME = Operator(
    "carme", capacity=3, languages=frozenset({"ca", "es"}), teams=frozenset({"tributs"})
)

STRATEGIES: list[AssignmentStrategy] = [
    RoundRobin(),
    LeastBusy(),
    ByLanguage(),
    ByLanguage(strict=True),
    ByTeam(),
    ByTeam(strict=False),
    Sticky(),
    Sticky(ByTeam(ByLanguage(RoundRobin()), strict=False)),
]


# ----------------------------------------------------------------------------- contract


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: type(s).__name__)
def test_strategy_contract_picks_only_candidates(strategy: AssignmentStrategy) -> None:
    assert isinstance(strategy, AssignmentStrategy)
    candidates = _loads(ANNA, BOB, CARME, loads=[1, 0, 2])
    for item in [
        _item("c1"),
        _item("c2", language="es"),
        _item("c3", team="tributs"),
        _item("c4", last_operator="bob"),
        _item("c5", team="nobody", language="fr"),
    ]:
        chosen = strategy.choose(item, candidates)
        assert chosen is None or chosen in {"anna", "bob", "carme"}
    # A plain conversation is always taken by somebody.
    assert strategy.choose(_item("c6"), candidates) is not None
    assert strategy.choose(_item("c7"), []) is None


# ----------------------------------------------------------------------------- strategies


def test_round_robin_takes_turns() -> None:
    rr = RoundRobin()
    candidates = _loads(CARME, ANNA, BOB)
    assert [rr.choose(_item(str(i)), candidates) for i in range(4)] == [
        "anna",
        "bob",
        "carme",
        "anna",
    ]


def test_least_busy_uses_the_share_of_capacity() -> None:
    # anna 2/4 = 0.5, bob 1/2 = 0.5, carme 1/3 = 0.33
    assert LeastBusy().choose(_item("c"), _loads(ANNA, BOB, CARME, loads=[2, 1, 1])) == "carme"
    # equal shares: whoever was assigned longest ago
    loads = [
        OperatorLoad(ANNA, 0, T0 + timedelta(minutes=5)),
        OperatorLoad(BOB, 0, T0),
    ]
    assert LeastBusy().choose(_item("c"), loads) == "bob"


def test_by_language_prefers_speakers() -> None:
    candidates = _loads(ANNA, BOB)
    assert ByLanguage().choose(_item("c", language="es"), candidates) == "bob"
    assert ByLanguage().choose(_item("c", language="ca"), candidates) == "anna"
    assert ByLanguage().choose(_item("c", language="fr"), candidates) is not None
    assert ByLanguage(strict=True).choose(_item("c", language="es"), _loads(ANNA)) is None


def test_by_team_keeps_topics_with_their_team() -> None:
    candidates = _loads(ANNA, CARME)
    assert ByTeam().choose(_item("c", team="tributs"), candidates) == "carme"
    assert ByTeam().choose(_item("c", team="mobilitat"), candidates) == "anna"
    assert ByTeam().choose(_item("c", team="tributs"), _loads(ANNA)) is None
    assert ByTeam(strict=False).choose(_item("c", team="tributs"), _loads(ANNA)) == "anna"


def test_sticky_returns_to_the_last_operator_when_free() -> None:
    candidates = _loads(ANNA, BOB, loads=[3, 0])
    assert Sticky().choose(_item("c", last_operator="anna"), candidates) == "anna"
    assert Sticky().choose(_item("c", last_operator="carme"), candidates) == "bob"


# ----------------------------------------------------------------------------- the assigner


def _assigner(*ops: Operator, strategy: AssignmentStrategy | None = None) -> Assigner:
    return Assigner(strategy or LeastBusy(), operators=ops, reply_timeout=timedelta(minutes=10))


def _assigned(decisions: Sequence[object]) -> list[tuple[str, str]]:
    return [(d.conversation_id, d.operator_id) for d in decisions if isinstance(d, Assign)]


def test_backlog_waits_for_an_operator_then_is_served_in_order() -> None:
    assigner = _assigner(Operator("anna", capacity=2))
    assert assigner.enqueue(_item("old", 0), T0) == []
    assigner.enqueue(_item("new", 5), T0)
    assigner.enqueue(_item("urgent", 9, priority=5), T0)
    assert [i.conversation_id for i in assigner.waiting(T0)] == ["urgent", "old", "new"]
    decisions = assigner.set_presence("anna", A, T0 + timedelta(minutes=10))
    assert _assigned(decisions) == [("urgent", "anna"), ("old", "anna")]
    assert assigner.load("anna") == 2
    # Capacity freed: the one left behind is served at once.
    assert _assigned(assigner.release("urgent", T0 + timedelta(minutes=20))) == [("new", "anna")]
    assert assigner.waiting(T0) == []


def test_windows_about_to_close_come_first() -> None:
    now = T0
    assigner = _assigner()
    assigner.enqueue(_item("vip", -600, priority=9), now)
    assigner.enqueue(_item("closing", -60, window_closes_at=now + timedelta(minutes=30)), now)
    assigner.enqueue(_item("closed", -900, window_closes_at=now - timedelta(hours=30)), now)
    assigner.enqueue(_item("later", -30, window_closes_at=now + timedelta(hours=20)), now)
    order = [i.conversation_id for i in assigner.waiting(now)]
    assert order == ["closing", "vip", "closed", "later"]


def test_enqueue_again_refreshes_the_window_but_keeps_the_age() -> None:
    assigner = _assigner()
    assigner.enqueue(_item("c1", 0, window_closes_at=T0 + timedelta(hours=1)), T0)
    assigner.enqueue(_item("c2", 5), T0)
    assert [i.conversation_id for i in assigner.waiting(T0)] == ["c1", "c2"]
    later = _item("c1", 30, window_closes_at=T0 + timedelta(hours=25))
    assigner.enqueue(later, T0)
    (refreshed, _) = assigner.waiting(T0)
    assert refreshed.queued_at == T0
    assert refreshed.window_closes_at == T0 + timedelta(hours=25)


def test_capacity_and_presence_are_respected() -> None:
    assigner = _assigner(Operator("anna", capacity=1, presence=A), Operator("bob", capacity=1))
    decisions = [*assigner.enqueue(_item("c1"), T0), *assigner.enqueue(_item("c2", 1), T0)]
    assert _assigned(decisions) == [("c1", "anna")]
    assigner.set_presence("anna", Presence.AWAY, T0)
    assert assigner.load("anna") == 1  # away keeps what they have
    assert assigner.release("c1", T0) == []  # ...but gets nothing new
    assert _assigned(assigner.set_presence("bob", A, T0)) == [("c2", "bob")]


def test_going_offline_hands_conversations_back() -> None:
    assigner = _assigner(Operator("anna", capacity=2, presence=A), Operator("bob", capacity=1))
    assigner.enqueue(_item("c1"), T0)
    assigner.enqueue(_item("c2", 1), T0)
    assigner.set_presence("bob", A, T0)
    decisions = assigner.set_presence("anna", Presence.OFFLINE, T0 + timedelta(minutes=3))
    requeued = [d.conversation_id for d in decisions if isinstance(d, Requeue)]
    assert requeued == ["c1", "c2"]
    assert _assigned(decisions) == [("c1", "bob")]
    assert [i.conversation_id for i in assigner.waiting(T0)] == ["c2"]
    assert assigner.load("anna") == 0


def test_no_reply_is_reassigned_then_escalated_once() -> None:
    assigner = _assigner(Operator("anna", presence=A), Operator("bob", presence=A))
    first = _assigned(assigner.enqueue(_item("c1"), T0))
    holder = first[0][1]
    other = "bob" if holder == "anna" else "anna"
    assert assigner.check_timeouts(T0 + timedelta(minutes=9)) == []
    moved = assigner.check_timeouts(T0 + timedelta(minutes=10))
    assert moved == [Assign("c1", other, reason="reassign", previous_operator=holder)]
    assert assigner.load(holder) == 0
    assigner.set_presence(holder, Presence.OFFLINE, T0 + timedelta(minutes=11))
    late = T0 + timedelta(minutes=25)
    escalated = assigner.check_timeouts(late)
    assert escalated == [Escalate("c1", other, timedelta(minutes=15))]
    assert assigner.check_timeouts(late + timedelta(minutes=30)) == []


def test_an_operator_reply_stops_the_timer() -> None:
    assigner = _assigner(Operator("anna", presence=A), Operator("bob", presence=A))
    assigner.enqueue(_item("c1"), T0)
    assigner.operator_replied("c1", T0 + timedelta(minutes=2))
    assert assigner.check_timeouts(T0 + timedelta(hours=2)) == []
    with pytest.raises(RoutingError, match="not assigned"):
        assigner.operator_replied("c9", T0)


def test_transfers() -> None:
    assigner = _assigner(
        Operator("anna", capacity=1, presence=A),
        Operator("bob", capacity=1, presence=A, teams=frozenset({"mobilitat"})),
        Operator("carme", capacity=1, presence=Presence.AWAY, teams=frozenset({"tributs"})),
        strategy=ByTeam(RoundRobin()),
    )
    assigner.enqueue(_item("c1"), T0)
    assert assigner.assignment("c1").operator_id == "anna"  # type: ignore[union-attr]
    with pytest.raises(RoutingError, match="away"):
        assigner.transfer("c1", "carme", T0)
    with pytest.raises(RoutingError, match="unknown operator"):
        assigner.transfer("c1", "dani", T0)
    with pytest.raises(RoutingError, match="already with"):
        assigner.transfer("c1", "anna", T0)
    assert assigner.transfer("c1", "bob", T0)[0] == Assign(
        "c1", "bob", reason="transfer", previous_operator="anna"
    )
    assigner.enqueue(_item("c2"), T0)
    with pytest.raises(RoutingError, match="at capacity"):
        assigner.transfer("c2", "bob", T0)
    decisions = assigner.transfer_to_team("c1", "tributs", T0)
    assert decisions[0] == Requeue("c1", "bob", reason="transfer to team tributs")
    assert _assigned(decisions) == []  # only carme is in tributs, and she is away
    assert _assigned(assigner.set_presence("carme", A, T0)) == [("c1", "carme")]


def test_a_strategy_cannot_break_the_rules() -> None:
    class Rogue:
        def choose(
            self, item: WaitingConversation, candidates: Sequence[OperatorLoad]
        ) -> str | None:
            return "mallory"

    assigner = _assigner(Operator("anna", presence=A), strategy=Rogue())
    with pytest.raises(RoutingError, match="not a free candidate"):
        assigner.enqueue(_item("c1"), T0)


def test_decisions_apply_to_conversation_views() -> None:
    view = ConversationView(id="c1", account="a", channel="whatsapp", citizen_id="x")
    view = transition(view, ConversationState.QUEUED, at=T0, actor="bot")
    view = apply_decision(view, Assign("c1", "anna"), T0)
    assert view.state is ConversationState.ASSIGNED
    assert view.assigned_operator == "anna"
    view = apply_decision(view, Assign("c1", "bob", "transfer", "anna"), T0)
    assert view.history[-1].note == "transfer from anna"
    view = apply_decision(view, Requeue("c1", "bob"), T0)
    assert view.state is ConversationState.QUEUED
    assert view.last_operator == "bob"
    assert apply_decision(view, Assign("other", "anna"), T0) is view
    waiting = WaitingConversation.from_view(view.replace(last_inbound_at=T0), T0)
    assert waiting.last_operator == "bob"
    assert waiting.window_closes_at == T0 + timedelta(hours=24)


def test_assignments_are_rebuilt_after_a_restart() -> None:
    assigner = _assigner(Operator("anna", capacity=1, presence=A), Operator("bob", presence=A))
    assigner.adopt(_item("c1"), "anna", T0, replied_at=T0 + timedelta(minutes=1))
    assigner.adopt(_item("c2"), "bob", T0)
    assert assigner.load("anna") == 1
    assert _assigned(assigner.enqueue(_item("c3"), T0)) == [("c3", "bob")]
    assigner.operator_replied("c3", T0 + timedelta(minutes=2))
    # c2 had no reply yet: its timer keeps running from the stored assignment time.
    assert assigner.check_timeouts(T0 + timedelta(minutes=10)) == [
        Escalate("c2", "bob", timedelta(minutes=10))
    ]
    with pytest.raises(RoutingError, match="already assigned"):
        assigner.adopt(_item("c1"), "bob", T0)
    with pytest.raises(RoutingError, match="unknown operator"):
        assigner.adopt(_item("c9"), "zoe", T0)
