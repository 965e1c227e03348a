"""The contract every case store keeps (``CaseStore`` and ``CaseUpkeep``).

A new implementation joins by adding a factory to ``STORE_FACTORIES`` (the SQL store: one line
that builds it on a fresh database); every test below then runs against it too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from case_sql_targets import pg_case_engine, sqlite_case_engine

from civicchat.cases.base import CaseStore, CaseUpkeep
from civicchat.cases.errors import CaseNotFoundError
from civicchat.cases.memory import MemoryCaseStore
from civicchat.cases.models import (
    CaseKind,
    CaseLocation,
    CaseStatus,
    ChangeKind,
    MediaRef,
    NewCase,
    Open311Link,
)
from civicchat.cases.sql import SqlCaseStore
from civicchat.messages import MediaKind


@dataclass
class Place:
    """Where a factory may build its store, and what to clean up after the test."""

    tmp_path: Path
    sqlite_template: Path
    pg_schema: str | None
    engines: list[Any] = field(default_factory=list)


async def _memory(place: Place) -> MemoryCaseStore:
    return MemoryCaseStore()


async def _sqlite(place: Place) -> SqlCaseStore:
    engine = await sqlite_case_engine(place.tmp_path, place.sqlite_template)
    place.engines.append(engine)
    return SqlCaseStore(engine)


async def _postgres(place: Place) -> SqlCaseStore:
    engine = await pg_case_engine(place.pg_schema)  # fails, not skips, if required and down
    place.engines.append(engine)
    return SqlCaseStore(engine)


# Each factory builds a store on a fresh database.
STORE_FACTORIES: dict[str, Callable[[Place], Awaitable[Any]]] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "postgres": _postgres,
}

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


@pytest.fixture(params=sorted(STORE_FACTORIES))
async def any_store(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    cases_sqlite_template: Path,
    cases_pg_schema: str | None,
) -> AsyncIterator[Any]:
    place = Place(tmp_path, cases_sqlite_template, cases_pg_schema)
    try:
        yield await STORE_FACTORIES[request.param](place)
    finally:
        for engine in place.engines:
            await engine.dispose()


def draft(**changes: Any) -> NewCase:
    values: dict[str, Any] = {
        "kind": CaseKind.COMPLAINT,
        "category": "neteja",
        "description": "Brutícia a la plaça",
        "media": (
            MediaRef(
                media_kind=MediaKind.VIDEO, ref="vid-1", channel="telegram", mime_type="video/mp4"
            ),
        ),
        "location": CaseLocation(
            latitude=41.54, longitude=2.444, address="Plaça Gran", inside_boundary=True
        ),
        "channel": "telegram",
        "account": "mataro_bot",
        "citizen_id": "tg-12345",
        "language": "es",
        "department": "neteja",
    }
    values.update(changes)
    return NewCase(**values)


async def test_implements_both_protocols(any_store: Any) -> None:
    assert isinstance(any_store, CaseStore)
    assert isinstance(any_store, CaseUpkeep)


async def test_create_numbers_per_prefix_and_year_and_keeps_every_field(any_store: Any) -> None:
    first = await any_store.create(draft(), prefix="MTR", at=T0, actor="citizen")
    second = await any_store.create(
        draft(), prefix="MTR", at=T0 + timedelta(hours=1), actor="citizen"
    )
    other = await any_store.create(draft(), prefix="GRN", at=T0, actor="citizen")
    next_year = await any_store.create(
        draft(), prefix="MTR", at=datetime(2027, 1, 1, 0, 5, tzinfo=UTC), actor="citizen"
    )
    assert [first.reference, second.reference, other.reference, next_year.reference] == [
        "MTR-2026-000001",
        "MTR-2026-000002",
        "GRN-2026-000001",
        "MTR-2027-000001",
    ]
    got = await any_store.get("MTR-2026-000001")
    assert got == first
    assert got.status is CaseStatus.RECEIVED
    assert got.kind is CaseKind.COMPLAINT
    assert got.media[0].ref == "vid-1"
    assert got.location.address == "Plaça Gran"
    assert got.language == "es"
    assert got.created_at == T0
    assert [c.kind for c in got.history] == [ChangeKind.CREATED]
    assert got.history[0].actor == "citizen"


async def test_concurrent_creations_never_share_a_reference(any_store: Any) -> None:
    cases = await asyncio.gather(
        *(any_store.create(draft(), prefix="MTR", at=T0, actor="citizen") for _ in range(40))
    )
    references = sorted(c.reference for c in cases)
    assert references == [f"MTR-2026-{n:06d}" for n in range(1, 41)]


async def test_get_unknown_is_none(any_store: Any) -> None:
    assert await any_store.get("MTR-2026-000001") is None


async def test_list_filters_newest_first(any_store: Any) -> None:
    a = await any_store.create(draft(category="neteja"), prefix="MTR", at=T0, actor="c")
    b = await any_store.create(
        draft(category="parcs", department="parcs"),
        prefix="MTR",
        at=T0 + timedelta(minutes=1),
        actor="c",
    )
    c = await any_store.create(
        draft(category="neteja"), prefix="MTR", at=T0 + timedelta(minutes=2), actor="c"
    )
    await any_store.update_status(
        c.reference, CaseStatus.IN_PROGRESS, note="", actor="op", at=T0 + timedelta(hours=1)
    )
    refs = lambda cases: [x.reference for x in cases]  # noqa: E731
    assert refs(await any_store.list_cases()) == [c.reference, b.reference, a.reference]
    assert refs(await any_store.list_cases(category="neteja")) == [c.reference, a.reference]
    assert refs(await any_store.list_cases(status=CaseStatus.RECEIVED)) == [
        b.reference,
        a.reference,
    ]
    assert refs(await any_store.list_cases(status=CaseStatus.IN_PROGRESS, category="neteja")) == [
        c.reference
    ]
    assert refs(await any_store.list_cases(department="parcs")) == [b.reference]
    assert refs(await any_store.list_cases(limit=1)) == [c.reference]
    assert await any_store.list_cases(status=CaseStatus.REJECTED) == []


async def test_status_changes_and_assignments_are_logged(any_store: Any) -> None:
    case = await any_store.create(draft(), prefix="MTR", at=T0, actor="citizen")
    later = T0 + timedelta(days=1)
    moved = await any_store.assign(
        case.reference, "via_publica", note="És un forat", actor="op:anna", at=later
    )
    assert moved.department == "via_publica"
    done = await any_store.update_status(
        case.reference, CaseStatus.RESOLVED, note="Reparat", actor="op:anna", at=later
    )
    assert done.status is CaseStatus.RESOLVED
    assert done.updated_at == later
    assert [(c.kind, c.note, c.actor) for c in done.history[1:]] == [
        (ChangeKind.ASSIGNED, "És un forat", "op:anna"),
        (ChangeKind.STATUS, "Reparat", "op:anna"),
    ]
    assert done.history[2].status is CaseStatus.RESOLVED
    assert await any_store.get(case.reference) == done


async def test_changes_to_an_unknown_case_fail_clearly(any_store: Any) -> None:
    with pytest.raises(CaseNotFoundError):
        await any_store.update_status(
            "MTR-2026-000009", CaseStatus.RESOLVED, note="", actor="op", at=T0
        )
    with pytest.raises(CaseNotFoundError):
        await any_store.assign("MTR-2026-000009", "oac", note="", actor="op", at=T0)
    with pytest.raises(CaseNotFoundError):
        await any_store.record_forwarding(
            "MTR-2026-000009", Open311Link(), note="", actor="x", at=T0
        )
    with pytest.raises(CaseNotFoundError):
        await any_store.anonymise("MTR-2026-000009", at=T0)


async def test_naive_times_are_refused(any_store: Any) -> None:
    with pytest.raises(ValueError, match="zone-aware"):
        await any_store.create(draft(), prefix="MTR", at=datetime(2026, 1, 1), actor="c")


async def test_forwarding_outcomes_are_recorded(any_store: Any) -> None:
    case = await any_store.create(draft(), prefix="MTR", at=T0, actor="citizen")
    failed = await any_store.record_forwarding(
        case.reference,
        Open311Link(last_error="Open311 (500): down", attempts=3),
        note="Open311 (500): down",
        actor="open311",
        at=T0,
    )
    assert failed.open311.last_error == "Open311 (500): down"
    assert failed.history[-1].kind is ChangeKind.FORWARD_FAILED
    ok = await any_store.record_forwarding(
        case.reference,
        Open311Link(service_request_id="638344", attempts=4, forwarded_at=T0),
        note="Open311: 638344",
        actor="open311",
        at=T0,
    )
    assert ok.open311.service_request_id == "638344"
    assert ok.open311.last_error is None
    assert ok.history[-1].kind is ChangeKind.FORWARDED


async def test_closed_before_anonymise_and_delete(any_store: Any) -> None:
    old_open = await any_store.create(draft(), prefix="MTR", at=T0, actor="c")
    old_closed = await any_store.create(draft(), prefix="MTR", at=T0, actor="c")
    await any_store.update_status(
        old_closed.reference,
        CaseStatus.RESOLVED,
        note="Fet. Trucar al 600 000 000",
        actor="op",
        at=T0,
    )
    recent = await any_store.create(draft(), prefix="MTR", at=T0, actor="c")
    await any_store.update_status(
        recent.reference, CaseStatus.REJECTED, note="", actor="op", at=T0 + timedelta(days=50)
    )
    cutoff = T0 + timedelta(days=10)
    found = await any_store.closed_before(cutoff)
    assert [c.reference for c in found] == [old_closed.reference]
    assert old_open.reference not in [c.reference for c in found]

    now = T0 + timedelta(days=800)
    gone = await any_store.anonymise(old_closed.reference, at=now)
    assert gone.citizen_id is None
    assert gone.description == ""
    assert gone.media == ()
    assert gone.location.address is None
    assert gone.location.latitude == 41.54
    assert all("600" not in c.note for c in gone.history)
    assert gone.anonymised_at == now
    assert gone.status is CaseStatus.RESOLVED
    assert gone.category == "neteja"
    assert await any_store.get(old_closed.reference) == gone
    later = now + timedelta(days=800)
    assert [c.reference for c in await any_store.closed_before(later)] == [recent.reference]
    with_anonymised = await any_store.closed_before(later, include_anonymised=True)
    assert {c.reference for c in with_anonymised} == {recent.reference, old_closed.reference}

    assert await any_store.delete(recent.reference) is True
    assert await any_store.delete(recent.reference) is False
    assert await any_store.get(recent.reference) is None


async def test_a_deleted_reference_is_never_reused(any_store: Any) -> None:
    first = await any_store.create(draft(), prefix="MTR", at=T0, actor="c")
    await any_store.delete(first.reference)
    second = await any_store.create(draft(), prefix="MTR", at=T0, actor="c")
    assert second.reference == "MTR-2026-000002"
