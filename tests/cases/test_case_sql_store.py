"""What the SQL case store does beyond the contract: the Open311 schedule and transactions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from case_sql_targets import pg_case_engine, sqlite_case_engine

from civicchat.cases.models import NewCase
from civicchat.cases.sql import SqlCaseStore

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def engine(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    cases_sqlite_template: Path,
    cases_pg_schema: str | None,
) -> AsyncIterator[Any]:
    if request.param == "sqlite":
        made = await sqlite_case_engine(tmp_path, cases_sqlite_template)
    else:
        made = await pg_case_engine(cases_pg_schema)
    yield made
    await made.dispose()


def draft(n: int = 0) -> NewCase:
    return NewCase(
        category="neteja",
        description=f"Brutícia {n}",
        channel="webchat",
        account="mataro-web",
        citizen_id=f"visitor_{n:016d}",
    )


async def test_new_cases_are_due_for_open311_and_a_claim_hides_them_for_the_lease(engine: Any):
    store = SqlCaseStore(engine)
    first = await store.create(draft(1), prefix="MTR", at=T0, actor="citizen")
    minute = timedelta(minutes=1)
    second = await store.create(draft(2), prefix="MTR", at=T0 + minute, actor="citizen")
    lease = 5 * minute
    assert await store.claim_open311(T0, lease=lease) == [first.reference]
    assert await store.claim_open311(T0 + 2 * minute, lease=lease) == [second.reference]
    assert await store.claim_open311(T0 + 3 * minute, lease=lease) == []
    # The first claimer died: after its lease the case is taken again.
    assert await store.claim_open311(T0 + 6 * minute, lease=lease) == [first.reference]
    await store.schedule_open311(first.reference, None)  # e.g. rejected: never again
    await store.schedule_open311(second.reference, T0 + 60 * minute)
    assert await store.claim_open311(T0 + 59 * minute, lease=lease) == []
    assert await store.claim_open311(T0 + 61 * minute, lease=lease) == [second.reference]


async def test_concurrent_claims_never_take_the_same_case(engine: Any):
    store = SqlCaseStore(engine)
    made = [await store.create(draft(n), prefix="MTR", at=T0, actor="citizen") for n in range(12)]
    workers = [SqlCaseStore(engine) for _ in range(4)]  # as separate processes would
    claims = await asyncio.gather(
        *(w.claim_open311(T0, lease=timedelta(minutes=5), limit=5) for w in workers)
    )
    taken = [ref for claim in claims for ref in claim]
    assert len(taken) == len(set(taken))
    assert sorted(taken) == sorted(c.reference for c in made)


async def test_a_store_in_a_transaction_rolls_back_with_it(engine: Any):
    async with engine.connect() as conn:
        tx = await conn.begin()
        store = SqlCaseStore.in_transaction(conn)
        case = await store.create(draft(), prefix="MTR", at=T0, actor="citizen")
        assert (await store.get(case.reference)) is not None  # visible inside
        await tx.rollback()
    outside = SqlCaseStore(engine)
    assert await outside.get(case.reference) is None
    again = await outside.create(draft(), prefix="MTR", at=T0, actor="citizen")
    assert again.reference == "MTR-2026-000001"  # the rolled-back number was not spent


async def test_a_citizens_cases_are_found_for_privacy_requests(engine: Any):
    store = SqlCaseStore(engine)
    first = await store.create(draft(1), prefix="MTR", at=T0, actor="citizen")
    await store.create(draft(2), prefix="MTR", at=T0, actor="citizen")
    again = await store.create(draft(1), prefix="MTR", at=T0 + timedelta(hours=1), actor="citizen")
    found = await store.citizen_cases("webchat", "mataro-web", f"visitor_{1:016d}")
    assert [case.reference for case in found] == [first.reference, again.reference]
    assert await store.citizen_cases("whatsapp", "mataro-web", f"visitor_{1:016d}") == []
    await store.anonymise(first.reference, at=T0 + timedelta(days=1))
    found = await store.citizen_cases("webchat", "mataro-web", f"visitor_{1:016d}")
    assert [case.reference for case in found] == [again.reference]
