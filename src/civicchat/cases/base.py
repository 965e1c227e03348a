"""What the cases package needs from the outside: a case store and a geocoder.

Small protocols, each with a contract test suite in ``tests/cases/`` that every implementation
runs (``tests/cases/contract.py``). :class:`~civicchat.cases.memory.MemoryCaseStore` implements
both store protocols in memory; a SQL one belongs to ``civicchat.storage``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from civicchat.cases.models import Case, CaseStatus, NewCase, Open311Link

__all__ = ["CaseStore", "CaseUpkeep", "Geocoder", "NoGeocoder"]


@runtime_checkable
class CaseStore(Protocol):
    """Creates, finds and updates cases. Every write appends to the case's history."""

    async def create(self, new: NewCase, *, prefix: str, at: datetime, actor: str) -> Case:
        """Store a new case with the next reference for ``prefix`` and the year of ``at``.

        Numbering is atomic: two concurrent creations never get the same reference, and the
        sequence restarts at 1 each year (``MTR-2027-000001``).
        """
        ...

    async def get(self, reference: str) -> Case | None:
        """The case with this reference (``MTR-2026-000123``), or None."""
        ...

    async def list_cases(
        self,
        *,
        status: CaseStatus | None = None,
        category: str | None = None,
        department: str | None = None,
        limit: int = 100,
    ) -> Sequence[Case]:
        """Cases matching every given filter, newest first."""
        ...

    async def update_status(
        self, reference: str, status: CaseStatus, *, note: str, actor: str, at: datetime
    ) -> Case:
        """Change the status with a note; raises ``CaseNotFoundError`` for an unknown case."""
        ...

    async def assign(
        self, reference: str, department: str, *, note: str, actor: str, at: datetime
    ) -> Case:
        """Assign the case to a department; raises ``CaseNotFoundError`` for an unknown case."""
        ...


@runtime_checkable
class CaseUpkeep(Protocol):
    """The background side of a case store: forwarding outcomes and retention."""

    async def record_forwarding(
        self, reference: str, link: Open311Link, *, note: str, actor: str, at: datetime
    ) -> Case:
        """Replace the case's Open311 link and log the outcome in its history."""
        ...

    async def closed_before(
        self, cutoff: datetime, *, include_anonymised: bool = False, limit: int = 1000
    ) -> Sequence[Case]:
        """Resolved or rejected cases whose last change is older than ``cutoff``, oldest first.

        Anonymised cases are left out unless ``include_anonymised``.
        """
        ...

    async def anonymise(self, reference: str, *, at: datetime) -> Case:
        """Drop the citizen's personal data from the case, keeping it for statistics."""
        ...

    async def delete(self, reference: str) -> bool:
        """Delete the case; False when it did not exist."""
        ...


@runtime_checkable
class Geocoder(Protocol):
    """Turns coordinates into an address and back. Implementations may call external services."""

    async def reverse(self, lat: float, lon: float) -> str | None:
        """A human-readable address near the point, or None."""
        ...

    async def forward(self, address: str) -> tuple[float, float] | None:
        """The ``(lat, lon)`` of a typed address, or None when unknown."""
        ...


class NoGeocoder:
    """A geocoder that knows nothing: typed addresses are kept as text, points get no address."""

    async def reverse(self, lat: float, lon: float) -> str | None:
        return None

    async def forward(self, address: str) -> tuple[float, float] | None:
        return None
