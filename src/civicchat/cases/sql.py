"""Cases on SQLite or PostgreSQL: :class:`SqlCaseStore` (``CaseStore`` and ``CaseUpkeep``).

The tables are ``cases`` and ``case_sequences`` (``civicchat.storage.schema``, migration 0003).
A case is stored whole as JSON in ``cases.data``; the columns beside it (account, status,
category, department, dates) are there to filter and sort. References are numbered with one
statement on a counter row per ``(prefix, year)``::

    INSERT INTO case_sequences (prefix, year, last) VALUES (:p, :y, 1)
    ON CONFLICT (prefix, year) DO UPDATE SET last = case_sequences.last + 1 RETURNING last

in the same transaction as the insert of the case, so two workers never get the same number and
the number of a deleted case is never handed out again.

``open311_next_at`` says when the Open311 worker should look at the case next (forward it, or
poll its status); it is set to the creation time, so a case not yet forwarded is forwarded after
a restart.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, delete, select, update
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from civicchat.cases._changes import ChangeMethods, aware, with_change
from civicchat.cases.errors import CaseNotFoundError
from civicchat.cases.memory import anonymised_copy
from civicchat.cases.models import (
    Case,
    CaseChange,
    CaseReference,
    CaseStatus,
    NewCase,
)
from civicchat.storage.engine import WRITE_OPTION
from civicchat.storage.schema import CaseRow, CaseSequenceRow

__all__ = ["SqlCaseStore"]

_CASES = cast(Table, CaseRow.__table__)
_SEQUENCES = cast(Table, CaseSequenceRow.__table__)
_FINAL = [CaseStatus.RESOLVED.value, CaseStatus.REJECTED.value]


def _load(data: str) -> Case:
    return Case.model_validate(json.loads(data))


def _columns(case: Case) -> dict[str, Any]:
    return {
        "reference": case.reference,
        "account": case.account,
        "status": case.status.value,
        "category": case.category,
        "department": case.department,
        "created_at": case.created_at,
        "updated_at": case.updated_at,
        "anonymised_at": case.anonymised_at,
        "data": json.dumps(case.model_dump(mode="json"), ensure_ascii=False),
    }


class SqlCaseStore(ChangeMethods):
    """Implements :class:`~civicchat.cases.base.CaseStore` and ``CaseUpkeep`` on an engine.

    ``engine`` is a migrated civicchat database (``civicchat.storage.engine.create_engine``);
    the store can share it with :class:`~civicchat.storage.sql.SqlStore`.
    :meth:`in_transaction` gives a store working inside an open transaction instead (the bot's
    handler: a case is created in the same transaction as the message that confirmed it).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"
        self._write_lock = asyncio.Lock()
        self._conn: AsyncConnection | None = None

    @classmethod
    def in_transaction(cls, connection: AsyncConnection) -> SqlCaseStore:
        """A store whose reads and writes go through ``connection``'s open transaction."""
        store = cls(connection.engine)
        store._conn = connection
        return store

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        if self._conn is not None:
            yield self._conn
        else:
            async with self.engine.connect() as conn:
                yield conn

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        if self._conn is not None:
            yield self._conn
        elif self.is_postgres:
            async with self.engine.begin() as conn:
                yield conn
        else:
            # SQLite has one writer: take the write lock up front (BEGIN IMMEDIATE).
            async with self._write_lock, self.engine.connect() as conn:
                await conn.execution_options(**{WRITE_OPTION: True})
                async with conn.begin():
                    yield conn

    # ------------------------------------------------------------------ CaseStore

    async def create(self, new: NewCase, *, prefix: str, at: datetime, actor: str) -> Case:
        at = aware(at)
        CaseReference(prefix, at.year, 1)  # validates the prefix before touching the database
        async with self._begin() as conn:
            insert = (pg.insert if self.is_postgres else sqlite.insert)(_SEQUENCES)
            statement = (
                insert.values(prefix=prefix, year=at.year, last=1)
                .on_conflict_do_update(
                    index_elements=[_SEQUENCES.c.prefix, _SEQUENCES.c.year],
                    set_={"last": _SEQUENCES.c.last + 1},
                )
                .returning(_SEQUENCES.c.last)
            )
            sequence = (await conn.execute(statement)).scalar_one()
            case = Case.from_new(new, CaseReference(prefix, at.year, sequence), at=at, actor=actor)
            await conn.execute(_CASES.insert().values(**_columns(case), open311_next_at=at))
            return case

    async def get(self, reference: str) -> Case | None:
        async with self._read() as conn:
            data = (
                await conn.execute(
                    select(_CASES.c.data).where(_CASES.c.reference == reference.strip().upper())
                )
            ).scalar_one_or_none()
        return None if data is None else _load(data)

    async def list_cases(
        self,
        *,
        status: CaseStatus | None = None,
        category: str | None = None,
        department: str | None = None,
        limit: int = 100,
        account: str | None = None,
    ) -> Sequence[Case]:
        """Cases matching every filter, newest first; ``account`` keeps one account's cases."""
        query = select(_CASES.c.data)
        if status is not None:
            query = query.where(_CASES.c.status == CaseStatus(status).value)
        if category is not None:
            query = query.where(_CASES.c.category == category)
        if department is not None:
            query = query.where(_CASES.c.department == department)
        if account is not None:
            query = query.where(_CASES.c.account == account)
        query = query.order_by(_CASES.c.created_at.desc(), _CASES.c.reference.desc())
        query = query.limit(max(limit, 0))
        async with self._read() as conn:
            rows = (await conn.execute(query)).scalars().all()
        return [_load(data) for data in rows]

    # ------------------------------------------------------------------ CaseUpkeep

    async def closed_before(
        self, cutoff: datetime, *, include_anonymised: bool = False, limit: int = 1000
    ) -> Sequence[Case]:
        query = select(_CASES.c.data).where(
            _CASES.c.status.in_(_FINAL), _CASES.c.updated_at < aware(cutoff)
        )
        if not include_anonymised:
            query = query.where(_CASES.c.anonymised_at.is_(None))
        query = query.order_by(_CASES.c.updated_at, _CASES.c.reference).limit(max(limit, 0))
        async with self._read() as conn:
            rows = (await conn.execute(query)).scalars().all()
        return [_load(data) for data in rows]

    async def anonymise(self, reference: str, *, at: datetime) -> Case:
        async with self._begin() as conn:
            case = await self._locked(conn, reference)
            updated = anonymised_copy(case, at=aware(at))
            await self._save(conn, updated)
            return updated

    async def delete(self, reference: str) -> bool:
        async with self._begin() as conn:
            result = await conn.execute(
                delete(_CASES).where(_CASES.c.reference == reference.strip().upper())
            )
            return bool(result.rowcount)

    # ------------------------------------------------------------------ privacy requests

    async def citizen_cases(self, channel: str, account: str, citizen_id: str) -> list[Case]:
        """The not yet anonymised cases one citizen reported on one account.

        For erasure and export requests. The citizen's id lives inside each case's JSON, so
        this reads the account's open records: fine for a rare privacy request, not a hot path.
        """
        query = (
            select(_CASES.c.data)
            .where(_CASES.c.account == account, _CASES.c.anonymised_at.is_(None))
            .order_by(_CASES.c.created_at, _CASES.c.reference)
        )
        async with self._read() as conn:
            rows = (await conn.execute(query)).scalars().all()
        cases = (_load(data) for data in rows)
        return [c for c in cases if c.channel == channel and c.citizen_id == citizen_id]

    # ------------------------------------------------------------------ Open311 schedule

    async def claim_open311(self, now: datetime, *, lease: timedelta, limit: int = 20) -> list[str]:
        """Claim the cases whose Open311 work (forward or poll) is due at ``now``, oldest first.

        Their next look moves to ``now + lease``, so another worker (process) does not take
        them meanwhile; a worker that dies mid-way leaves them to be taken again after the
        lease. The worker then sets the real next time with :meth:`schedule_open311`.
        """
        now = aware(now)
        due = (
            select(_CASES.c.id)
            .where(_CASES.c.open311_next_at.is_not(None), _CASES.c.open311_next_at <= now)
            .order_by(_CASES.c.open311_next_at, _CASES.c.id)
            .limit(max(limit, 0))
        )
        if self.is_postgres:
            due = due.with_for_update(skip_locked=True)
        async with self._begin() as conn:
            ids = list((await conn.execute(due)).scalars().all())
            if not ids:
                return []
            rows = await conn.execute(
                update(_CASES)
                .where(_CASES.c.id.in_(ids))
                .values(open311_next_at=now + lease)
                .returning(_CASES.c.id, _CASES.c.reference)
            )
            order = {case_id: n for n, case_id in enumerate(ids)}
            return [ref for _, ref in sorted(rows.all(), key=lambda r: order[r[0]])]

    async def schedule_open311(self, reference: str, at: datetime | None) -> None:
        """Look at the case again at ``at`` (None: never, e.g. rejected by the back office)."""
        async with self._begin() as conn:
            await conn.execute(
                update(_CASES)
                .where(_CASES.c.reference == reference.strip().upper())
                .values(open311_next_at=None if at is None else aware(at))
            )

    # ------------------------------------------------------------------ helpers

    async def _locked(self, conn: AsyncConnection, reference: str) -> Case:
        query = select(_CASES.c.data).where(_CASES.c.reference == reference.strip().upper())
        if self.is_postgres:
            query = query.with_for_update()
        data = (await conn.execute(query)).scalar_one_or_none()
        if data is None:
            raise CaseNotFoundError(reference)
        return _load(data)

    async def _save(self, conn: AsyncConnection, case: Case) -> None:
        values = _columns(case)
        del values["reference"]
        await conn.execute(
            update(_CASES).where(_CASES.c.reference == case.reference).values(**values)
        )

    async def _change(self, reference: str, change: CaseChange, values: dict[str, object]) -> Case:
        async with self._begin() as conn:
            case = await self._locked(conn, reference)
            updated = with_change(case, change, values)
            await self._save(conn, updated)
            return updated
