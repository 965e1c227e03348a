"""What every case store shares: time checks and the changes a case goes through.

A store provides one primitive, ``_change(reference, change, values)``, that appends ``change``
to the case's history and sets ``values`` atomically; :class:`ChangeMethods` builds the public
changes on it, so the in-memory and SQL stores cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from civicchat.cases.models import Case, CaseChange, CaseStatus, ChangeKind, Open311Link

__all__ = ["ChangeMethods", "aware", "with_change"]


def aware(at: datetime) -> datetime:
    """``at`` itself, refused when naive (case times are compared across time zones)."""
    if at.tzinfo is None:
        raise ValueError("case times must be zone-aware, e.g. datetime(..., tzinfo=UTC)")
    return at


def with_change(case: Case, change: CaseChange, values: dict[str, object]) -> Case:
    """``case`` with ``values`` set and ``change`` appended to its history."""
    return case.model_copy(
        update={**values, "history": (*case.history, change), "updated_at": change.at}
    )


class ChangeMethods:
    """The status, assignment and forwarding changes of ``CaseStore`` / ``CaseUpkeep``."""

    async def _change(self, reference: str, change: CaseChange, values: dict[str, Any]) -> Case:
        raise NotImplementedError

    async def update_status(
        self, reference: str, status: CaseStatus, *, note: str, actor: str, at: datetime
    ) -> Case:
        change = CaseChange(
            at=aware(at), kind=ChangeKind.STATUS, actor=actor, note=note, status=status
        )
        return await self._change(reference, change, {"status": status})

    async def assign(
        self, reference: str, department: str, *, note: str, actor: str, at: datetime
    ) -> Case:
        change = CaseChange(
            at=aware(at), kind=ChangeKind.ASSIGNED, actor=actor, note=note, department=department
        )
        return await self._change(reference, change, {"department": department})

    async def record_forwarding(
        self, reference: str, link: Open311Link, *, note: str, actor: str, at: datetime
    ) -> Case:
        kind = ChangeKind.FORWARD_FAILED if link.last_error else ChangeKind.FORWARDED
        change = CaseChange(at=aware(at), kind=kind, actor=actor, note=note)
        return await self._change(reference, change, {"open311": link})
