"""The SQLAlchemy implementation of the storage protocols, for SQLite and PostgreSQL.

Hot paths (accepting events, claiming, writing the outbox) use Core statements, never the ORM's
unit of work, which sends one INSERT per row.

Claiming, on PostgreSQL: candidates are locked with ``FOR UPDATE SKIP LOCKED``, then a
transaction-scoped advisory lock on the conversation key serialises claimers of one conversation
and the ordering conditions are checked again with a fresh snapshot. On SQLite every write
transaction starts with ``BEGIN IMMEDIATE`` (one writer across processes) behind an in-process lock.

The store lives here; its transaction and repositories in :mod:`civicchat.storage.repositories`,
erasure, export and retention in :mod:`civicchat.storage.privacy_sql`, and the statements and row
conversions they share in :mod:`civicchat.storage.statements`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg
from sqlalchemy import (
    func,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from civicchat.clock import Clock, SystemClock
from civicchat.exceptions import StorageError
from civicchat.messages import (
    DeliveryStatus,
    InboundMessage,
    StatusUpdate,
)
from civicchat.storage.base import (
    AcceptResult,
    EventState,
    InboxAdmin,
    InboxEvent,
    InboxStore,
    OutboxItem,
    OutboxStore,
    PrivacyStore,
    Transaction,
    TransactionFactory,
)
from civicchat.storage.engine import WRITE_OPTION, check_schema, create_engine
from civicchat.storage.privacy_sql import SqlPrivacyMixin
from civicchat.storage.repositories import (
    SqlTransaction,
)
from civicchat.storage.schema import (
    InboxRow,
    OutboxRow,
)
from civicchat.storage.signal import WorkSignal
from civicchat.storage.statements import (
    _ACCEPT_COLUMNS,
    _ACCEPT_KNOWN,
    _DEADLOCK_RETRIES,
    _PG_ACCEPT_INSERT,
    _PG_ACCEPT_NEW,
    _PG_ACCEPT_REVIVE,
    _PG_CANDIDATES,
    _PG_CLAIM,
    _PG_NOTIFY_WORK,
    _PG_ORDERED_SCAN,
    _PG_SENT_MANY,
    _PG_TRY_LOCKS,
    _SENT,
    _SQLITE_CLAIM_MANY,
    _WORK_CHANNEL,
    LeaseLostError,
    _chunks,
    _clip,
    _event,
    _event_values,
    _insert,
    _is_deadlock,
    _outbox_item,
    _stmts,
)

__all__ = ["LeaseLostError", "SqlStore", "SqlTransaction", "merge_status", "open_store"]

_log = logging.getLogger("civicchat.storage")

# What each accepted message grows: its event, its replies, a new sender's contact, identity and
# conversation (see SqlStore.refresh_statistics).
_GROWING_TABLES = ("inbox_events", "outbox", "contacts", "identities", "conversations")


class _DriverDeadlock(Exception):
    """PostgreSQL chose a statement run by the driver directly as a deadlock's victim."""


def merge_status(current: DeliveryStatus, new: DeliveryStatus) -> DeliveryStatus:
    """The status to keep when ``new`` arrives: the higher rank (``failed`` always wins).

    Whatever order a message's statuses arrive in, the result is the same.
    """
    return new if new.rank > current.rank else current


async def open_store(
    url: str, *, clock: Clock | None = None, schema: str | None = None, **engine_kwargs: Any
) -> SqlStore:
    """Open the database at ``url`` (a SQLite file path or URL, or a PostgreSQL URL).

    Raises :class:`~civicchat.exceptions.SchemaBehindError` naming ``civicchat db upgrade`` when
    the database is behind this civicchat.
    """
    engine = create_engine(url, schema=schema, **engine_kwargs)
    try:
        await check_schema(engine)
    except BaseException:
        await engine.dispose()
        raise
    return SqlStore(engine, clock=clock)


# --------------------------------------------------------------------------- the store


class SqlStore(SqlPrivacyMixin):
    """Storage on one SQLAlchemy async engine (SQLite or PostgreSQL).

    Implements :class:`~civicchat.storage.base.InboxStore`, ``InboxAdmin``, ``OutboxStore``,
    ``TransactionFactory`` and ``PrivacyStore``. Use :func:`open_store` to get one.
    """

    def __init__(self, engine: AsyncEngine, *, clock: Clock | None = None) -> None:
        self.engine = engine
        self.clock: Clock = clock or SystemClock()
        self.is_postgres = engine.dialect.name == "postgresql"
        self._write_lock = asyncio.Lock()
        self.inbox_signal = WorkSignal()
        """Set when events were accepted (here, or in another process: see
        :meth:`listen_for_work`): wakes one idle inbox processor at once."""
        self.outbox_signal = WorkSignal()
        """Set when outbox messages were written: wakes one idle sender at once."""
        self.work_origin = uuid.uuid4().hex[:12]
        """Tags this store's work notices on PostgreSQL: :meth:`listen_for_work` ignores its
        own (the signals above were set here already; the echo woke a second worker, which
        found nothing)."""
        self.analyze_after = 1000
        """PostgreSQL: events accepted here before this store refreshes the statistics of the
        tables a message grows (see :meth:`refresh_statistics`); after each refresh, as many
        as the inbox then holds (the tables have doubled). 0: never."""
        self._grown = 0
        self._analyze_at: int | None = None
        self._analyzing: asyncio.Task[None] | None = None

    async def close(self) -> None:
        """Close every pooled connection."""
        if self._analyzing is not None:
            self._analyzing.cancel()
            # Waits for the refresh to end without raising its cancellation; close() being
            # cancelled itself still raises.
            await asyncio.wait({self._analyzing})
        await self.engine.dispose()

    async def refresh_statistics(self) -> None:
        """``ANALYZE`` the tables each message grows (PostgreSQL; nothing on SQLite).

        The planner chooses between an index probe and a scan of the whole table from the
        statistics, which autovacuum refreshes a minute apart at best. A young table that grows
        tenfold meanwhile (a new deployment's first burst, a backlog redelivered after an
        outage) was planned as a tiny one: sequential scans of 11,000 rows per statement, 3-17
        ms where a probe takes 0.1 (``benchmarks/pipeline.py``). :meth:`accept` calls this in
        the background each time the inbox has doubled since the last refresh, starting at
        :attr:`analyze_after` events: a handful of times while the tables are young, then
        hardly ever.
        """
        if not self.is_postgres:
            return
        async with self.engine.connect() as conn:
            await conn.execute(text(f"ANALYZE {', '.join(_GROWING_TABLES)}"))
            size = (
                await conn.execute(
                    text("SELECT reltuples FROM pg_class WHERE oid = to_regclass('inbox_events')")
                )
            ).scalar()
            await conn.commit()
        self._analyze_at = max(self.analyze_after, int(size or 0))

    def _note_growth(self, accepted: int) -> None:
        if not self.analyze_after or self._analyzing is not None:
            return
        self._grown += accepted
        if self._grown < (self._analyze_at or self.analyze_after):
            return
        self._grown = 0
        self._analyzing = asyncio.get_running_loop().create_task(
            self._refresh_in_background(), name="civicchat-analyze"
        )

    async def _refresh_in_background(self) -> None:
        try:
            await self.refresh_statistics()
            _log.debug("statistics refreshed; next after %s events", self._analyze_at)
        except Exception as exc:  # the service goes on with the old statistics
            _log.warning("refreshing statistics failed: %s", type(exc).__name__)
        finally:
            self._analyzing = None

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        if self.is_postgres:
            async with self.engine.begin() as conn:
                yield conn
        else:
            # SQLite has a single writer; queueing here beats spinning on the busy timeout.
            async with self._write_lock, self.engine.connect() as conn:
                await conn.execution_options(**{WRITE_OPTION: True})
                async with conn.begin():
                    yield conn

    async def can_write(self) -> bool:
        """Whether a write transaction can start now (an empty one, committed: nothing written).
        Waits as long as writes are stuck (SQLite's single writer held, no pooled connection
        free) even though reads still answer: call it under ``asyncio.timeout``."""
        async with self._begin() as conn:
            await conn.execute(text("SELECT 1"))
        return True

    def transaction(self) -> AbstractAsyncContextManager[SqlTransaction]:
        """A transaction with every repository; commits on success, rolls back on error."""
        return self._transaction()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[SqlTransaction]:
        async with self._begin() as conn:
            tx = SqlTransaction(conn, self.clock)
            yield tx
            await tx.flush()
            if tx.wrote_outbox and self.is_postgres:
                # Delivered on commit.
                await conn.execute(_PG_NOTIFY_WORK, {"what": f"outbox:{self.work_origin}"})
        if tx.wrote_outbox:
            self.outbox_signal.set()

    async def listen_for_work(self, ready: asyncio.Event | None = None) -> None:
        """Set :attr:`inbox_signal` / :attr:`outbox_signal` when *other* processes write work
        (their notices; this store's own carry :attr:`work_origin` and are ignored).

        PostgreSQL only (``LISTEN``, on one pooled connection, per schema); runs until cancelled.
        On SQLite (one process) it returns at once. ``ready`` is set once listening.
        """
        if not self.is_postgres:
            if ready is not None:
                ready.set()
            return
        while True:
            try:
                await self._listen_for_work(ready)
            except Exception as exc:  # a lost connection: idle polling covers until we are back
                _log.warning("work listener: %s, reconnecting", type(exc).__name__)
                await asyncio.sleep(1.0)

    async def _listen_for_work(self, ready: asyncio.Event | None) -> None:
        async with self.engine.connect() as conn:
            schema = await conn.scalar(text("SELECT current_schema()"))
            await conn.commit()  # hold no transaction open while listening
            driver: Any = (await conn.get_raw_connection()).driver_connection
            channel = f"{_WORK_CHANNEL}{schema}"
            lost = asyncio.Event()

            def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
                what, _, origin = payload.partition(":")
                if origin != self.work_origin:  # this process woke its workers already
                    (self.inbox_signal if what == "inbox" else self.outbox_signal).set()

            def on_lost(_conn: Any) -> None:
                lost.set()

            await driver.add_listener(channel, on_notify)
            driver.add_termination_listener(on_lost)
            try:
                if ready is not None:
                    ready.set()
                await lost.wait()
                raise ConnectionError("listening connection closed")
            finally:
                driver.remove_termination_listener(on_lost)
                with contextlib.suppress(Exception):
                    await asyncio.shield(driver.remove_listener(channel, on_notify))

    def read_transaction(self) -> AbstractAsyncContextManager[SqlTransaction]:
        """A transaction for reading only (console pages, exports).

        On SQLite it neither waits for nor blocks the single writer (a snapshot, in WAL mode),
        unlike :meth:`transaction`, which queues behind the workers' writes. A write through it
        raises (``READ ONLY`` on PostgreSQL, ``query_only`` on SQLite).
        """
        return self._read_transaction()

    @asynccontextmanager
    async def _read_transaction(self) -> AsyncIterator[SqlTransaction]:
        async with self.engine.connect() as conn:
            if self.is_postgres:
                async with conn.begin():
                    await conn.execute(text("SET TRANSACTION READ ONLY"))
                    yield SqlTransaction(conn, self.clock)
                return
            # Deferred BEGINs around the pragmas: no lock is taken.
            await conn.execute(text("PRAGMA query_only = 1"))
            await conn.commit()
            try:
                async with conn.begin():
                    yield SqlTransaction(conn, self.clock)
            finally:
                await conn.execute(text("PRAGMA query_only = 0"))
                await conn.commit()

    # ------------------------------------------------------------------ inbox

    async def accept(self, events: Sequence[InboundMessage | StatusUpdate]) -> AcceptResult:
        """Commit ``events`` in one transaction.

        Keyed by (channel, account, provider message id) for messages and (channel, account,
        message id, status) for statuses: a re-delivery is a no-op, except that the re-delivery
        of an event that failed or was parked makes it pending again, with its attempts reset.
        """
        if not events:
            return AcceptResult(0, 0, 0)
        now = self.clock.now()
        unique: dict[tuple[str, str, str], dict[str, Any]] = {}
        for e in events:
            values = _event_values(e, now)
            unique.setdefault((values["channel"], values["account"], values["key"]), values)
        rows = list(unique.values())  # in the order given: that is the order of processing
        for attempt in range(1, _DEADLOCK_RETRIES + 1):
            try:
                if self.is_postgres:
                    accepted, revived = await self._pg_accept(rows, now)
                else:
                    accepted, revived = await self._accept(rows, list(unique), now)
                break
            except (DBAPIError, _DriverDeadlock) as exc:
                # Two webhooks inserting common keys in different orders can deadlock on
                # PostgreSQL; the batch is idempotent, so run it again.
                if isinstance(exc, _DriverDeadlock):
                    if attempt == _DEADLOCK_RETRIES:
                        raise StorageError(f"accept failed: {exc}") from exc
                elif not _is_deadlock(exc) or attempt == _DEADLOCK_RETRIES:
                    raise
                _log.info("accept: deadlock, retrying (%d)", attempt)
        duplicates = len(events) - accepted - revived
        if accepted or revived:
            self.inbox_signal.set()
        if accepted and self.is_postgres:
            self._note_growth(accepted)
        if revived:
            _log.info("re-delivery revived %d failed event(s)", revived)
        return AcceptResult(accepted=accepted, duplicates=duplicates, revived=revived)

    async def _pg_accept(self, rows: list[dict[str, Any]], now: datetime) -> tuple[int, int]:
        """The batch's commit on PostgreSQL, sent by the driver itself: one statement that is its
        own transaction when every event is new, else one transaction that also revives failed
        or parked re-deliveries (see ``_PG_ACCEPT_NEW``).

        The webhook's path is the one where SQLAlchemy's per-statement work costs most, and each
        round trip adds to the commit's latency (see ``benchmarks/pipeline.py``).
        """
        arrays = [[r[c] for r in rows] for c in _ACCEPT_COLUMNS]
        async with self.engine.connect() as conn:
            fairy = await conn.get_raw_connection()
            driver: Any = fairy.driver_connection
            try:
                try:
                    row = await driver.fetchrow(
                        _PG_ACCEPT_NEW, *arrays, now, self.work_origin, len(rows)
                    )
                    return int(row[0]), 0
                except asyncpg.InvalidTextRepresentationError as exc:
                    if _ACCEPT_KNOWN not in str(exc):
                        raise
                # Some events were there already: nothing of the first try was kept.
                async with driver.transaction():
                    accepted = (
                        await driver.fetchrow(_PG_ACCEPT_INSERT, *arrays, now, self.work_origin)
                    )[0]
                    revived = 0
                    if accepted < len(rows):
                        keys = arrays[1:4]  # channel, account, key
                        revived = (
                            await driver.fetchrow(_PG_ACCEPT_REVIVE, *keys, now, self.work_origin)
                        )[0]
                return int(accepted), int(revived)
            except asyncpg.DeadlockDetectedError as exc:
                raise _DriverDeadlock(str(exc)) from exc
            except asyncpg.PostgresError as exc:
                if (exc.sqlstate or "").startswith(("08", "57P")):
                    # The server went away (shut down, restarting, connection failure).
                    await asyncio.shield(conn.invalidate())
                # Otherwise the server refused the statement; the connection is still good.
                raise StorageError(f"accept failed: {type(exc).__name__}: {exc}") from exc
            except BaseException as exc:
                # A broken or interrupted connection: never hand it back to the pool.
                await asyncio.shield(conn.invalidate())
                if isinstance(exc, Exception):
                    raise StorageError(f"accept failed: {type(exc).__name__}: {exc}") from exc
                raise

    async def _accept(
        self, rows: list[dict[str, Any]], keys: list[tuple[str, str, str]], now: datetime
    ) -> tuple[int, int]:
        """The batch's commit on SQLite (PostgreSQL: :meth:`_pg_accept`)."""
        accepted = revived = 0
        async with self._begin() as conn:
            stmt = (
                _insert(conn, InboxRow)
                .on_conflict_do_nothing(index_elements=["channel", "account", "key"])
                .returning(InboxRow.id)
            )
            for chunk in _chunks(rows):
                accepted += len((await conn.execute(stmt, list(chunk))).all())
            if accepted < len(rows):
                for chunk in _chunks(keys):
                    result = await conn.execute(
                        update(InboxRow)
                        .where(
                            tuple_(InboxRow.channel, InboxRow.account, InboxRow.key).in_(chunk),
                            InboxRow.state.in_([EventState.FAILED, EventState.PARKED]),
                        )
                        .values(
                            state=EventState.PENDING.value,
                            attempts=0,
                            next_attempt_at=now,
                            lease_until=None,
                            worker_id=None,
                        )
                    )
                    revived += result.rowcount
        return accepted, revived

    async def claim_event(self, worker_id: str, *, lease_seconds: float) -> InboxEvent | None:
        """Claim the oldest due event whose conversation has nothing in progress or earlier.

        The claim lasts ``lease_seconds``; after that (a crashed worker) another worker may take
        the event over. Each claim counts as an attempt.
        """
        events = await self.claim_events(worker_id, limit=1, lease_seconds=lease_seconds)
        return events[0] if events else None

    async def claim_events(
        self, worker_id: str, *, limit: int, lease_seconds: float
    ) -> list[InboxEvent]:
        """Claim up to ``limit`` due events in one transaction, oldest first, each the head of a
        different conversation (see :meth:`claim_event`)."""
        while True:
            rows = await self._claim_rows(worker_id, max(1, limit), lease_seconds)
            events: list[InboxEvent] = []
            unreadable = False
            for row in rows:
                try:
                    events.append(_event(row))
                except ValueError as exc:
                    # Unreadable (a payload from an incompatible version): park it, or it would
                    # block the head of the queue forever.
                    _log.error("event %d is unreadable (%s): parked", row.id, type(exc).__name__)
                    await self.fail_event(row.id, worker_id, f"unreadable: {exc}", retry_at=None)
                    unreadable = True
            if events or not unreadable:
                events.sort(key=lambda e: e.id)
                return events

    async def _claim_rows(self, worker_id: str, limit: int, lease_seconds: float) -> list[Any]:
        now = self.clock.now()
        params = {
            "now": now,
            "w_id": worker_id,
            "lease_to": now + timedelta(seconds=lease_seconds),
        }
        async with self._begin() as conn:
            if not self.is_postgres:
                return list(await conn.execute(_SQLITE_CLAIM_MANY, {**params, "n": limit}))
            await conn.execute(_PG_ORDERED_SCAN)
            candidates = (await conn.execute(_PG_CANDIDATES, {**params, "n": limit + 7})).all()
            heads: dict[str, int] = {}
            for event_id, key in candidates:
                heads.setdefault(key, event_id)
            if not heads:
                return []
            # One statement tries the conversations' locks in order and stops at ``limit``.
            locked = list(
                (
                    await conn.execute(
                        _PG_TRY_LOCKS,
                        {"ids": list(heads.values()), "keys": list(heads), "n": limit},
                    )
                ).scalars()
            )
            if not locked:
                return []
            # A fresh snapshot, now that no other claimer of these conversations runs.
            return list(await conn.execute(_PG_CLAIM, {**params, "eids": locked}))

    async def fail_event(
        self, event_id: int, worker_id: str, error: str, *, retry_at: datetime | None
    ) -> EventState:
        """Record a failed attempt: ``failed`` until ``retry_at``, or ``parked`` when ``None``."""
        state = EventState.PARKED if retry_at is None else EventState.FAILED
        async with self._begin() as conn:
            result = await conn.execute(
                update(InboxRow)
                .where(
                    InboxRow.id == event_id,
                    InboxRow.worker_id == worker_id,
                    InboxRow.state == EventState.PROCESSING,
                )
                .values(
                    state=state.value,
                    next_attempt_at=retry_at or self.clock.now(),
                    lease_until=None,
                    worker_id=None,
                    last_error=_clip(error),
                )
            )
            if result.rowcount != 1:
                raise LeaseLostError(f"event {event_id} is no longer claimed by {worker_id}")
        return state

    async def release_event(self, event_id: int, worker_id: str) -> None:
        """Give a claimed event back untouched (graceful stop); the attempt is not counted."""
        async with self._begin() as conn:
            await conn.execute(
                update(InboxRow)
                .where(
                    InboxRow.id == event_id,
                    InboxRow.worker_id == worker_id,
                    InboxRow.state == EventState.PROCESSING,
                )
                .values(
                    state=EventState.PENDING.value,
                    lease_until=None,
                    worker_id=None,
                    attempts=InboxRow.attempts - 1,
                )
            )

    async def get_event(self, event_id: int) -> InboxEvent | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(InboxRow.__table__).where(InboxRow.id == event_id))
            ).first()
        return None if row is None else _event(row)

    # ------------------------------------------------------------------ inbox admin

    async def parked_events(self, account: str | None = None, limit: int = 100) -> list[InboxEvent]:
        """Events that failed too often, oldest first."""
        t = InboxRow.__table__
        stmt = select(t).where(t.c.state == EventState.PARKED).order_by(t.c.id).limit(limit)
        if account is not None:
            stmt = stmt.where(t.c.account == account)
        async with self.engine.connect() as conn:
            return [_event(r) for r in await conn.execute(stmt)]

    async def requeue(self, event_id: int) -> bool:
        """Make a parked or failed event pending again, with its attempts reset."""
        async with self._begin() as conn:
            result = await conn.execute(
                update(InboxRow)
                .where(
                    InboxRow.id == event_id,
                    InboxRow.state.in_([EventState.PARKED, EventState.FAILED]),
                )
                .values(
                    state=EventState.PENDING.value, attempts=0, next_attempt_at=self.clock.now()
                )
            )
        return result.rowcount == 1

    async def state_counts(self) -> Mapping[EventState, int]:
        """How many events are in each state."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(InboxRow.state, func.count()).group_by(InboxRow.state))
            counts = dict.fromkeys(EventState, 0)
            for state, n in rows:
                counts[EventState(state)] = n
        return counts

    # ------------------------------------------------------------------ outbox

    async def claim_outbound(
        self, worker_id: str, *, limit: int, lease_seconds: float
    ) -> list[OutboxItem]:
        """Claim up to ``limit`` due messages, oldest first, at most one per recipient.

        A recipient's next message waits until the previous one is sent or failed for good, so
        replies arrive in the order they were written.
        """
        now = self.clock.now()
        params = {
            "now": now,
            "n": limit,
            "w_id": worker_id,
            "lease_to": now + timedelta(seconds=lease_seconds),
        }
        async with self._begin() as conn:
            if self.is_postgres:
                await conn.execute(_PG_ORDERED_SCAN)
            rows = await conn.execute(_stmts(conn)["claim_outbox"], params)
            items: list[OutboxItem] = []
            unreadable: list[tuple[int, str]] = []
            for r in rows:
                try:
                    items.append(_outbox_item(r))
                except ValueError as exc:
                    unreadable.append((r.id, f"unreadable: {exc}"))
            if not items and not unreadable:
                return []
            items.sort(key=lambda i: i.id)
            items = await self._with_last_inbound(conn, items)
        for item_id, error in unreadable:
            _log.error("outbox %d is unreadable: failed", item_id)
            await self.mark_failed(item_id, worker_id, error)
        return items

    async def _with_last_inbound(
        self, conn: AsyncConnection, items: list[OutboxItem]
    ) -> list[OutboxItem]:
        wanted = [i.id for i in items if i.conversation_id or i.inbound_event_id]
        if not wanted:
            return items
        latest: dict[int, datetime] = {}
        for item_id, conv_at, payload in await conn.execute(
            _stmts(conn)["last_inbound"], {"ids": wanted}
        ):
            known = [conv_at] if conv_at is not None else []
            if payload is not None:
                with contextlib.suppress(ValueError):
                    known.append(InboundMessage.model_validate_json(payload).timestamp)
            if known:
                latest[item_id] = max(known)
        return [
            dataclasses.replace(i, last_inbound_at=latest[i.id]) if i.id in latest else i
            for i in items
        ]

    async def _finish_outbound(self, item_id: int, worker_id: str, **values: Any) -> bool:
        async with self._begin() as conn:
            result = await conn.execute(
                update(OutboxRow)
                .where(
                    OutboxRow.id == item_id,
                    OutboxRow.worker_id == worker_id,
                    OutboxRow.status == DeliveryStatus.QUEUED,
                )
                .values(lease_until=None, worker_id=None, **values)
            )
        return result.rowcount == 1

    async def mark_sent(self, item_id: int, worker_id: str, provider_message_id: str) -> bool:
        """Record a successful send; False when the claim was lost meanwhile."""
        now = self.clock.now()
        return await self._finish_outbound(
            item_id,
            worker_id,
            status=DeliveryStatus.SENT.value,
            provider_message_id=provider_message_id,
            sent_at=now,
            status_at=now,
            next_attempt_at=None,
            last_error=None,
        )

    async def mark_sent_many(self, worker_id: str, sent: Sequence[tuple[int, str]]) -> set[int]:
        """Record several successful sends ``(item id, provider message id)`` in one
        transaction; returns the ids still claimed by ``worker_id`` (the others were lost)."""
        if not sent:
            return set()
        now = self.clock.now()
        done: set[int] = set()
        async with self._begin() as conn:
            if self.is_postgres:
                rows = await conn.execute(
                    _PG_SENT_MANY,
                    {
                        "ids": [i for i, _ in sent],
                        "pids": [p for _, p in sent],
                        "w_id": worker_id,
                        "now": now,
                    },
                )
                return set(rows.scalars())
            for item_id, provider_id in sent:
                row = (
                    await conn.execute(
                        _SENT,
                        {
                            "item_id": item_id,
                            "w_id": worker_id,
                            "provider_id": provider_id,
                            "now": now,
                        },
                    )
                ).first()
                if row is not None:
                    done.add(item_id)
        return done

    async def mark_retry(
        self, item_id: int, worker_id: str, error: str, retry_at: datetime
    ) -> bool:
        """Record a transient failure; the message is sent again at ``retry_at``."""
        return await self._finish_outbound(
            item_id, worker_id, next_attempt_at=retry_at, last_error=_clip(error)
        )

    async def mark_failed(self, item_id: int, worker_id: str, error: str) -> bool:
        """Record a permanent failure on the message."""
        return await self._finish_outbound(
            item_id,
            worker_id,
            status=DeliveryStatus.FAILED.value,
            next_attempt_at=None,
            last_error=_clip(error),
            status_at=self.clock.now(),
        )

    async def apply_status(self, update_: StatusUpdate) -> bool:
        """Merge a delivery status into the stored message; False when no message has that id.

        Statuses arrive out of order: the highest :attr:`DeliveryStatus.rank` wins, and
        ``failed`` (the highest) always wins.
        """
        async with self._begin() as conn:
            query = select(OutboxRow.id, OutboxRow.status).where(
                OutboxRow.channel == update_.channel,
                OutboxRow.account == update_.account,
                OutboxRow.provider_message_id == update_.provider_message_id,
            )
            if self.is_postgres:
                query = query.with_for_update()  # two statuses of one message merge in turn
            row = (await conn.execute(query)).first()
            if row is None:
                return False
            current = DeliveryStatus(row.status)
            if merge_status(current, update_.status) is not current:
                values: dict[str, Any] = {
                    "status": update_.status.value,
                    "status_at": update_.timestamp,
                }
                if update_.status is DeliveryStatus.FAILED:
                    values["last_error"] = _clip(
                        "; ".join(
                            f"{e.code} {e.title or ''} {e.detail or ''}".strip()
                            for e in update_.errors
                        )
                        or "failed"
                    )
                await conn.execute(update(OutboxRow).where(OutboxRow.id == row.id).values(**values))
        return True

    async def get_outbound(self, item_id: int) -> OutboxItem | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(OutboxRow.__table__).where(OutboxRow.id == item_id))
            ).first()
        return None if row is None else _outbox_item(row)

    async def outbound_for_event(self, event_id: int) -> list[OutboxItem]:
        """The replies written for one inbound event, in order."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(OutboxRow.__table__)
                .where(OutboxRow.inbound_event_id == event_id)
                .order_by(OutboxRow.id)
            )
            return [_outbox_item(r) for r in rows]


if TYPE_CHECKING:  # mypy proves that the implementation satisfies the protocols

    def _conforms(
        store: SqlStore, tx: SqlTransaction
    ) -> tuple[InboxStore, InboxAdmin, OutboxStore, PrivacyStore, TransactionFactory, Transaction]:
        return store, store, store, store, store, tx
