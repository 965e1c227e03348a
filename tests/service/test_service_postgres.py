from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from service_fakes import FakeProviders, running, signed_headers, wa_text, wait_for, write_config

from civicchat.exceptions import SchemaBehindError
from civicchat.service.app import create_app
from civicchat.service.config import load_config
from civicchat.service.live import PostgresLiveBus
from pg_helpers import PG_URL, fresh_pg_schema, migrate_pg_schema

pytestmark = pytest.mark.postgres

TS = int(datetime(2026, 11, 30, 9, 0, tzinfo=UTC).timestamp())


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    """An empty schema: the first test checks that the service refuses it until `db upgrade`."""
    async with fresh_pg_schema(migrate=False) as name:
        yield name


def _config(tmp_path: Path, schema: str) -> Path:
    return write_config(
        tmp_path,
        provider_base="http://fake",
        database=PG_URL,
        extra=f"database_schema: {schema}\nlive: postgres",
    )


async def test_postgres_needs_db_upgrade_before_the_service_starts(tmp_path: Path, schema: str):
    app = create_app(load_config(_config(tmp_path, schema), env={}), announce=lambda _l: None)
    with pytest.raises(SchemaBehindError, match="db upgrade"):
        async with running(app):
            pass


async def test_service_on_postgres_answers_and_uses_listen_notify(tmp_path: Path, schema: str):
    await migrate_pg_schema(schema)
    fake = FakeProviders()
    provider = httpx.AsyncClient(transport=httpx.ASGITransport(fake.app()), base_url="http://fake")
    app = create_app(
        load_config(_config(tmp_path, schema), env={}), client=provider, announce=lambda _l: None
    )
    state = app.state.civicchat
    assert isinstance(state.live, PostgresLiveBus)
    transport = httpx.ASGITransport(app)
    async with (
        running(app),
        httpx.AsyncClient(transport=transport, base_url="http://s") as c,
        state.live.subscribe("mataro-wa") as events,
    ):
        body = wa_text("wamid.pg.1", "PARAULES CLAU", ts=TS)
        response = await c.post(
            "/webhooks/whatsapp/mataro-wa", content=body, headers=signed_headers(body)
        )
        assert response.status_code == 200
        texts = await wait_for(lambda: len(fake.texts()) >= 2 and fake.texts())
        assert "Paraules clau" in texts[1]
        kinds = set()
        while not {"message_in", "message_out"} <= kinds:
            kinds.add((await anext(events)).kind)
    await provider.aclose()
