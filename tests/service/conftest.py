from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from service_fakes import Service, running, start_service

from pg_helpers import PG_URL, fresh_pg_schema


@contextlib.asynccontextmanager
async def _served(tmp_path: Path, **options: str) -> AsyncIterator[Service]:
    """The service started on ``tmp_path`` (``start_service`` options), with an HTTP client."""
    app, fake, provider, path = await start_service(tmp_path, **options)
    async with running(app):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            yield Service(app, app.state.civicchat, client, fake, path)
    await provider.aclose()


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    async with _served(tmp_path) as served:
        yield served


@pytest.fixture
async def pg_service(tmp_path: Path) -> AsyncIterator[Service]:
    """The service on the real PostgreSQL (a fresh schema; skipped locally without one)."""
    async with fresh_pg_schema() as schema:
        extra = f"database_schema: {schema}\nlive: postgres"
        async with _served(tmp_path, database=PG_URL, extra=extra) as served:
            yield served
