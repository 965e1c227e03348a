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


async def test_the_pool_keeps_a_connection_for_every_worker_at_once(tmp_path: Path, schema: str):
    """At a peak every inbox and outbox worker holds a connection: they must all stay pooled
    afterwards, or the next peak opens new ones (a backend start and the driver's type
    introspection each)."""
    import asyncio

    from sqlalchemy import event, text

    await migrate_pg_schema(schema)
    config = load_config(_config(tmp_path, schema), env={})
    # More workers than the engine's default pool of 10 (the defaults, 2 + 4, fit in it).
    config = config.model_copy(
        update={"workers": config.workers.model_copy(update={"inbox": 8, "outbox": 4})}
    )
    inbox, outbox = config.workers.for_database(postgres=True)
    web_only = create_app(config, workers=False, announce=lambda _l: None)
    assert web_only.state.civicchat.store.engine.pool.size() == 10  # no workers: the default
    await web_only.state.civicchat.store.close()
    app = create_app(config, workers=True, announce=lambda _l: None)
    engine = app.state.civicchat.store.engine
    opened: list[int] = []
    event.listen(engine.sync_engine, "connect", lambda *_a: opened.append(1))
    peak = inbox + outbox + config.workers.media + 2

    async def hold(release: asyncio.Event) -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            await release.wait()

    try:
        for round_ in range(2):
            release = asyncio.Event()
            tasks = [asyncio.create_task(hold(release)) for _ in range(peak)]
            await asyncio.sleep(0.2)
            release.set()
            await asyncio.gather(*tasks)
            if round_ == 0:
                assert len(opened) == peak
                opened.clear()
        assert opened == []  # the second peak found every connection still pooled
    finally:
        await engine.dispose()
