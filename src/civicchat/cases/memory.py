"""An in-memory case store, for tests and single-process demos (data is lost on exit)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

from civicchat.cases._changes import ChangeMethods, aware, with_change
from civicchat.cases.errors import CaseNotFoundError
from civicchat.cases.models import (
    Case,
    CaseChange,
    CaseLocation,
    CaseReference,
    CaseStatus,
    ChangeKind,
    NewCase,
)

__all__ = ["MemoryCaseStore", "anonymised_copy"]


def anonymised_copy(case: Case, *, at: datetime) -> Case:
    """The case without personal data: no citizen id, description, media, address or notes.

    The category, status, dates and a point rounded to about 100 m stay, for statistics.
    Store implementations may use this helper.
    """
    location = case.location
    if location is not None:
        location = CaseLocation(
            latitude=None if location.latitude is None else round(location.latitude, 3),
            longitude=None if location.longitude is None else round(location.longitude, 3),
            inside_boundary=location.inside_boundary,
            source=location.source,
        )
    history = tuple(change.model_copy(update={"note": ""}) for change in case.history)
    history += (CaseChange(at=at, kind=ChangeKind.ANONYMISED, actor="retention"),)
    return case.model_copy(
        update={
            "citizen_id": None,
            "description": "",
            "media": (),
            "location": location,
            "history": history,
            "open311": case.open311.model_copy(update={"last_error": None}),
            "anonymised_at": at,
            "updated_at": at,
        }
    )


class MemoryCaseStore(ChangeMethods):
    """Implements :class:`~civicchat.cases.base.CaseStore` and ``CaseUpkeep`` in a dict."""

    def __init__(self) -> None:
        self._cases: dict[str, Case] = {}
        self._sequences: dict[tuple[str, int], int] = {}
        self._lock = asyncio.Lock()

    async def create(self, new: NewCase, *, prefix: str, at: datetime, actor: str) -> Case:
        at = aware(at)
        async with self._lock:
            key = (prefix, at.year)
            sequence = self._sequences.get(key, 0) + 1
            reference = CaseReference(prefix, at.year, sequence)
            self._sequences[key] = sequence
            case = Case.from_new(new, reference, at=at, actor=actor)
            self._cases[case.reference] = case
            return case

    async def get(self, reference: str) -> Case | None:
        return self._cases.get(reference.strip().upper())

    async def list_cases(
        self,
        *,
        status: CaseStatus | None = None,
        category: str | None = None,
        department: str | None = None,
        limit: int = 100,
    ) -> Sequence[Case]:
        found = [
            case
            for case in self._cases.values()
            if (status is None or case.status == status)
            and (category is None or case.category == category)
            and (department is None or case.department == department)
        ]
        found.sort(key=lambda c: (c.created_at, c.reference), reverse=True)
        return found[: max(limit, 0)]

    async def closed_before(
        self, cutoff: datetime, *, include_anonymised: bool = False, limit: int = 1000
    ) -> Sequence[Case]:
        cutoff = aware(cutoff)
        found = sorted(
            (
                c
                for c in self._cases.values()
                if c.status.is_final
                and c.updated_at < cutoff
                and (include_anonymised or c.anonymised_at is None)
            ),
            key=lambda c: (c.updated_at, c.reference),
        )
        return found[: max(limit, 0)]

    async def anonymise(self, reference: str, *, at: datetime) -> Case:
        async with self._lock:
            case = self._require(reference)
            updated = anonymised_copy(case, at=aware(at))
            self._cases[case.reference] = updated
            return updated

    async def delete(self, reference: str) -> bool:
        async with self._lock:
            return self._cases.pop(reference.strip().upper(), None) is not None

    def _require(self, reference: str) -> Case:
        case = self._cases.get(reference.strip().upper())
        if case is None:
            raise CaseNotFoundError(reference)
        return case

    async def _change(self, reference: str, change: CaseChange, update: dict[str, object]) -> Case:
        async with self._lock:
            case = self._require(reference)
            updated = with_change(case, change, update)
            self._cases[case.reference] = updated
            return updated
