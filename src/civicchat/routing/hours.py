"""Office hours: a weekly schedule with split shifts, a time zone, holidays and special days.

All arithmetic is done on zone-aware instants, so daylight-saving changes need no special case::

    >>> from datetime import datetime
    >>> from zoneinfo import ZoneInfo
    >>> hours = parse_office_hours('''
    ... timezone: Europe/Madrid
    ... weekly:
    ...   monday: ["08:00-14:00", "16:00-19:00"]
    ... ''')
    >>> at = datetime(2026, 3, 30, 15, 0, tzinfo=ZoneInfo("Europe/Madrid"))
    >>> hours.is_open(at), hours.next_opening(at).hour
    (False, 16)

The human-readable side (``describe``, ``reopening_phrase``) lives in :mod:`civicchat.routing.phrases`
and is reached through the methods of :class:`OfficeHours`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from pathlib import Path
from types import MappingProxyType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from civicchat.exceptions import ConfigError

__all__ = [
    "DayOff",
    "Interval",
    "OfficeHours",
    "SpecialDay",
    "load_office_hours",
    "parse_ical_holidays",
    "parse_office_hours",
]

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_SEARCH_DAYS = 800  # how far next_opening/next_closing look ahead before giving up
_INTERVAL_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


@dataclass(frozen=True, slots=True)
class Interval:
    """Local opening times within one day, as minutes since local midnight (``end`` may be 1440,
    i.e. 24:00)."""

    start_minute: int
    end_minute: int

    def __post_init__(self) -> None:
        if not 0 <= self.start_minute < self.end_minute <= 24 * 60:
            raise ValueError(
                f"an interval must start before it ends, within one day (got {self.label()})"
            )

    @classmethod
    def parse(cls, text: str) -> Interval:
        """Read ``"08:00-19:00"`` (``"24:00"`` is allowed as an end)."""
        m = _INTERVAL_RE.match(text)
        if not m:
            raise ValueError(f"expected an interval like '08:00-19:00', got {text!r}")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
            raise ValueError(f"not a valid time of day in {text!r}")
        return cls(h1 * 60 + m1, h2 * 60 + m2)

    @property
    def start(self) -> time:
        return time(self.start_minute // 60, self.start_minute % 60)

    @property
    def end(self) -> time:
        """The end as a time of day (24:00 is shown as 0:00)."""
        return time((self.end_minute // 60) % 24, self.end_minute % 60)

    def label(self) -> str:
        return (
            f"{self.start_minute // 60:02d}:{self.start_minute % 60:02d}-"
            f"{self.end_minute // 60:02d}:{self.end_minute % 60:02d}"
        )


@dataclass(frozen=True, slots=True)
class DayOff:
    """A holiday: the office is closed all day. ``tentative`` marks dates not yet confirmed."""

    date: date
    name: Mapping[str, str] = field(default_factory=dict)
    tentative: bool = False


@dataclass(frozen=True, slots=True)
class SpecialDay:
    """A day with different hours (an empty ``intervals`` means closed)."""

    date: date
    intervals: tuple[Interval, ...]
    name: Mapping[str, str] = field(default_factory=dict)
    tentative: bool = False


def _check_intervals(intervals: Iterable[Interval], where: str) -> tuple[Interval, ...]:
    ordered = tuple(sorted(intervals, key=lambda i: i.start_minute))
    for a, b in pairwise(ordered):
        if b.start_minute < a.end_minute:
            raise ConfigError(f"{where}: intervals {a.label()} and {b.label()} overlap")
    return ordered


class OfficeHours:
    """When people answer: weekly intervals in ``timezone``, minus holidays, with special days.

    ``weekly`` maps a weekday (0 = Monday) to its intervals; a missing day is closed. A holiday
    closes the whole day; a special day replaces that day's intervals. Every query takes a
    zone-aware ``datetime`` and answers in the office's time zone.
    """

    def __init__(
        self,
        *,
        timezone: str | ZoneInfo,
        weekly: Mapping[int, Iterable[Interval]],
        holidays: Iterable[DayOff] = (),
        special_days: Iterable[SpecialDay] = (),
    ) -> None:
        if isinstance(timezone, str):
            try:
                timezone = ZoneInfo(timezone)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ConfigError(
                    f"unknown time zone {timezone!r}; use an IANA name such as 'Europe/Madrid'"
                ) from exc
        self.timezone: ZoneInfo = timezone
        week: dict[int, tuple[Interval, ...]] = {}
        for day, intervals in weekly.items():
            if day not in range(7):
                raise ConfigError(f"weekday must be 0 (Monday) to 6 (Sunday), got {day!r}")
            checked = _check_intervals(intervals, WEEKDAYS[day])
            if checked:
                week[day] = checked
        self.weekly: Mapping[int, tuple[Interval, ...]] = MappingProxyType(week)
        self.holidays: Mapping[date, DayOff] = MappingProxyType({h.date: h for h in holidays})
        specials: dict[date, SpecialDay] = {}
        for s in special_days:
            specials[s.date] = SpecialDay(
                s.date, _check_intervals(s.intervals, s.date.isoformat()), s.name, s.tentative
            )
        self.special_days: Mapping[date, SpecialDay] = MappingProxyType(specials)

    def __repr__(self) -> str:
        return (
            f"OfficeHours(timezone={self.timezone.key!r}, weekly={dict(self.weekly)!r}, "
            f"holidays={len(self.holidays)}, special_days={len(self.special_days)})"
        )

    # ------------------------------------------------------------------ building

    def with_holidays(self, holidays: Iterable[DayOff]) -> OfficeHours:
        """A copy with more holidays (e.g. from :func:`parse_ical_holidays`); existing ones win."""
        merged = {h.date: h for h in holidays}
        merged.update(self.holidays)
        return OfficeHours(
            timezone=self.timezone,
            weekly=self.weekly,
            holidays=merged.values(),
            special_days=self.special_days.values(),
        )

    # ------------------------------------------------------------------ queries

    def intervals_on(self, day: date) -> tuple[Interval, ...]:
        """The local opening intervals of ``day`` after holidays and special days."""
        if day in self.holidays:
            return ()
        special = self.special_days.get(day)
        if special is not None:
            return special.intervals
        return self.weekly.get(day.weekday(), ())

    def _spans(self, start_day: date) -> Iterator[tuple[datetime, datetime]]:
        """Open spans as UTC instants, day by day from ``start_day``, adjacent spans merged."""
        pending: tuple[datetime, datetime] | None = None
        for offset in range(_SEARCH_DAYS):
            day = start_day + timedelta(days=offset)
            for interval in self.intervals_on(day):
                begin = self._instant(day, interval.start_minute)
                end = self._instant(day, interval.end_minute)
                if end <= begin:  # an interval swallowed by a daylight-saving gap
                    continue
                if pending is not None and begin <= pending[1]:
                    pending = (pending[0], max(end, pending[1]))
                    continue
                if pending is not None:
                    yield pending
                pending = (begin, end)
        if pending is not None:
            yield pending

    def _instant(self, day: date, minute: int) -> datetime:
        # Wall-clock first, then convert: 8:00 stays 8:00 on both sides of a daylight-saving change.
        if minute == 24 * 60:
            local = datetime.combine(day + timedelta(days=1), time(0), tzinfo=self.timezone)
        else:
            local = datetime.combine(day, time(minute // 60, minute % 60), tzinfo=self.timezone)
        return local.astimezone(UTC)

    def _span_at_or_after(self, at: datetime) -> tuple[datetime, datetime] | None:
        """The first merged open span that ends after ``at``."""
        at_utc = _aware(at).astimezone(UTC)
        # Start one day early so a span running over local midnight is seen whole.
        first_day = at_utc.astimezone(self.timezone).date() - timedelta(days=1)
        for begin, end in self._spans(first_day):
            if end > at_utc:
                return begin, end
        return None

    def is_open(self, at: datetime) -> bool:
        """True when a person answers at the instant ``at``."""
        at_utc = _aware(at).astimezone(UTC)
        local_day = at_utc.astimezone(self.timezone).date()
        for interval in self.intervals_on(local_day):
            if (
                self._instant(local_day, interval.start_minute)
                <= at_utc
                < self._instant(local_day, interval.end_minute)
            ):
                return True
        return False

    def next_opening(self, at: datetime) -> datetime | None:
        """The earliest instant at or after ``at`` when the office is open (``at`` itself if open).

        The answer is in the office's time zone; ``None`` if no opening exists in the next two
        years (a calendar with no hours at all).
        """
        span = self._span_at_or_after(at)
        if span is None:
            return None
        return max(span[0], _aware(at).astimezone(UTC)).astimezone(self.timezone)

    def next_closing(self, at: datetime) -> datetime:
        """The earliest instant at or after ``at`` when the office is closed (``at`` if closed)."""
        at_utc = _aware(at).astimezone(UTC)
        span = self._span_at_or_after(at)
        if span is None or span[0] > at_utc:
            return at_utc.astimezone(self.timezone)
        return span[1].astimezone(self.timezone)

    def period_key(self, at: datetime) -> str:
        """A stable id of the open or closed period containing ``at``.

        Every instant of one period gives the same key, and two periods never share one, so a
        conversation can record "already acknowledged in this period". Open periods are named by
        when they close, closed periods by when they end (the next opening).
        """
        at_utc = _aware(at).astimezone(UTC)
        span = self._span_at_or_after(at)
        if span is None:
            return "closed:never"
        if span[0] <= at_utc:
            return "open:" + span[1].strftime("%Y-%m-%dT%H:%MZ")
        return "closed:" + span[0].strftime("%Y-%m-%dT%H:%MZ")

    # ------------------------------------------------------------------ words

    def describe(self, language: str) -> str:
        """The weekly hours in words: ``"de dilluns a divendres, de 8:00 a 19:00"``."""
        from civicchat.routing.phrases import describe_week

        return describe_week(self, language)

    def reopening_phrase(self, at: datetime, language: str) -> str:
        """When the office next opens, in words: ``"dilluns a les 8:00"``."""
        from civicchat.routing.phrases import reopening_phrase

        return reopening_phrase(self, at, language)


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("office hours need a zone-aware datetime, e.g. datetime(..., tzinfo=UTC)")
    return at


# --------------------------------------------------------------------------- YAML


def load_office_hours(path: str | Path) -> OfficeHours:
    """Read an office-hours YAML file (see :func:`parse_office_hours` for the format)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the office-hours file: {exc.strerror}") from exc
    return parse_office_hours(text, source=str(p))


def parse_office_hours(text: str, *, source: str = "<office hours>") -> OfficeHours:
    """Read the agreed office-hours YAML.

    ::

        timezone: Europe/Madrid
        weekly:                      # any day omitted = closed; several intervals = split shift
          monday: ["08:00-19:00"]
        holidays:                    # closed all day
          - date: 2026-01-01
            name: {ca: "Cap d'Any", es: "Año Nuevo"}
            tentative: true          # optional
        special_days:                # different hours that day (an empty list = closed)
          - date: 2026-12-24
            hours: ["08:00-14:00"]
            name: {ca: "Nit de Nadal", es: "Nochebuena"}

    Raises :class:`~civicchat.exceptions.ConfigError` naming the file and line of the problem.
    """
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}{line}: not valid YAML: {exc}") from exc
    return _Reader(source).office_hours(root)


class _Reader:
    """Walks the YAML node tree so every error can name its line."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, node: yaml.Node | None, message: str) -> ConfigError:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        return ConfigError(f"{self.source}{line}: {message}")

    def mapping(self, node: yaml.Node | None, what: str) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{what} must be a mapping")
        out: dict[str, yaml.Node] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                raise self.fail(key, f"{what}: keys must be plain words")
            if key.value in out:
                raise self.fail(key, f"{what}: {key.value!r} appears twice")
            out[key.value] = value
        return out

    def sequence(self, node: yaml.Node, what: str) -> list[yaml.Node]:
        if isinstance(node, yaml.ScalarNode) and node.value in ("", "null", "~"):
            return []
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, f"{what} must be a list")
        return list(node.value)

    def scalar(self, node: yaml.Node, what: str) -> str:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, f"{what} must be a single value")
        return str(node.value)

    def unknown(self, fields: dict[str, yaml.Node], allowed: set[str], what: str) -> None:
        for name, node in fields.items():
            if name not in allowed:
                raise self.fail(
                    node, f"{what}: unknown field {name!r} (expected one of {sorted(allowed)})"
                )

    def office_hours(self, root: yaml.Node | None) -> OfficeHours:
        if root is None:
            raise ConfigError(f"{self.source}: the office-hours file is empty")
        top = self.mapping(root, "the office-hours file")
        self.unknown(top, {"timezone", "weekly", "holidays", "special_days"}, "top level")
        if "timezone" not in top:
            raise self.fail(root, "missing 'timezone' (e.g. timezone: Europe/Madrid)")
        tz_node = top["timezone"]
        tz_name = self.scalar(tz_node, "timezone")
        try:
            tz = ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise self.fail(
                tz_node, f"unknown time zone {tz_name!r}; use an IANA name such as Europe/Madrid"
            ) from None
        if "weekly" not in top:
            raise self.fail(root, "missing 'weekly' (e.g. weekly: {monday: ['08:00-19:00']})")
        weekly: dict[int, tuple[Interval, ...]] = {}
        for day_name, day_node in self.mapping(top["weekly"], "weekly").items():
            if day_name.lower() not in WEEKDAYS:
                raise self.fail(day_node, f"weekly: {day_name!r} is not a day (use monday...)")
            weekly[WEEKDAYS.index(day_name.lower())] = self.intervals(day_node, day_name)
        holidays: dict[date, DayOff] = {}
        for item in self.sequence(top.get("holidays", yaml.ScalarNode("", "")), "holidays"):
            fields = self.mapping(item, "a holiday")
            self.unknown(fields, {"date", "name", "tentative"}, "holiday")
            day = self.date(fields, item, "holiday")
            if day in holidays:
                raise self.fail(item, f"holiday {day} is listed twice")
            holidays[day] = DayOff(day, self.name(fields), self.flag(fields, "tentative"))
        specials: dict[date, SpecialDay] = {}
        for item in self.sequence(top.get("special_days", yaml.ScalarNode("", "")), "special_days"):
            fields = self.mapping(item, "a special day")
            self.unknown(fields, {"date", "hours", "name", "tentative"}, "special day")
            day = self.date(fields, item, "special day")
            if day in specials:
                raise self.fail(item, f"special day {day} is listed twice")
            if day in holidays:
                raise self.fail(item, f"{day} is both a holiday and a special day")
            if "hours" not in fields:
                raise self.fail(item, "a special day needs 'hours' (an empty list means closed)")
            specials[day] = SpecialDay(
                day,
                self.intervals(fields["hours"], str(day)),
                self.name(fields),
                self.flag(fields, "tentative"),
            )
        return OfficeHours(
            timezone=tz, weekly=weekly, holidays=holidays.values(), special_days=specials.values()
        )

    def intervals(self, node: yaml.Node, what: str) -> tuple[Interval, ...]:
        out: list[Interval] = []
        for item in self.sequence(node, what):
            try:
                out.append(Interval.parse(self.scalar(item, what)))
            except ValueError as exc:
                raise self.fail(item, f"{what}: {exc}") from None
        try:
            return _check_intervals(out, what)
        except ConfigError as exc:
            raise self.fail(node, str(exc)) from None

    def date(self, fields: dict[str, yaml.Node], item: yaml.Node, what: str) -> date:
        if "date" not in fields:
            raise self.fail(item, f"a {what} needs a 'date' (YYYY-MM-DD)")
        raw = self.scalar(fields["date"], "date")
        try:
            return date.fromisoformat(raw)
        except ValueError:
            raise self.fail(fields["date"], f"{raw!r} is not a date like 2026-12-24") from None

    def name(self, fields: dict[str, yaml.Node]) -> Mapping[str, str]:
        node = fields.get("name")
        if node is None:
            return {}
        if isinstance(node, yaml.ScalarNode):
            return {"*": str(node.value)}
        return {k: self.scalar(v, f"name.{k}") for k, v in self.mapping(node, "name").items()}

    def flag(self, fields: dict[str, yaml.Node], key: str) -> bool:
        node = fields.get(key)
        if node is None:
            return False
        raw = self.scalar(node, key).lower()
        if raw in ("true", "yes"):
            return True
        if raw in ("false", "no"):
            return False
        raise self.fail(node, f"{key} must be true or false, got {raw!r}")


# --------------------------------------------------------------------------- iCalendar


def parse_ical_holidays(
    text: str, *, source: str = "<calendar>", tentative: bool = False
) -> tuple[DayOff, ...]:
    """Read all-day events (``DTSTART;VALUE=DATE``) of an iCalendar file as holidays.

    Multi-day events (an exclusive ``DTEND;VALUE=DATE``) give one holiday per day; the
    ``SUMMARY`` becomes the name for every language. Timed events are refused: a holiday closes a
    whole day. Use :meth:`OfficeHours.with_holidays` to add the result to a calendar.
    """
    lines: list[str] = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        if raw[:1] in (" ", "\t") and lines:
            lines[-1] += raw[1:]  # RFC 5545 line folding
        else:
            lines.append(raw)
    out: list[DayOff] = []
    event: dict[str, tuple[str, str, int]] | None = None
    for number, line in enumerate(lines, start=1):
        if line == "BEGIN:VEVENT":
            event = {}
            continue
        if line == "END:VEVENT":
            if event is None:
                raise ConfigError(f"{source}:{number}: END:VEVENT without BEGIN:VEVENT")
            out.extend(_ical_event(event, source, number, tentative))
            event = None
            continue
        if event is None or ":" not in line:
            continue
        head, value = line.split(":", 1)
        name, *params = head.split(";")
        event[name.upper()] = (";".join(p.upper() for p in params), value.strip(), number)
    if event is not None:
        raise ConfigError(f"{source}: a VEVENT is not closed with END:VEVENT")
    return tuple(out)


def _ical_event(
    event: dict[str, tuple[str, str, int]], source: str, end_line: int, tentative: bool
) -> list[DayOff]:
    if "DTSTART" not in event:
        raise ConfigError(f"{source}:{end_line}: a VEVENT has no DTSTART")
    params, value, number = event["DTSTART"]
    start = _ical_date(params, value, source, number)
    stop = start + timedelta(days=1)
    if "DTEND" in event:
        eparams, evalue, enumber = event["DTEND"]
        stop = _ical_date(eparams, evalue, source, enumber)
        if stop <= start:
            raise ConfigError(f"{source}:{enumber}: DTEND is not after DTSTART")
    summary = event.get("SUMMARY", ("", "", 0))[1].replace("\\,", ",").replace("\\;", ";")
    name: dict[str, str] = {"*": summary} if summary else {}
    days = (stop - start).days
    return [DayOff(start + timedelta(days=i), name, tentative) for i in range(days)]


def _ical_date(params: str, value: str, source: str, number: int) -> date:
    if "VALUE=DATE" not in params.split(";") and not re.fullmatch(r"\d{8}", value):
        raise ConfigError(
            f"{source}:{number}: only all-day events (DTSTART;VALUE=DATE:YYYYMMDD) can be holidays"
        )
    try:
        if not re.fullmatch(r"\d{8}", value):
            raise ValueError(value)
        return date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        raise ConfigError(f"{source}:{number}: {value!r} is not a date like 20261224") from None
