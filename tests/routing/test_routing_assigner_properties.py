"""Random sequences of operations never break the assigner's guarantees."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from civicchat.exceptions import RoutingError
from civicchat.routing import (
    Assigner,
    AssignmentStrategy,
    ByLanguage,
    ByTeam,
    LeastBusy,
    Operator,
    Presence,
    RoundRobin,
    Sticky,
    WaitingConversation,
)

T0 = datetime(2026, 6, 15, 8, 0, tzinfo=UTC)
OPS = ("anna", "bob", "carme")

operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("enqueue"), st.integers(0, 19), st.integers(0, 3), st.sampled_from(["ca", "es"])
        ),
        st.tuples(st.just("presence"), st.sampled_from(OPS), st.sampled_from(list(Presence))),
        st.tuples(st.just("release"), st.integers(0, 19)),
        st.tuples(st.just("reply"), st.integers(0, 19)),
        st.tuples(st.just("transfer"), st.integers(0, 19), st.sampled_from(OPS)),
        st.tuples(st.just("tick"), st.integers(1, 15)),
    ),
    max_size=60,
)
strategies = st.sampled_from(["least", "rr", "sticky", "team"])


def _strategy(name: str) -> AssignmentStrategy:
    choices: dict[str, AssignmentStrategy] = {
        "least": LeastBusy(),
        "rr": RoundRobin(),
        "sticky": Sticky(ByLanguage(RoundRobin())),
        "team": ByTeam(LeastBusy(), strict=False),
    }
    return choices[name]


@settings(max_examples=80, deadline=None)
@given(ops=operations, name=strategies)
def test_assigner_invariants(ops: list[tuple[object, ...]], name: str) -> None:
    operators = [
        Operator("anna", capacity=2, languages=frozenset({"ca"})),
        Operator("bob", capacity=1, teams=frozenset({"t1"})),
        Operator("carme", capacity=3),
    ]
    assigner = Assigner(_strategy(name), operators=operators, reply_timeout=timedelta(minutes=10))
    capacity = {op.id: op.capacity for op in operators}
    now = T0
    known: set[str] = set()
    for op in ops:
        kind = op[0]
        if kind == "enqueue":
            cid = f"c{op[1]}"
            item = WaitingConversation(cid, now, priority=int(op[2]), language=str(op[3]))  # type: ignore[call-overload]
            if assigner.assignment(cid) is None:
                assigner.enqueue(item, now)
                known.add(cid)
        elif kind == "presence":
            assigner.set_presence(str(op[1]), op[2], now)  # type: ignore[arg-type]
        elif kind == "release":
            assigner.release(f"c{op[1]}", now)
            known.discard(f"c{op[1]}")
        elif kind == "reply":
            if assigner.assignment(f"c{op[1]}") is not None:
                assigner.operator_replied(f"c{op[1]}", now)
        elif kind == "transfer":
            # A refused transfer changes nothing; the invariants below still hold.
            with contextlib.suppress(RoutingError):
                assigner.transfer(f"c{op[1]}", str(op[2]), now)
        else:
            now += timedelta(minutes=int(op[1]))  # type: ignore[call-overload]
            assigner.check_timeouts(now)

        waiting = {i.conversation_id for i in assigner.waiting(now)}
        held = [cid for op_ in OPS for cid in assigner.held_by(op_)]
        # Every known conversation is in exactly one place.
        assert len(held) == len(set(held))
        assert waiting.isdisjoint(held)
        assert waiting | set(held) == known
        for op_ in assigner.operators:
            assert assigner.load(op_.id) <= capacity[op_.id]
            if op_.presence is Presence.OFFLINE:
                assert assigner.load(op_.id) == 0
        # Nothing is left behind while a free, available operator could take it (the "team"
        # strategy is not strict, and the others accept anyone).
        free = [
            o
            for o in assigner.operators
            if o.presence is Presence.AVAILABLE and assigner.load(o.id) < o.capacity
        ]
        assert not (waiting and free)
