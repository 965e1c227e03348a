"""Case values: what a citizen reported, where, and what happened to it since.

Every value is a frozen pydantic model, so a case (or a flow state holding a draft) can be stored
as JSON and read back unchanged::

    >>> ref = CaseReference.parse("MTR-2026-000123")
    >>> (ref.prefix, ref.year, ref.sequence, str(ref))
    ('MTR', 2026, 123, 'MTR-2026-000123')

No I/O happens in this module.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from civicchat.cases.errors import CaseReferenceError
from civicchat.cases.geo import map_link
from civicchat.messages import MediaKind

__all__ = [
    "Case",
    "CaseChange",
    "CaseKind",
    "CaseLocation",
    "CaseReference",
    "CaseStatus",
    "ChangeKind",
    "MediaRef",
    "NewCase",
    "Open311Link",
]

_REFERENCE_RE = re.compile(r"^([A-Z]{2,6})-(\d{4})-(\d{6,})$")


class CaseStatus(enum.StrEnum):
    """Where a case stands. ``resolved`` and ``rejected`` are final."""

    RECEIVED = "received"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    REJECTED = "rejected"

    @property
    def is_final(self) -> bool:
        return self in (CaseStatus.RESOLVED, CaseStatus.REJECTED)


class CaseKind(enum.StrEnum):
    """What the citizen said they were reporting (the keyword that started the flow)."""

    INCIDENT = "incident"
    COMPLAINT = "complaint"
    SUGGESTION = "suggestion"


class ChangeKind(enum.StrEnum):
    """What one history entry records."""

    CREATED = "created"
    STATUS = "status"
    ASSIGNED = "assigned"
    FORWARDED = "forwarded"
    FORWARD_FAILED = "forward_failed"
    ANONYMISED = "anonymised"


@dataclass(frozen=True, slots=True)
class CaseReference:
    """A short case reference: ``<PREFIX>-<YEAR>-<sequence zero-padded to 6>``.

    The sequence restarts at 1 every year, per prefix.
    """

    prefix: str
    year: int
    sequence: int

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Z]{2,6}", self.prefix):
            raise CaseReferenceError(
                f"a reference prefix is 2-6 capital letters, not {self.prefix!r}"
            )
        if not 1000 <= self.year <= 9999 or self.sequence < 1:
            raise CaseReferenceError("a reference needs a four-digit year and a sequence >= 1")

    def __str__(self) -> str:
        return f"{self.prefix}-{self.year:04d}-{self.sequence:06d}"

    @classmethod
    def parse(cls, text: str) -> CaseReference:
        """Read ``"MTR-2026-000123"`` (case-insensitive, surrounding spaces ignored)."""
        match = _REFERENCE_RE.match(text.strip().upper())
        if match is None:
            raise CaseReferenceError(
                f"{text!r} is not a case reference; expected something like MTR-2026-000123"
            )
        return cls(match.group(1), int(match.group(2)), int(match.group(3)))


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MediaRef(_Frozen):
    """A photo or video attached to a case: the channel's handle to fetch it, not the bytes."""

    media_kind: MediaKind
    ref: str = Field(min_length=1)
    channel: str = ""
    mime_type: str | None = None


class CaseLocation(_Frozen):
    """Where the problem is: a point, a typed address, or both.

    ``inside_boundary`` is None when there is no point to check.
    """

    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    address: str | None = None
    inside_boundary: bool | None = None
    source: Literal["shared", "typed", "geocoded"] = "shared"

    @property
    def has_point(self) -> bool:
        return self.latitude is not None and self.longitude is not None

    @property
    def map_url(self) -> str | None:
        """A map link for the point, or None without one."""
        if self.latitude is None or self.longitude is None:
            return None
        return map_link(self.latitude, self.longitude)


class CaseChange(_Frozen):
    """One entry of a case's history: who changed what, when, and why."""

    at: AwareDatetime
    kind: ChangeKind
    actor: str
    note: str = ""
    status: CaseStatus | None = None
    department: str | None = None


class Open311Link(_Frozen):
    """What the city's Open311 endpoint said about this case."""

    service_request_id: str | None = None
    token: str | None = None
    service_notice: str | None = None
    last_error: str | None = None
    attempts: int = 0
    forwarded_at: AwareDatetime | None = None


class NewCase(_Frozen):
    """Everything a case needs before the store gives it a reference."""

    kind: CaseKind = CaseKind.INCIDENT
    category: str
    description: str
    media: tuple[MediaRef, ...] = ()
    location: CaseLocation | None = None
    channel: str
    account: str
    citizen_id: str
    language: str = "ca"
    department: str | None = None


class Case(_Frozen):
    """A complaint, street incident or suggestion, with its history."""

    reference: str
    created_at: AwareDatetime
    updated_at: AwareDatetime
    status: CaseStatus = CaseStatus.RECEIVED
    kind: CaseKind = CaseKind.INCIDENT
    category: str
    description: str
    media: tuple[MediaRef, ...] = ()
    location: CaseLocation | None = None
    channel: str
    account: str
    citizen_id: str | None
    language: str = "ca"
    department: str | None = None
    open311: Open311Link = Open311Link()
    history: tuple[CaseChange, ...] = ()
    anonymised_at: AwareDatetime | None = None

    @property
    def parsed_reference(self) -> CaseReference:
        return CaseReference.parse(self.reference)

    @property
    def map_url(self) -> str | None:
        return None if self.location is None else self.location.map_url

    @classmethod
    def from_new(
        cls, new: NewCase, reference: CaseReference, *, at: AwareDatetime, actor: str
    ) -> Case:
        """Build the stored case from a draft (used by store implementations)."""
        created = CaseChange(
            at=at, kind=ChangeKind.CREATED, actor=actor, status=CaseStatus.RECEIVED
        )
        return cls(
            reference=str(reference),
            created_at=at,
            updated_at=at,
            history=(created,),
            **dict(new),
        )
