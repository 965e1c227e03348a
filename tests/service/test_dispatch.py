"""The dispatcher: automatic operator assignment on SQLite and PostgreSQL.

PostgreSQL tests fail (not skip) when the server is down and ``CIVICCHAT_REQUIRE_POSTGRES=1``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import os
import random
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher
from console.console_helpers import PASSWORD, SECRET, MemoryBlobs, login_as
from service_fakes import FakeProviders, running, signed_headers, wa_text, wait_for, write_config
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from starlette.applications import Starlette

from civicchat.clock import ManualClock
from civicchat.exceptions import ConfigError
from civicchat.messages import InboundMessage, OutboundMessage, Sender, Text
from civicchat.routing import ByLanguage, LeastBusy, RoundRobin, Sticky
from civicchat.service.app import create_app
from civicchat.service.config import AssignmentConfig, load_config
from civicchat.service.console import ConsoleAccount, ConsoleContext, build_console_routes
from civicchat.service.dispatch import (
    PRESENCE_TIMEOUT,
    RETURNED_KEY,
    AccountAssignment,
    Dispatcher,
    build_strategy,
    is_escalated,
    office_hours_file,
)
from civicchat.service.live import InProcessLiveBus, LiveEvent
from civicchat.storage import SqlStore
from civicchat.storage.assignment_sql import ReplyTimes, assignment_queries
from civicchat.storage.base import Conversation, Operator, OperatorRole, Presence
from civicchat.storage.engine import create_engine
from civicchat.storage.schema import AssignmentRow, ConversationRow
from pg_helpers import (
    PG_URL,
    empty_pg_schema,
    require_postgres,
    shared_pg_schema,
    sqlite_template,
)

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- fixtures


@dataclass(frozen=True)
class Target:
    backend: str
    url: str
    schema: str | None = None


@pytest.fixture(scope="module")
def sqlite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sqlite_template(tmp_path_factory.mktemp("dispatch"))


@pytest.fixture(scope="module")
def pg_schema() -> Iterator[str | None]:
    """One migrated schema for the module."""
    yield from shared_pg_schema()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def target(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_file: Path, pg_schema: str | None
) -> AsyncIterator[Target]:
    if request.param == "sqlite":
        path = tmp_path / "civicchat.db"
        shutil.copyfile(sqlite_file, path)
        yield Target("sqlite", str(path))
        return
    if pg_schema is None:
        await require_postgres()  # fails (CI) or skips
        pytest.fail("PostgreSQL answers now but did not when the module started")
    await empty_pg_schema(pg_schema)
    yield Target("postgres", PG_URL, pg_schema)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
async def store(target: Target, clock: ManualClock) -> AsyncIterator[SqlStore]:
    s = SqlStore(create_engine(target.url, schema=target.schema), clock=clock)
    try:
        yield s
    finally:
        await s.close()


# --------------------------------------------------------------------------- builders


async def add_operator(
    store: SqlStore,
    name: str,
    *,
    account: str = "acc",
    capacity: int = 3,
    presence: Presence = Presence.AVAILABLE,
    languages: tuple[str, ...] = ("ca", "es"),
    role: OperatorRole = OperatorRole.OPERATOR,
) -> Operator:
    async with store.transaction() as tx:
        op = await tx.operators.add_operator(
            account=account,
            name=name,
            login=f"{name}-{uuid.uuid4().hex[:6]}",
            password_hash="x",
            capacity=capacity,
            languages=languages,
            role=role,
        )
        op = dataclasses.replace(op, presence=presence)
        await tx.operators.save_operator(op)
    return op


async def set_presence(store: SqlStore, op: Operator, presence: Presence) -> Operator:
    op = dataclasses.replace(op, presence=presence)
    async with store.transaction() as tx:
        await tx.operators.save_operator(op)
    return op


async def queued(
    store: SqlStore,
    citizen: str,
    *,
    account: str = "acc",
    channel: str = "telegram",
    queued_at: datetime = T0,
    priority: int = 0,
    language: str | None = "ca",
    last_inbound_at: datetime | None = None,
) -> int:
    async with store.transaction() as tx:
        contact = await tx.contacts.identify(channel, account, citizen)
        conv = await tx.conversations.create(
            channel=channel,
            account=account,
            contact_id=contact.id,
            recipient_id=citizen,
            state="queued",
        )
        await tx.conversations.save(
            dataclasses.replace(
                conv,
                queued_at=queued_at,
                priority=priority,
                language=language,
                last_inbound_at=last_inbound_at or queued_at,
            )
        )
    return conv.id


async def conv(store: SqlStore, cid: int) -> Conversation:
    async with store.transaction() as tx:
        found = await tx.conversations.get(cid)
    assert found is not None
    return found


async def open_assignments(store: SqlStore) -> dict[int, int]:
    """Open assignment rows per conversation (more than one would be a double assignment)."""
    async with store.transaction() as tx:
        conn = tx.connection
        rows = await conn.execute(
            select(AssignmentRow.conversation_id, func.count())
            .where(AssignmentRow.released_at.is_(None))
            .group_by(AssignmentRow.conversation_id)
        )
        return {int(c): int(n) for c, n in rows}


async def held(store: SqlStore, account: str = "acc") -> dict[int, list[int]]:
    """Operator id -> conversation ids they hold."""
    out: dict[int, list[int]] = {}
    async with store.transaction() as tx:
        for c in await tx.conversations.list(account, states=["assigned"], limit=1000):
            assert c.assigned_operator is not None
            out.setdefault(c.assigned_operator, []).append(c.id)
    return out


async def close(store: SqlStore, cid: int, at: datetime) -> None:
    async with store.transaction() as tx:
        c = await tx.conversations.get(cid)
        assert c is not None
        await tx.conversations.save(dataclasses.replace(c, state="closed", assigned_operator=None))
        await tx.assignments.release(cid, at)


def dispatcher(
    store: SqlStore,
    clock: ManualClock,
    *names: str,
    live: InProcessLiveBus | None = None,
    accounts: tuple[AccountAssignment, ...] | None = None,
) -> Dispatcher:
    strategy = build_strategy(names or ("least_busy",))
    return Dispatcher(
        store,
        accounts or (AccountAssignment("acc", strategy),),
        clock=clock,
        live=live,
    )


# --------------------------------------------------------------------------- behaviour


async def test_backlog_is_assigned_when_an_operator_becomes_available(
    store: SqlStore, clock: ManualClock
) -> None:
    ids = [await queued(store, f"c{i}", queued_at=T0 + timedelta(minutes=i)) for i in range(5)]
    anna = await add_operator(store, "anna", capacity=3, presence=Presence.OFFLINE)
    bob = await add_operator(store, "bob", capacity=5, presence=Presence.AWAY)
    d = dispatcher(store, clock)

    assert (await d.run_round()).assigned == ()  # nobody available: everything waits

    await set_presence(store, anna, Presence.AVAILABLE)
    result = await d.run_round()
    assert sorted(c for c, _ in result.assigned) == ids[:3]  # the oldest three, up to capacity
    assert {op for _, op in result.assigned} == {anna.id}
    first = await conv(store, ids[0])
    assert first.state == "assigned"
    assert first.assigned_operator == anna.id
    assert first.assigned_at == clock.now()
    async with store.transaction() as tx:
        history = await tx.history.entries(ids[0])
    assert (history[-1].from_state, history[-1].to_state, history[-1].actor) == (
        "queued",
        "assigned",
        "system",
    )

    await set_presence(store, bob, Presence.AVAILABLE)
    result = await d.run_round()
    assert sorted(c for c, _ in result.assigned) == ids[3:]  # nothing left behind
    assert {op for _, op in result.assigned} == {bob.id}
    assert await open_assignments(store) == dict.fromkeys(ids, 1)


async def test_capacity_is_never_exceeded_and_nothing_is_left_behind(
    store: SqlStore, clock: ManualClock
) -> None:
    rng = random.Random(4)
    ops = [await add_operator(store, f"op{i}", capacity=rng.randint(1, 4)) for i in range(4)]
    capacity = {op.id: op.capacity for op in ops}
    backlog = [
        await queued(store, f"c{i}", queued_at=T0 + timedelta(seconds=i), priority=i % 3)
        for i in range(20)
    ]
    d = dispatcher(store, clock, "round_robin")
    for step in range(6):
        await d.run_round()
        now_held = await held(store)
        for op_id, convs in now_held.items():
            assert len(convs) <= capacity[op_id]
        busy = sum(len(v) for v in now_held.values())
        waiting = len(backlog) - busy - step * 2
        # Every free seat is taken while anyone waits.
        assert busy == sum(capacity.values()) or waiting == 0
        # Two conversations end; their seats go to the backlog in the next round.
        for cid in [c for convs in now_held.values() for c in convs][:2]:
            await close(store, cid, clock.now())
        clock.advance(timedelta(seconds=30))
    assert all(n == 1 for n in (await open_assignments(store)).values())


async def test_order_is_window_closing_first_then_priority_then_age(
    store: SqlStore, clock: ManualClock
) -> None:
    old = await queued(store, "old", queued_at=T0 - timedelta(hours=1))
    urgent = await queued(store, "high", queued_at=T0 - timedelta(minutes=5), priority=2)
    # The citizen wrote 23.5 hours ago on WhatsApp: 30 minutes left to answer freely.
    window = await queued(
        store,
        "wa",
        channel="whatsapp",
        queued_at=T0 - timedelta(minutes=1),
        last_inbound_at=T0 - timedelta(hours=23, minutes=30),
    )
    await add_operator(store, "anna", capacity=1)
    d = dispatcher(store, clock)
    order = []
    for _ in range(3):
        (got,) = (await d.run_round()).assigned
        order.append(got[0])
        await close(store, got[0], clock.now())
    assert order == [window, urgent, old]


async def test_no_reply_after_the_timeout_reassigns_to_another_available_operator(
    store: SqlStore, clock: ManualClock
) -> None:
    cid = await queued(store, "c1")
    anna = await add_operator(store, "anna", capacity=2)
    d = dispatcher(store, clock)
    assert (await d.run_round()).assigned == ((cid, anna.id),)
    bob = await add_operator(store, "bob", capacity=2)

    clock.advance(timedelta(minutes=9))
    assert (await d.run_round()).reassigned == ()  # not yet

    clock.advance(timedelta(minutes=2))
    result = await d.run_round()
    assert result.reassigned == ((cid, bob.id),)
    after = await conv(store, cid)
    assert after.assigned_operator == bob.id
    assert after.last_operator == anna.id
    assert await open_assignments(store) == {cid: 1}
    async with store.transaction() as tx:
        history = await tx.history.entries(cid)
        assert [o.id for o in await tx.operators.operators("acc")] == [anna.id, bob.id]
    assert history[-1].note == f"reassign from {anna.id}"
    assert (await held(store)) == {bob.id: [cid]}


async def test_an_operator_reply_stops_the_timer(store: SqlStore, clock: ManualClock) -> None:
    cid = await queued(store, "c1")
    await add_operator(store, "anna")
    d = dispatcher(store, clock)
    await d.run_round()
    clock.advance(timedelta(minutes=3))
    c = await conv(store, cid)
    async with store.transaction() as tx:
        await tx.conversations.save(dataclasses.replace(c, last_operator_reply_at=clock.now()))
    await add_operator(store, "bob")
    clock.advance(timedelta(minutes=30))
    result = await d.run_round()
    assert result.reassigned == ()
    assert result.escalated == ()


async def test_no_reply_and_nobody_free_escalates_once_with_a_flag_and_a_live_event(
    store: SqlStore, clock: ManualClock
) -> None:
    cid = await queued(store, "c1")
    anna = await add_operator(store, "anna")
    live = InProcessLiveBus()
    d = dispatcher(store, clock, live=live)
    await d.run_round()
    assert not is_escalated(await conv(store, cid))
    clock.advance(timedelta(minutes=11))
    async with live.subscribe("acc") as events:
        result = await d.run_round()
        event = await asyncio.wait_for(anext(events), 1)
    assert result.escalated == ((cid, anna.id),)
    assert (event.kind, event.conversation_id, event.data["operator"]) == (
        "escalated",
        cid,
        anna.id,
    )
    flagged = await conv(store, cid)
    assert is_escalated(flagged)
    assert flagged.assigned_operator == anna.id

    clock.advance(timedelta(minutes=11))
    assert (await d.run_round()).escalated == ()  # once, not every round

    async with store.transaction() as tx:
        await tx.conversations.save(
            dataclasses.replace(flagged, last_operator_reply_at=clock.now())
        )
    assert not is_escalated(await conv(store, cid))  # the operator answered


async def test_sticky_prefers_the_operator_who_helped_last(
    store: SqlStore, clock: ManualClock
) -> None:
    anna = await add_operator(store, "anna", capacity=3)
    bob = await add_operator(store, "bob", capacity=3)
    busy = await queued(store, "other")
    cid = await queued(store, "citizen")
    async with store.transaction() as tx:
        await tx.assignments.assign(cid, bob.id, T0 - timedelta(days=2))
        await tx.assignments.release(cid, T0 - timedelta(days=2, minutes=-20))
        # Bob already holds one: least busy alone would pick Anna.
        c = await tx.conversations.get(busy)
        assert c is not None
        await tx.conversations.save(
            dataclasses.replace(c, state="assigned", assigned_operator=bob.id)
        )
        await tx.assignments.assign(busy, bob.id, T0)

    plain = await dispatcher(store, clock).run_round()
    assert plain.assigned == ((cid, anna.id),)

    await close(store, cid, T0)
    async with store.transaction() as tx:
        c = await tx.conversations.get(cid)
        assert c is not None
        await tx.assignments.assign(cid, bob.id, T0 - timedelta(hours=2))  # Bob helped last
        await tx.assignments.release(cid, T0 - timedelta(hours=1))
        # The citizen writes again later: a new wait.
        await tx.conversations.save(dataclasses.replace(c, state="queued", queued_at=T0))
    sticky = await dispatcher(store, clock, "sticky", "by_language", "least_busy").run_round()
    assert sticky.assigned == ((cid, bob.id),)


async def test_an_operator_who_logs_out_gives_their_conversations_to_the_queue(
    store: SqlStore, clock: ManualClock
) -> None:
    first = await queued(store, "c1", queued_at=T0 - timedelta(minutes=30))
    second = await queued(store, "c2", queued_at=T0 - timedelta(minutes=20))
    anna = await add_operator(store, "anna", capacity=2)
    d = dispatcher(store, clock)
    await d.run_round()
    bob = await add_operator(store, "bob", capacity=1)
    await set_presence(store, anna, Presence.OFFLINE)
    clock.advance(timedelta(minutes=1))

    result = await d.run_round()
    assert sorted(result.requeued) == [(first, anna.id), (second, anna.id)]
    assert result.assigned == ((first, bob.id),)  # the older one, to whoever is free
    waiting = await conv(store, second)
    assert waiting.state == "queued"
    assert waiting.queued_at == T0 - timedelta(minutes=20)  # keeps its age
    assert waiting.last_operator == anna.id
    assert await open_assignments(store) == {first: 1}
    async with store.transaction() as tx:
        notes = [e.note for e in await tx.history.entries(second)]
    assert notes[-1] == "operator_offline"


async def test_a_conversation_sent_back_to_the_queue_goes_to_someone_else(
    store: SqlStore, clock: ManualClock
) -> None:
    cid = await queued(store, "c1")
    anna = await add_operator(store, "anna")
    d = dispatcher(store, clock, "sticky", "least_busy")
    assert (await d.run_round()).assigned == ((cid, anna.id),)
    bob = await add_operator(store, "bob")
    clock.advance(timedelta(minutes=2))
    async with store.transaction() as tx:  # what the console's "transfer to the queue" does
        c = await tx.conversations.get(cid)
        assert c is not None
        await tx.conversations.save(dataclasses.replace(c, state="queued", assigned_operator=None))
        await tx.assignments.release(cid, clock.now())
    assert (await d.run_round()).assigned == ((cid, bob.id),)  # not straight back to Anna


async def test_two_rounds_at_once_never_double_assign(
    target: Target, store: SqlStore, clock: ManualClock
) -> None:
    ops = [await add_operator(store, f"op{i}", capacity=3) for i in range(3)]
    ids = [await queued(store, f"c{i}", queued_at=T0 + timedelta(seconds=i)) for i in range(20)]
    # Two tasks on one store, and two stores (two connections, as two processes would have).
    other = SqlStore(create_engine(target.url, schema=target.schema), clock=clock)
    try:
        rounds = [
            dispatcher(store, clock).run_round(),
            dispatcher(store, clock).run_round(),
            dispatcher(other, clock).run_round(),
            dispatcher(other, clock).run_round(),
        ]
        results = await asyncio.gather(*rounds)
    finally:
        await other.close()
    assigned = [c for r in results for c, _ in r.assigned]
    assert len(assigned) == len(set(assigned)) == 9
    assert sorted(assigned) == ids[:9]
    assert all(n == 1 for n in (await open_assignments(store)).values())
    assert all(len(v) <= 3 for v in (await held(store)).values())
    assert set(await held(store)) == {op.id for op in ops}
    async with store.transaction() as tx:
        entries = [e for cid in ids for e in await tx.history.entries(cid)]
    assert len([e for e in entries if e.to_state == "assigned"]) == 9


async def test_an_operator_of_one_account_never_gets_another_accounts_conversation(
    store: SqlStore, clock: ManualClock
) -> None:
    mine = await queued(store, "a1", account="acct-a")
    theirs = await queued(store, "b1", account="acct-b")
    anna = await add_operator(store, "anna", account="acct-a", capacity=5)
    d = dispatcher(
        store,
        clock,
        accounts=(
            AccountAssignment("acct-a", LeastBusy()),
            AccountAssignment("acct-b", LeastBusy()),
        ),
    )
    result = await d.run_round()
    assert result.assigned == ((mine, anna.id),)
    assert (await conv(store, theirs)).state == "queued"


async def test_a_group_operator_serves_every_account_of_the_group_within_one_capacity(
    store: SqlStore, clock: ManualClock
) -> None:
    for i in range(2):
        await queued(store, f"w{i}", account="city-wa", channel="whatsapp")
        await queued(store, f"t{i}", account="city-tg")
    anna = await add_operator(store, "anna", account="city", capacity=3)
    await add_operator(store, "root", account="city", role=OperatorRole.ADMIN)
    d = dispatcher(
        store,
        clock,
        accounts=(
            AccountAssignment("city-wa", LeastBusy(), group="city"),
            AccountAssignment("city-tg", LeastBusy(), group="city"),
        ),
    )
    result = await d.run_round()
    assert len(result.assigned) == 3
    assert {op for _, op in result.assigned} == {anna.id}
    assert (await d.run_round()).assigned == ()  # full: the fourth waits


async def test_a_conversation_changed_by_an_operator_meanwhile_is_left_alone(
    store: SqlStore, clock: ManualClock
) -> None:
    cid = await queued(store, "c1")
    await add_operator(store, "anna")
    async with store.transaction() as tx:
        c = await tx.conversations.get(cid)
        assert c is not None
        await tx.conversations.save(dataclasses.replace(c, state="bot"))
    assert (await dispatcher(store, clock).run_round()).assigned == ()


async def test_run_forever_runs_a_round_on_a_live_event_and_stops(
    store: SqlStore, clock: ManualClock
) -> None:
    cid = await queued(store, "c1")
    anna = await add_operator(store, "anna", presence=Presence.AWAY)
    live = InProcessLiveBus()
    d = Dispatcher(
        store, [AccountAssignment("acc", LeastBusy())], clock=clock, live=live, interval=60
    )
    task = asyncio.create_task(d.run_forever())
    try:
        for _ in range(100):  # the first round and the subscription
            if live.subscriber_count:
                break
            await asyncio.sleep(0.01)
        await set_presence(store, anna, Presence.AVAILABLE)
        await live.publish(LiveEvent("acc", "presence", data={"operator": anna.id}))
        for _ in range(200):
            if (await conv(store, cid)).state == "assigned":
                break
            await asyncio.sleep(0.01)
        assert (await conv(store, cid)).assigned_operator == anna.id
    finally:
        d.stop()
        await asyncio.wait_for(task, 5)


# --------------------------------------------------------------------------- configuration


def test_strategies_compose_left_to_right() -> None:
    strategy = build_strategy(["sticky", "by_language", "least_busy"])
    assert isinstance(strategy, Sticky)
    assert isinstance(strategy.then, ByLanguage)
    assert isinstance(strategy.then.then, LeastBusy)
    assert isinstance(build_strategy(["round_robin"]), RoundRobin)
    assert isinstance(build_strategy(["sticky"]).then, LeastBusy)  # type: ignore[attr-defined]


def test_assignment_config_validates_names_and_order() -> None:
    assert AssignmentConfig.model_validate({"strategy": "by_team"}).strategy == (
        "by_team",
        "least_busy",
    )
    assert AssignmentConfig().reply_timeout_minutes == 10
    with pytest.raises(ValueError, match="unknown strategy 'fastest'"):
        AssignmentConfig.model_validate({"strategy": ["fastest"]})
    with pytest.raises(ValueError, match="put them last"):
        AssignmentConfig.model_validate({"strategy": ["least_busy", "sticky"]})
    with pytest.raises(ValueError, match="greater than 0"):
        AssignmentConfig.model_validate({"reply_timeout_minutes": 0})
    with pytest.raises(ConfigError):
        build_strategy([])


def test_mataro_config_assigns_sticky_then_by_language_then_least_busy(tmp_path: Path) -> None:
    config = load_config(ROOT / "examples/mataro/config.yaml", env={})
    web = next(a for a in config.accounts if a.name == "mataro-web")
    assert web.assignment is not None
    assert web.assignment.strategy == ("sticky", "by_language", "least_busy")
    assert web.assignment.reply_timeout_minutes == 10
    store = SqlStore(create_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"))
    d = Dispatcher.from_config(config, store, None, ManualClock(T0))
    assert set(d.accounts) == {a.name for a in config.enabled_accounts}
    assert d.accounts["mataro-web"].pool == "mataro"
    assert isinstance(d.accounts["mataro-web"].strategy, Sticky)


def test_the_example_of_docs_routing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    text = (ROOT / "docs" / "routing.md").read_text(encoding="utf-8")
    section = text[text.index("## Automatic assignment") :]
    (block,) = re.findall(r"```py\n(.*?)```", section, flags=re.DOTALL)
    out = io.StringIO()
    monkeypatch.chdir(ROOT)
    with contextlib.redirect_stdout(out):
        exec(compile(block, "docs/routing.md", "exec"), {"__name__": "docs_example"})
    assert out.getvalue().splitlines() == ["True"]


# --------------------------------------------------------------------------- console


async def test_console_presence_starts_a_round_and_the_queue_shows_the_escalation(
    tmp_path: Path, sqlite_file: Path
) -> None:
    shutil.copyfile(sqlite_file, tmp_path / "console.db")
    clock = ManualClock(T0)
    store = SqlStore(create_engine(str(tmp_path / "console.db")), clock=clock)
    live = InProcessLiveBus()
    accounts = {"wa-a": ConsoleAccount("wa-a", "whatsapp", "WhatsApp 010", group="city-a")}
    ctx = ConsoleContext(
        store=store,
        accounts=accounts,
        live=live,
        blobs=MemoryBlobs(),
        clock=clock,
        secret_key=SECRET,
    )
    app = Starlette(routes=build_console_routes(ctx))
    pw = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
    async with store.transaction() as tx:
        op = await tx.operators.add_operator(
            account="city-a", name="Op", login="op", password_hash=pw
        )
        await tx.operators.add_operator(
            account="city-a",
            name="Sup",
            login="sup",
            password_hash=pw,
            role=OperatorRole.SUPERVISOR,
        )
    cid = await queued(store, "34600000001", account="wa-a", channel="whatsapp")
    d = Dispatcher(
        store,
        [AccountAssignment("wa-a", LeastBusy(), group="city-a")],
        clock=clock,
        live=live,
        interval=60,
    )
    task = asyncio.create_task(d.run_forever())
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="https://c.test") as client:
            for _ in range(100):
                if live.subscriber_count:
                    break
                await asyncio.sleep(0.01)
            csrf = await login_as(client, "op")
            for presence in ("away", "available"):  # back from a break
                response = await client.post(
                    "/console/presence",
                    data={"presence": presence},
                    headers={"X-CSRF-Token": csrf, "X-Requested-With": "fetch"},
                )
                assert response.status_code == 204
            for _ in range(200):
                if (await conv(store, cid)).state == "assigned":
                    break
                await asyncio.sleep(0.01)
            assert (await conv(store, cid)).assigned_operator == op.id

            clock.advance(timedelta(minutes=11))  # no reply, nobody else available
            assert (await d.run_round()).escalated == ((cid, op.id),)
            await login_as(client, "sup")
            page = (await client.get("/console")).text
        row = page[page.index(f'data-conversation="{cid}"') :]
        assert "sense resposta: avisat el supervisor" in row[: row.index("</tr>")]
    finally:
        d.stop()
        await asyncio.wait_for(task, 5)
        await store.close()


# --------------------------------------------------------------------------- console moves


async def console_app(store: SqlStore, clock: ManualClock) -> Starlette:
    """The console on ``store`` (account ``acc``, operators registered on ``acc``)."""
    ctx = ConsoleContext(
        store=store,
        accounts={"acc": ConsoleAccount("acc", "telegram", "Telegram")},
        live=InProcessLiveBus(),
        blobs=MemoryBlobs(),
        clock=clock,
        secret_key=SECRET,
    )
    return Starlette(routes=build_console_routes(ctx))


async def console_operator(
    store: SqlStore, login: str, presence: Presence, *, role: OperatorRole = OperatorRole.OPERATOR
) -> Operator:
    pw = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
    async with store.transaction() as tx:
        op = await tx.operators.add_operator(
            account="acc", name=login.title(), login=login, password_hash=pw, role=role
        )
        op = dataclasses.replace(op, presence=presence)
        await tx.operators.save_operator(op)
    return op


@contextlib.asynccontextmanager
async def console_client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="https://c.test") as client:
        yield client


async def assigned_entries(store: SqlStore, cid: int) -> int:
    async with store.transaction() as tx:
        return len([e for e in await tx.history.entries(cid) if e.to_state == "assigned"])


async def test_two_console_takes_of_one_conversation_at_once_one_wins_one_is_refused(
    target: Target, store: SqlStore, clock: ManualClock
) -> None:
    anna = await console_operator(store, "anna", Presence.AVAILABLE)
    bob = await console_operator(store, "bob", Presence.AVAILABLE)
    # Two stores: two connection pools, as two service processes would have.
    other = SqlStore(create_engine(target.url, schema=target.schema), clock=clock)
    try:
        apps = [await console_app(store, clock), await console_app(other, clock)]
        async with console_client(apps[0]) as c1, console_client(apps[1]) as c2:
            tokens = [await login_as(c1, "anna"), await login_as(c2, "bob")]
            for n in range(5):
                cid = await queued(store, f"c{n}")
                responses = await asyncio.gather(
                    *(
                        c.post(f"/console/conversations/{cid}/take", data={"csrf_token": t})
                        for c, t in zip((c1, c2), tokens, strict=True)
                    )
                )
                codes = sorted(r.status_code for r in responses)
                assert codes == [303, 409], codes
                loser = responses[[r.status_code for r in responses].index(409)]
                assert "Un altre operador ja té aquesta conversa." in loser.text
                winner = (anna, bob)[[r.status_code for r in responses].index(303)]
                assert (await conv(store, cid)).assigned_operator == winner.id
                assert await assigned_entries(store, cid) == 1
            assert all(n == 1 for n in (await open_assignments(store)).values())
            assert len(await open_assignments(store)) == 5
    finally:
        await other.close()


async def test_a_console_take_racing_a_dispatch_round_never_double_assigns(
    target: Target, store: SqlStore, clock: ManualClock
) -> None:
    anna = await add_operator(store, "anna", capacity=10)  # the dispatcher's choice
    bob = await console_operator(store, "bob", Presence.AWAY)  # never picked by the dispatcher
    other = SqlStore(create_engine(target.url, schema=target.schema), clock=clock)
    outcomes: set[str] = set()
    try:
        async with console_client(await console_app(other, clock)) as client:
            token = await login_as(client, "bob")
            for n in range(6):
                cid = await queued(store, f"c{n}")
                take = client.post(f"/console/conversations/{cid}/take", data={"csrf_token": token})
                response, result = await asyncio.gather(take, dispatcher(store, clock).run_round())
                holder = (await conv(store, cid)).assigned_operator
                if response.status_code == 303:  # bob first: the round leaves it alone
                    assert holder == bob.id
                    assert result.assigned == ()
                    outcomes.add("console")
                else:  # the round first: bob is told a colleague has it
                    assert response.status_code == 409
                    assert holder == anna.id
                    assert result.assigned == ((cid, anna.id),)
                    outcomes.add("dispatcher")
                assert await assigned_entries(store, cid) == 1
            assert all(n == 1 for n in (await open_assignments(store)).values())
            assert len(await open_assignments(store)) == 6
    finally:
        await other.close()
    assert outcomes  # which wins depends on timing; both are correct


async def test_reply_times_find_the_first_message_nobody_answered(
    store: SqlStore, clock: ManualClock
) -> None:
    cid = await queued(store, "34600000009", channel="whatsapp")

    async def citizen(n: int) -> None:
        msg = InboundMessage(
            channel="whatsapp",
            account="acc",
            provider_message_id=f"wamid.rt.{n}",
            sender=Sender(id="34600000009"),
            timestamp=clock.now(),
            content=Text(body=f"missatge {n}"),
        )
        await store.accept([msg])
        event = await store.claim_event("test", lease_seconds=30)
        assert event is not None
        async with store.transaction() as tx:
            await tx.complete_event(event.id, "test", conversation_id=cid)

    async def times() -> ReplyTimes:
        async with store.read_transaction() as tx:
            return (await assignment_queries(tx).reply_times([cid]))[cid]

    await citizen(1)
    assert await times() == ReplyTimes(None, T0)
    clock.advance(timedelta(minutes=1))
    async with store.transaction() as tx:
        reply = OutboundMessage(
            channel="whatsapp", account="acc", recipient_id="34600000009", content=Text(body="ok")
        )
        await tx.enqueue([reply], key_prefix="op:req-1", conversation_id=cid)
        await tx.enqueue([reply], key_prefix="bot:7", conversation_id=cid)  # not an operator
    assert await times() == ReplyTimes(T0 + timedelta(minutes=1), None)
    for n in (2, 3):
        clock.advance(timedelta(minutes=1))
        await citizen(n)
    assert await times() == ReplyTimes(T0 + timedelta(minutes=1), T0 + timedelta(minutes=2))


# --------------------------------------------------------------------------- the service


async def test_the_service_assigns_a_message_queued_by_the_bot_to_an_available_operator(
    tmp_path: Path,
) -> None:
    path = write_config(tmp_path, provider_base="http://fake")
    text_ = path.read_text(encoding="utf-8").replace(
        "    group: mataro\n", "    group: mataro\n    assignment: {strategy: [by_language]}\n"
    )
    path.write_text(text_, encoding="utf-8")
    fake = FakeProviders()
    provider = httpx.AsyncClient(transport=httpx.ASGITransport(fake.app()), base_url="http://fake")
    app = create_app(load_config(path, env={}), client=provider, announce=lambda _l: None)
    state = app.state.civicchat
    transport = httpx.ASGITransport(app)
    try:
        async with running(app), httpx.AsyncClient(transport=transport, base_url="http://s") as c:
            anna = await add_operator(state.store, "anna", account="mataro", capacity=2)
            # Monday 30 November 2026, 10:00 in Mataró: the office is open.
            ts = int(datetime(2026, 11, 30, 9, 0, tzinfo=UTC).timestamp())
            body = wa_text("wamid.disp.1", "hola, tinc un dubte personal", ts=ts)
            response = await c.post(
                "/webhooks/whatsapp/mataro-wa", content=body, headers=signed_headers(body)
            )
            assert response.status_code == 200

            async def assigned() -> Conversation | None:
                async with state.store.transaction() as tx:
                    found = await tx.conversations.list("mataro-wa", states=["assigned"])
                return found[0] if found else None

            got = await wait_for(assigned)
            assert got.assigned_operator == anna.id
    finally:
        await provider.aclose()


# --------------------------------------------------------------------------- presence and hours


async def seen(store: SqlStore, op: Operator, at: datetime) -> None:
    async with store.transaction() as tx:
        await assignment_queries(tx).mark_seen(op.id, at)


async def test_an_available_operator_not_seen_for_the_timeout_is_set_away(
    store: SqlStore, clock: ManualClock
) -> None:
    anna = await add_operator(store, "anna")
    bob = await add_operator(store, "bob")  # never seen (no console): left as he is
    await seen(store, anna, T0)
    d = dispatcher(store, clock)
    clock.advance(PRESENCE_TIMEOUT - timedelta(seconds=1))
    assert (await d.run_round()).away == ()
    clock.advance(timedelta(seconds=2))
    first = await queued(store, "c1", queued_at=clock.now())
    result = await d.run_round()
    assert result.away == (anna.id,)
    assert result.assigned == ((first, bob.id),)  # not to Anna, who left
    async with store.transaction() as tx:
        stored = await tx.operators.get_operator(anna.id)
        actions = [e.action for e in await tx.audit.audit_entries("acc")]
    assert stored is not None
    assert stored.presence is Presence.AWAY
    assert "presence_expired" in actions
    # Back at the console and available again: she receives conversations again.
    await seen(store, anna, clock.now())
    await set_presence(store, anna, Presence.AVAILABLE)
    second = await queued(store, "c2", queued_at=clock.now())
    assert (await d.run_round()).assigned == ((second, anna.id),)


async def test_without_a_presence_timeout_nobody_is_set_away(
    store: SqlStore, clock: ManualClock
) -> None:
    anna = await add_operator(store, "anna")
    await seen(store, anna, T0)
    clock.advance(timedelta(hours=3))
    cid = await queued(store, "c1", queued_at=clock.now())
    d = Dispatcher(
        store,
        [AccountAssignment("acc", LeastBusy())],
        clock=clock,
        presence_timeout=None,
    )
    assert (await d.run_round()).assigned == ((cid, anna.id),)
    with pytest.raises(ConfigError, match="presence timeout"):
        Dispatcher(store, [], clock=clock, presence_timeout=timedelta(0))


async def test_out_of_office_hours_the_queue_waits_for_the_opening(
    store: SqlStore, clock: ManualClock, tmp_path: Path
) -> None:
    hours_path = tmp_path / "hours.yaml"
    shutil.copyfile(ROOT / "examples" / "mataro" / "hours.yaml", hours_path)
    saturday = datetime(2026, 11, 28, 11, 0, tzinfo=UTC)  # 12:00 in Mataró, office closed
    clock.set(saturday)
    anna = await add_operator(store, "anna")
    cid = await queued(store, "c1", queued_at=saturday)
    acct = AccountAssignment("acc", LeastBusy(), office_hours=office_hours_file(hours_path))
    d = Dispatcher(store, [acct], clock=clock)
    assert acct.closed_at(saturday)
    assert (await d.run_round()).assigned == ()
    assert (await conv(store, cid)).state == "queued"
    clock.set(datetime(2026, 11, 30, 8, 0, 1, tzinfo=UTC))  # Monday 9:00:01, open
    assert (await d.run_round()).assigned == ((cid, anna.id),)
    # No hours (a library user's account): always open.
    assert not AccountAssignment("acc", LeastBusy()).closed_at(saturday)


def test_office_hours_are_read_again_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "hours.yaml"
    source = (ROOT / "examples" / "mataro" / "hours.yaml").read_text(encoding="utf-8")
    path.write_text(source, encoding="utf-8")
    current = office_hours_file(path)
    first = current()
    assert first is not None
    path.write_text("not: [valid", encoding="utf-8")
    assert current() is first  # a broken file keeps the last good hours
    saturday = datetime(2026, 11, 28, 11, 0, tzinfo=UTC)
    assert not first.is_open(saturday)
    friday = '  friday: ["08:00-19:00"]\n'
    assert friday in source
    path.write_text(source.replace(friday, friday + '  saturday: ["09:00-14:00"]\n'), "utf-8")
    os.utime(path, ns=(1, 2))  # a different modification time, whatever the clock's resolution
    reloaded = current()
    assert reloaded is not None
    assert reloaded.is_open(saturday)


async def test_a_conversation_put_back_never_returns_to_that_operator_even_alone(
    store: SqlStore, clock: ManualClock
) -> None:
    app = await console_app(store, clock)
    anna = await console_operator(store, "anna", Presence.OFFLINE)
    cid = await queued(store, "c1")
    d = dispatcher(store, clock)
    async with console_client(app) as client:
        csrf = await login_as(client, "anna")  # available: the round gives her the conversation
        assert (await d.run_round()).assigned == ((cid, anna.id),)
        back = await client.post(
            f"/console/conversations/{cid}/transfer", data={"csrf_token": csrf, "to": "queue"}
        )
        assert back.status_code == 303
    for _ in range(3):  # she is the only one available: it waits, round after round
        clock.advance(timedelta(seconds=5))
        assert (await d.run_round()).assigned == ()
    assert (await conv(store, cid)).data[RETURNED_KEY] == [anna.id]
    bob = await add_operator(store, "bob")
    assert (await d.run_round()).assigned == ((cid, bob.id),)
    assert RETURNED_KEY not in ((await conv(store, cid)).data or {})  # a new wait starts clean


async def test_supervisors_are_assigned_only_once_they_choose_available(
    store: SqlStore, clock: ManualClock
) -> None:
    app = await console_app(store, clock)
    sup = await console_operator(store, "sup", Presence.OFFLINE, role=OperatorRole.SUPERVISOR)
    admin = await console_operator(store, "adm", Presence.OFFLINE, role=OperatorRole.ADMIN)
    cid = await queued(store, "c1")
    d = dispatcher(store, clock)
    async with console_client(app) as client:
        await login_as(client, "adm")
        csrf = await login_as(client, "sup")
        assert (await client.get("/console/reports")).status_code == 200
        assert (await d.run_round()).assigned == ()  # logged in, reading reports: not assigned
        async with store.transaction() as tx:
            presences = {o.login: o.presence for o in await tx.operators.operators("acc") if o.id}
        assert presences == {"sup": Presence.AWAY, "adm": Presence.AWAY}
        chosen = await client.post(
            "/console/presence", data={"presence": "available", "csrf_token": csrf}
        )
        assert chosen.status_code == 303
    assert (await d.run_round()).assigned == ((cid, sup.id),)
    # An administrator is never assigned, even available.
    await set_presence(store, admin, Presence.AVAILABLE)
    await set_presence(store, sup, Presence.OFFLINE)
    clock.advance(timedelta(minutes=1))
    second = await queued(store, "c2", queued_at=clock.now())
    assert (await d.run_round()).assigned == ()
    assert (await conv(store, second)).state == "queued"


async def test_a_disabled_operator_is_never_assigned_and_gives_back_what_they_hold(
    store: SqlStore, clock: ManualClock
) -> None:
    anna = await add_operator(store, "anna")
    first = await queued(store, "c1")
    d = dispatcher(store, clock)
    assert (await d.run_round()).assigned == ((first, anna.id),)
    async with store.transaction() as tx:
        await assignment_queries(tx).set_disabled(anna.id, clock.now())
    clock.advance(timedelta(seconds=5))
    second = await queued(store, "c2", queued_at=clock.now())
    result = await d.run_round()
    assert result.requeued == ((first, anna.id),)
    assert result.assigned == ()
    assert {(await conv(store, c)).state for c in (first, second)} == {"queued"}
    async with store.transaction() as tx:
        status = await assignment_queries(tx).operator_status([anna.id])
        refs = await assignment_queries(tx).operator_references(anna.id)
    assert status[anna.id].disabled
    assert refs > 0  # her assignment history stays


async def test_one_operators_conversations_are_filtered_and_locked_alone(
    store: SqlStore, clock: ManualClock, target: Target
) -> None:
    anna = await add_operator(store, "anna")
    bob = await add_operator(store, "bob")
    for n in range(4):
        await queued(store, f"c{n}")
    await dispatcher(store, clock).run_round()
    holds = await held(store)
    assert sorted(len(v) for v in holds.values()) == [2, 2]
    other = SqlStore(create_engine(target.url, schema=target.schema), clock=clock)

    async def lock_elsewhere(ids: list[int]) -> list[int]:
        """Lock ``ids`` from another connection without waiting (fails if one is locked)."""
        async with other.transaction() as tx2:
            stmt = select(ConversationRow.id).where(ConversationRow.id.in_(ids))
            return sorted(
                (await tx2.connection.execute(stmt.with_for_update(nowait=True))).scalars()
            )

    try:
        async with store.transaction() as tx:
            theirs = await assignment_queries(tx).conversations(
                "acc", "assigned", lock=True, assigned_operator=anna.id
            )
            assert sorted(c.id for c in theirs) == sorted(holds[anna.id])
            if target.backend == "postgres":
                # Another transaction can still lock Bob's conversations, not Anna's.
                assert await lock_elsewhere(holds[bob.id]) == sorted(holds[bob.id])
                with pytest.raises(DBAPIError):
                    await lock_elsewhere(holds[anna.id])
    finally:
        await other.close()
