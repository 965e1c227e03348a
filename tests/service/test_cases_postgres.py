"""The report flow on PostgreSQL: the case is created in the inbox transaction of the message."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cases_service_helpers import CASES_EXTRA, case_service

from pg_helpers import PG_URL, fresh_pg_schema

pytestmark = pytest.mark.postgres


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    async with fresh_pg_schema() as name:
        yield name


async def test_a_report_on_postgres_gets_its_reference_and_answers_its_status(
    tmp_path: Path, schema: str
):
    extra = f"{CASES_EXTRA}\ndatabase_schema: {schema}\nlive: memory"
    async with case_service(tmp_path, extra=extra, database=PG_URL) as svc:
        await svc.web(1, text="tinc una incidència")
        await svc.web(2, text="3")
        await svc.web(3, text="Hi ha vidres trencats a la vorera")
        await svc.web(4, text="no")
        await svc.web(5, location={"latitude": 41.5385, "longitude": 2.4447})
        done = " ".join(await svc.web(6, text="sí"))
        assert "MTR-2026-000001" in done
        case = await svc.state.runtime.cases.cases.get("MTR-2026-000001")
        assert case is not None
        assert case.description == "Hi ha vidres trencats a la vorera"
        status = " ".join(await svc.web(7, text="estat MTR-2026-000001"))
        assert "rebuda" in status
