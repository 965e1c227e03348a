"""Opening a database: URLs, SQLite settings, migrations, the schema check, the CLI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine as sync_engine
from sqlalchemy import text
from storage_helpers import inbound

from civicchat.cli import main
from civicchat.exceptions import ConfigError, SchemaBehindError, StorageError
from civicchat.storage.engine import (
    _alembic_config,
    check_schema,
    create_engine,
    normalise_url,
    upgrade,
)
from civicchat.storage.schema import SCHEMA_REVISION, Base
from civicchat.storage.sql import SqlStore, open_store


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("civicchat.db", "sqlite+aiosqlite:///civicchat.db"),
        ("/var/lib/civicchat/c.db", "sqlite+aiosqlite:////var/lib/civicchat/c.db"),
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://u:p@db/civic", "postgresql+asyncpg://u:p@db/civic"),
        ("postgres://u@db/civic", "postgresql+asyncpg://u@db/civic"),
    ],
)
def test_urls_get_the_async_driver(given, expected):
    assert normalise_url(given) == expected


@pytest.mark.parametrize("bad", ["", ":memory:", "sqlite://", "mysql://u@h/db", "nonsense://"])
def test_unusable_urls_are_refused_clearly(bad):
    with pytest.raises(ConfigError):
        normalise_url(bad)


async def test_open_store_refuses_a_database_that_is_behind(empty_target):
    target = empty_target
    with pytest.raises(SchemaBehindError, match="civicchat db upgrade --url"):
        await open_store(target.url, schema=target.schema)
    engine = create_engine(target.url, schema=target.schema)
    try:
        assert await upgrade(engine) is None
        assert await upgrade(engine) == SCHEMA_REVISION  # idempotent
        await check_schema(engine)
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        with pytest.raises(StorageError, match="newer than this civicchat"):
            await check_schema(engine)
    finally:
        await engine.dispose()


def test_the_code_and_the_migrations_agree_on_the_head_revision():
    with sync_engine("sqlite://").connect() as conn:
        script = ScriptDirectory.from_config(_alembic_config(conn))
    assert script.get_current_head() == SCHEMA_REVISION


async def test_sqlite_runs_in_wal_with_normal_sync_and_a_busy_timeout(tmp_path):
    engine = create_engine(str(tmp_path / "c.db"))
    try:
        async with engine.connect() as conn:
            pragmas = {
                p: (await conn.exec_driver_sql(f"PRAGMA {p}")).scalar()
                for p in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            }
    finally:
        await engine.dispose()
    assert pragmas == {
        "journal_mode": "wal",
        "synchronous": 1,
        "busy_timeout": 30000,
        "foreign_keys": 1,
    }


async def test_a_store_opened_on_an_upgraded_database_works(empty_target):
    target = empty_target
    engine = create_engine(target.url, schema=target.schema)
    await upgrade(engine)
    await engine.dispose()
    store = await open_store(target.url, schema=target.schema)
    try:
        assert (await store.accept([inbound(1)])).accepted == 1
    finally:
        await store.close()


def test_cli_db_upgrade_then_check(tmp_path, capsys):
    url = str(tmp_path / "cli.db")
    assert main(["db", "check", "--url", url]) == 1
    assert "civicchat db upgrade" in capsys.readouterr().err
    assert main(["db", "upgrade", "--url", url]) == 0
    assert f"upgraded from empty to {SCHEMA_REVISION}" in capsys.readouterr().out
    assert main(["db", "upgrade", "--url", url]) == 0
    assert "already" in capsys.readouterr().out
    assert main(["db", "check", "--url", url]) == 0
    assert main(["db", "upgrade", "--url", "mysql://x@y/z"]) == 2
    assert "unsupported database" in capsys.readouterr().err


def test_cli_privacy_export_and_erase(tmp_path, capsys):
    url = str(tmp_path / "cli.db")
    assert main(["db", "upgrade", "--url", url]) == 0

    async def seed():
        store = await open_store(url)
        await store.accept([inbound(1)])
        async with store.transaction() as tx:
            await tx.contacts.identify("whatsapp", "acc1", "34600000001", name="Maria")
        await store.close()

    asyncio.run(seed())
    capsys.readouterr()
    args = ["--url", url, "--channel", "whatsapp", "--account", "acc1"]
    out = tmp_path / "export.json"
    assert main(["privacy", "export", *args, "--citizen", "34600000001", "-o", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["contact"]["name"] == "Maria"
    assert len(data["inbound_messages"]) == 1
    assert main(["privacy", "erase", *args, "--citizen", "34600000001", "--yes"]) == 0
    printed = capsys.readouterr().out
    assert "1 contact(s)" in printed
    assert "34600000001" not in printed  # masked
    assert main(["privacy", "export", *args, "--citizen", "34600000001", "-o", str(out)]) == 0
    assert json.loads(out.read_text())["inbound_messages"] == []
    assert main(["privacy", "retention", "--url", url, "--account", "acc1", "--days", "1"]) == 2


def test_cli_refuses_to_serve_a_database_that_is_behind(tmp_path, capsys):
    url = str(tmp_path / "old.db")
    args = ["--url", url, "--channel", "whatsapp", "--account", "a", "--citizen", "1"]
    assert main(["privacy", "export", *args]) == 2
    assert "civicchat db upgrade" in capsys.readouterr().err


def test_cli_privacy_accepts_the_service_configuration_and_user(tmp_path, monkeypatch, capsys):
    config = Path(__file__).parents[2] / "examples" / "mataro" / "config.yaml"
    url = str(tmp_path / "from-config.db")
    monkeypatch.setenv("CIVICCHAT_DATABASE_URL", url)
    assert main(["db", "upgrade"]) == 0

    async def seed():
        store = await open_store(url)
        await store.accept([inbound(1)])
        await store.close()

    asyncio.run(seed())
    capsys.readouterr()
    args = [str(config), "--channel", "whatsapp", "--account", "acc1", "--user", "34600000001"]
    assert main(["privacy", "export", *args]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["inbound_messages"]) == 1


async def test_an_older_schema_is_upgraded_in_place_and_matches_the_code(empty_target):
    target = empty_target
    engine = create_engine(target.url, schema=target.schema)
    try:
        await upgrade(engine, "0001")
        store = SqlStore(engine)
        await store.accept([inbound(1)])
        with pytest.raises(SchemaBehindError, match="is at schema 0001"):
            await check_schema(engine)
        assert await upgrade(engine) == "0001"
        await check_schema(engine)
        assert (await store.accept([inbound(1)])).duplicates == 1  # the data survived
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata
                )
            )
        assert diff == []  # the migrations build exactly the schema the code declares
    finally:
        await engine.dispose()


async def test_keyword_counts_keep_their_totals_across_the_shard_migration(empty_target):
    """0006 spreads a count over shards: the totals survive the upgrade, concurrent
    transactions add up, and a downgrade folds the shards back into one row."""
    from datetime import date

    from alembic import command

    from civicchat.storage.engine import _alembic_config

    target = empty_target
    engine = create_engine(target.url, schema=target.schema)
    day = date(2026, 3, 2)
    try:
        await upgrade(engine, "0005")
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO keyword_counts (account, keyword_id, day, count)"
                    " VALUES ('acc1', 'bus', :day, 7)"
                ),
                {"day": day},
            )
        await upgrade(engine)
        store = SqlStore(engine)

        async def count(by: int) -> None:
            async with store.transaction() as tx:
                await tx.keywords.count_keyword("acc1", "bus", day, by=by)

        # Concurrent transactions (on PostgreSQL they run side by side; shards keep them apart).
        await asyncio.gather(*(count(n) for n in range(1, 21)))
        async with store.transaction() as tx:
            (got,) = await tx.keywords.keyword_counts("acc1", day, day)
        assert (got.keyword_id, got.day, got.count) == ("bus", day, 7 + sum(range(1, 21)))

        def down(connection):
            command.downgrade(_alembic_config(connection), "0005")

        async with engine.begin() as conn:
            await conn.run_sync(down)
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT keyword_id, count FROM keyword_counts"))).all()
        assert [tuple(r) for r in rows] == [("bus", 7 + sum(range(1, 21)))]
    finally:
        await engine.dispose()
