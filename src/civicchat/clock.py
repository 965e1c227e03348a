"""The clock seam: everything that needs "now" receives a :class:`Clock`.

Times are always zone-aware. Tests use :class:`ManualClock`::

    >>> from datetime import datetime, timedelta, UTC
    >>> clock = ManualClock(datetime(2026, 3, 27, 17, 59, tzinfo=UTC))
    >>> clock.advance(timedelta(minutes=2))
    >>> clock.now().minute
    1
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Gives the current time, zone-aware."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real time, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to (for tests and simulations)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError(
                "ManualClock needs a zone-aware datetime, e.g. datetime(..., tzinfo=UTC)"
            )
        self._now = start

    def now(self) -> datetime:
        return self._now

    def set(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("ManualClock.set needs a zone-aware datetime")
        self._now = at

    def advance(self, delta: timedelta) -> None:
        self._now += delta
