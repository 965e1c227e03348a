"""The login rate limit is shared by every process of the service (through the database)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher
from console_helpers import PASSWORD, SECRET, START, MemoryBlobs, login
from sqlalchemy import func, select
from starlette.applications import Starlette

from civicchat.clock import ManualClock
from civicchat.service.console import ConsoleAccount, ConsoleContext, build_console_routes
from civicchat.service.console.security import LoginLimiter
from civicchat.service.live import InProcessLiveBus
from civicchat.storage.engine import create_engine
from civicchat.storage.schema import LoginFailureRow
from civicchat.storage.sql import SqlStore
from pg_helpers import PG_URL, fresh_pg_schema, migrate_file


@contextlib.asynccontextmanager
async def _two_stores(
    backend: str, tmp_path: Path, clock: ManualClock
) -> AsyncIterator[tuple[SqlStore, SqlStore]]:
    """Two stores on one database: what two service processes have."""
    async with contextlib.AsyncExitStack() as stack:
        if backend == "postgres":
            schema = await stack.enter_async_context(fresh_pg_schema())
            stores = [SqlStore(create_engine(PG_URL, schema=schema), clock=clock) for _ in range(2)]
        else:
            path = str(tmp_path / "console.db")
            await migrate_file(path)
            stores = [SqlStore(create_engine(path), clock=clock) for _ in range(2)]
        for store in stores:
            stack.push_async_callback(store.close)
        yield stores[0], stores[1]


def _console(store: SqlStore, clock: ManualClock) -> httpx.AsyncClient:
    ctx = ConsoleContext(
        store=store,
        accounts={"wa-a": ConsoleAccount("wa-a", "whatsapp", "WhatsApp 010")},
        live=InProcessLiveBus(),
        blobs=MemoryBlobs(),
        clock=clock,
        secret_key=SECRET,
        login_attempts=3,
        login_attempts_per_address=50,
    )
    app = Starlette(routes=build_console_routes(ctx))
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5000))
    return httpx.AsyncClient(transport=transport, base_url="https://console.test")


async def _failure_rows(store: SqlStore) -> list[str]:
    async with store.read_transaction() as tx:
        return list((await tx.connection.execute(select(LoginFailureRow.key))).scalars())


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_failures_in_one_process_count_in_the_other(backend: str, tmp_path: Path) -> None:
    clock = ManualClock(START)
    async with _two_stores(backend, tmp_path, clock) as (one, two):
        pw = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
        async with one.transaction() as tx:
            await tx.operators.add_operator(
                account="wa-a", name="Anna", login="anna", password_hash=pw
            )
        async with _console(one, clock) as first, _console(two, clock) as second:
            assert (await login(first, "anna", "guess 1")).status_code == 401
            assert (await login(first, "anna", "guess 2")).status_code == 401
            assert (await login(second, "Anna", "guess 3")).status_code == 401
            # Three failures in all: both processes refuse, even the right password.
            for client in (second, first):
                blocked = await login(client, "anna")
                assert blocked.status_code == 429
                assert "Massa intents fallits" in blocked.text
                assert 0 < int(blocked.headers["retry-after"]) <= 15 * 60 + 1
            keys = await _failure_rows(two)
            assert len(keys) == 6  # per login name and per address, three times
            assert not [k for k in keys if "anna" in k.lower() or "203.0.113" in k]

            clock.advance(timedelta(minutes=15, seconds=1))
            # A failure after the window prunes the old rows: the table does not grow.
            assert (await login(second, "other", "guess")).status_code == 401
            assert len(await _failure_rows(one)) == 2
            assert (await login(second, "anna")).status_code == 303


async def test_a_success_clears_the_login_for_every_process(tmp_path: Path) -> None:
    clock = ManualClock(START)
    async with _two_stores("sqlite", tmp_path, clock) as (one, two):
        pw = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
        async with one.transaction() as tx:
            await tx.operators.add_operator(
                account="wa-a", name="Anna", login="anna", password_hash=pw
            )
        async with _console(one, clock) as first, _console(two, clock) as second:
            for n in range(2):
                assert (await login(first, "anna", f"guess {n}")).status_code == 401
            assert (await login(second, "anna")).status_code == 303
            assert (await login(first, "anna", "guess 3")).status_code == 401
            assert (await login(first, "anna", "guess 4")).status_code == 401
            assert (await login(second, "anna")).status_code == 303  # 2 failures since: allowed
        async with one.read_transaction() as tx:
            rows = await tx.connection.scalar(select(func.count()).select_from(LoginFailureRow))
        assert rows == 4  # the address keeps its failures; the login's were cleared twice


async def test_without_the_database_the_limit_is_counted_in_memory() -> None:
    limiter = LoginLimiter(per_login=2, per_address=3, window=timedelta(minutes=15))
    for n in range(2):
        assert await limiter.blocked_for("Anna", "203.0.113.7", START) is None
        await limiter.failed("Anna", "203.0.113.7", START + timedelta(minutes=n))
    assert await limiter.blocked_for("anna", "198.51.100.1", START) == timedelta(minutes=15)
    await limiter.succeeded("ANNA")
    assert await limiter.blocked_for("anna", "203.0.113.7", START) is None
    await limiter.failed("bob", "203.0.113.7", START)  # the address's third
    assert await limiter.blocked_for("carla", "203.0.113.7", START) == timedelta(minutes=15)
    later = START + timedelta(minutes=15, seconds=1)
    assert await limiter.blocked_for("carla", "203.0.113.7", later) is None
