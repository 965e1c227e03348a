from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from civicchat.cases.memory import MemoryCaseStore
from civicchat.cases.models import CaseStatus, NewCase
from civicchat.cases.retention import (
    RetentionAction,
    RetentionDecision,
    apply_retention,
    retention_decisions,
)

T0 = datetime(2024, 1, 10, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


async def seeded() -> tuple[MemoryCaseStore, dict[str, str]]:
    store = MemoryCaseStore()
    refs: dict[str, str] = {}
    for name, status, closed_at in [
        ("old_resolved", CaseStatus.RESOLVED, T0),
        ("old_rejected", CaseStatus.REJECTED, T0 + timedelta(days=1)),
        ("old_open", CaseStatus.IN_PROGRESS, T0),
        ("recent_resolved", CaseStatus.RESOLVED, NOW - timedelta(days=10)),
    ]:
        case = await store.create(
            NewCase(
                category="neteja",
                description="Brossa",
                channel="whatsapp",
                account="mataro",
                citizen_id="34600000001",
            ),
            prefix="MTR",
            at=T0,
            actor="citizen",
        )
        await store.update_status(case.reference, status, note="", actor="op", at=closed_at)
        refs[name] = case.reference
    return store, refs


async def test_decisions_only_touch_old_closed_cases() -> None:
    store, refs = await seeded()
    cases = await store.list_cases()
    decisions = retention_decisions(cases, retention_days=730, now=NOW)
    assert sorted(decisions, key=lambda d: d.reference) == [
        RetentionDecision(refs["old_resolved"], RetentionAction.ANONYMISE),
        RetentionDecision(refs["old_rejected"], RetentionAction.ANONYMISE),
    ]
    assert retention_decisions(cases, retention_days=5000, now=NOW) == []
    deletes = retention_decisions(cases, retention_days=730, now=NOW, mode="delete")
    assert {d.action for d in deletes} == {RetentionAction.DELETE}


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        retention_decisions([], retention_days=0, now=NOW)
    with pytest.raises(ValueError, match="zone-aware"):
        retention_decisions([], retention_days=1, now=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="shred"):
        retention_decisions([], retention_days=1, now=NOW, mode="shred")


async def test_apply_anonymises_once_in_batches() -> None:
    store, refs = await seeded()
    done = await apply_retention(store, retention_days=730, now=NOW, batch=1)
    assert {d.reference for d in done} == {refs["old_resolved"], refs["old_rejected"]}
    old = await store.get(refs["old_resolved"])
    assert old is not None
    assert old.citizen_id is None
    assert old.anonymised_at == NOW
    for kept in ("old_open", "recent_resolved"):
        case = await store.get(refs[kept])
        assert case is not None
        assert case.citizen_id == "34600000001"
    assert await apply_retention(store, retention_days=730, now=NOW + timedelta(days=1)) == []


async def test_apply_deletes_in_delete_mode() -> None:
    store, refs = await seeded()
    await apply_retention(store, retention_days=730, now=NOW)
    done = await apply_retention(
        store, retention_days=730, now=NOW + timedelta(days=731), mode="delete"
    )
    # The anonymised cases and the one closed later are all past the period by now.
    assert {d.reference for d in done} == {
        refs["old_resolved"],
        refs["old_rejected"],
        refs["recent_resolved"],
    }
    assert await store.get(refs["old_resolved"]) is None
    assert await store.get(refs["old_open"]) is not None
