"""The login rate limit is shared by every process of the service (through the database)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher
from console_helpers import PASSWORD, SECRET, START, MemoryBlobs, form_token, login
from sqlalchemy import func, select
from starlette.applications import Starlette

from civicchat.clock import ManualClock
from civicchat.service.console import ConsoleAccount, ConsoleContext, auth, build_console_routes
from civicchat.service.console.security import FailureStore, LoginLimiter, MemoryLoginFailures
from civicchat.service.live import InProcessLiveBus
from civicchat.storage.engine import create_engine
from civicchat.storage.login_sql import LoginFailures, failure_key
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


def _app(
    store: SqlStore, clock: ManualClock, *, shared: bool = True, secret: str = SECRET
) -> Starlette:
    ctx = ConsoleContext(
        store=store,
        accounts={"wa-a": ConsoleAccount("wa-a", "whatsapp", "WhatsApp 010")},
        live=InProcessLiveBus(),
        blobs=MemoryBlobs(),
        clock=clock,
        secret_key=secret,
        login_attempts=3,
        login_attempts_per_address=50,
        shared_login_limit=shared,
    )
    return Starlette(routes=build_console_routes(ctx))


def _client(app: Starlette) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5000))
    return httpx.AsyncClient(transport=transport, base_url="https://console.test")


def _console(store: SqlStore, clock: ManualClock, secret: str = SECRET) -> httpx.AsyncClient:
    return _client(_app(store, clock, secret=secret))


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
    here, there = "203.0.113.7", "198.51.100.1"
    for n in range(2):  # each attempt counts before its password is checked
        assert await limiter.attempt("Anna", here, START + timedelta(minutes=n)) is None
    assert await limiter.attempt("anna", there, START) == timedelta(minutes=15)
    # The second attempt was right: the login's failures go, and so does its count here.
    await limiter.succeeded("ANNA", here, START + timedelta(minutes=1))
    assert await limiter.blocked_for("anna", there, START) is None
    assert await limiter.attempt("bob", here, START) is None
    assert await limiter.attempt("bob", here, START) is None  # the address's third
    assert await limiter.attempt("carla", here, START) == timedelta(minutes=15)
    later = START + timedelta(minutes=15, seconds=1)
    assert await limiter.attempt("carla", here, later) is None


@pytest.mark.parametrize(
    ("backend", "shared"),
    [
        ("sqlite", True),
        pytest.param("postgres", True, marks=pytest.mark.postgres),
        ("sqlite", False),
    ],
)
async def test_simultaneous_wrong_logins_reach_the_password_check_at_most_the_limit(
    backend: str, shared: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock(START)
    checked: list[str] = []
    real_verify = auth.verify_password

    def slow_verify(password_hash: str, password: str) -> bool:
        checked.append(password)
        time.sleep(0.05)  # a real argon2 check takes longer: every try is in flight at once
        return real_verify(password_hash, password)

    monkeypatch.setattr(auth, "verify_password", slow_verify)
    async with _two_stores(backend, tmp_path, clock) as (one, _):
        pw = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
        async with one.transaction() as tx:
            await tx.operators.add_operator(
                account="wa-a", name="Anna", login="anna", password_hash=pw
            )
        app = _app(one, clock, shared=shared)  # one process: the in-memory count is its own
        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(_client(app)) for _ in range(12)]
            tokens = [form_token((await c.get("/login")).text) for c in clients]

            async def attempt(n: int) -> int:
                data = {"login": "anna", "password": f"guess {n}", "csrf_token": tokens[n]}
                return (await clients[n].post("/login", data=data)).status_code

            statuses = await asyncio.gather(*(attempt(n) for n in range(12)))
        # Each try is counted before its check; one that finds more than the limit counted is
        # refused (when all are counted before any looks, all are: the safe side).
        assert len(checked) <= 3  # login_attempts
        assert sorted(statuses) == [401] * len(checked) + [429] * (12 - len(checked))
        async with _client(app) as late:
            assert (await login(late, "anna")).status_code == 429  # even the right password


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_stored_keys_are_keyed_with_the_secret_and_only_one_secret_shares_counts(
    backend: str, tmp_path: Path
) -> None:
    clock = ManualClock(START)
    other_secret = "another-deployment-secret-key-0123456789abcdef"
    async with _two_stores(backend, tmp_path, clock) as (one, two):
        async with _console(one, clock) as first:
            assert (await login(first, "anna", "guess")).status_code == 401
        stored = set(await _failure_rows(one))
        address = "address:203.0.113.7"
        unkeyed = hashlib.blake2b(address.encode(), digest_size=32, person=b"cc-login").hexdigest()
        assert unkeyed not in stored  # what an offline search of the 2^32 addresses would find
        assert failure_key(address, SECRET) in stored
        assert failure_key(address, other_secret) not in stored
        window = START - timedelta(minutes=15)
        # Another process of the same deployment (same secret) sees the count...
        same = await LoginFailures(two, SECRET).since(["login:anna", address], window)
        assert {k: n for k, (n, _) in same.items()} == {"login:anna": 1, address: 1}
        # ...a store keyed with another secret does not.
        assert await LoginFailures(two, other_secret).since(["login:anna", address], window) == {}
        async with _console(two, clock, other_secret) as elsewhere:
            for n in range(3):  # its own three failures, not four
                assert (await login(elsewhere, "anna", f"guess {n}")).status_code == 401
            assert (await login(elsewhere, "anna")).status_code == 429


def test_failures_need_a_secret_key(tmp_path: Path) -> None:
    store = SqlStore(create_engine(str(tmp_path / "unused.db")))
    with pytest.raises(ValueError, match="secret key"):
        LoginFailures(store, "")


@contextlib.asynccontextmanager
async def _failure_store(backend: str, tmp_path: Path) -> AsyncIterator[FailureStore]:
    if backend == "memory":
        yield MemoryLoginFailures()
        return
    async with _two_stores(backend, tmp_path, ManualClock(START)) as (one, _):
        yield LoginFailures(one, SECRET)


@pytest.mark.parametrize(
    "backend", ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_every_failure_store_keeps_the_same_contract(backend: str, tmp_path: Path) -> None:
    minute = timedelta(minutes=1)
    window = timedelta(minutes=15)
    async with _failure_store(backend, tmp_path) as store:
        assert await store.since(["login:anna"], START - window) == {}
        for n in range(3):
            at = START + n * minute
            await store.record(["login:anna", "address:a"], at, prune_before=at - window)
        await store.record(["login:bob"], START, prune_before=START - window)
        assert await store.since(["login:anna", "address:a", "login:carla"], START - window) == {
            "login:anna": (3, START),
            "address:a": (3, START),
        }
        # Only failures after ``since`` count, and the oldest of those is reported.
        assert await store.since(["login:anna"], START) == {"login:anna": (2, START + minute)}
        await store.discard("address:a", START + minute)  # one attempt, not the key
        await store.discard("address:a", START + 9 * minute)  # nothing at that time: nothing
        await store.clear("login:anna")
        assert await store.since(["login:anna", "address:a"], START - window) == {
            "address:a": (2, START)
        }
        # A failure a window later forgets what came before it.
        late = START + window + 5 * minute
        await store.record(["address:a"], late, prune_before=late - window)
        assert await store.since(["address:a", "login:bob"], START - window) == {
            "address:a": (1, late)
        }


async def test_the_memory_store_stays_bounded_under_a_spray_of_logins() -> None:
    store = MemoryLoginFailures(max_failures=100)
    for n in range(250):
        at = START + timedelta(seconds=n)
        await store.record([f"login:user{n}"], at, prune_before=at - timedelta(minutes=15))
    kept = await store.since([f"login:user{n}" for n in range(250)], START - timedelta(hours=1))
    assert sorted(kept) == sorted(f"login:user{n}" for n in range(150, 250))  # the newest
