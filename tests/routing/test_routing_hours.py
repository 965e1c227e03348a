from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from routing_support import local

from civicchat.exceptions import ConfigError
from civicchat.routing import (
    DayOff,
    OfficeHours,
    load_office_hours,
    parse_ical_holidays,
    parse_office_hours,
)

SPLIT = parse_office_hours(
    """
timezone: Europe/Madrid
weekly:
  monday: ["08:00-14:00", "16:00-19:00"]
  tuesday: ["08:00-14:00", "14:00-19:00"]
  saturday: ["10:00-13:00"]
  sunday: ["01:00-04:00"]
"""
)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# ----------------------------------------------------------------------------- the Mataró calendar


def test_friday_just_before_and_after_closing(mataro: OfficeHours) -> None:
    assert mataro.is_open(local(2026, 3, 27, 18, 59))
    assert not mataro.is_open(local(2026, 3, 27, 19, 1))
    assert not mataro.is_open(local(2026, 3, 27, 19, 0))
    assert mataro.next_closing(local(2026, 3, 27, 18, 59)) == local(2026, 3, 27, 19, 0)


def test_saturday_is_closed_until_monday(mataro: OfficeHours) -> None:
    at = local(2026, 6, 13, 11, 0)
    assert not mataro.is_open(at)
    assert mataro.next_opening(at) == local(2026, 6, 15, 8, 0)
    assert mataro.next_closing(at) == at


def test_holidays_close_the_office(mataro: OfficeHours) -> None:
    # Good Friday and Easter Monday 2026: from Thursday evening to Tuesday morning.
    assert not mataro.is_open(local(2026, 4, 3, 10, 0))
    assert not mataro.is_open(local(2026, 4, 6, 10, 0))
    assert mataro.next_opening(local(2026, 4, 2, 19, 30)) == local(2026, 4, 7, 8, 0)
    # A tentative holiday still closes the office.
    assert mataro.holidays[date(2026, 7, 27)].tentative
    assert not mataro.is_open(local(2026, 7, 27, 10, 0))


def test_christmas_eve_closes_at_two(mataro: OfficeHours) -> None:
    assert mataro.is_open(local(2026, 12, 24, 13, 59))
    assert not mataro.is_open(local(2026, 12, 24, 14, 0))
    assert mataro.next_closing(local(2026, 12, 24, 9, 0)) == local(2026, 12, 24, 14, 0)
    # 25 and 26 are holidays, then the weekend.
    assert mataro.next_opening(local(2026, 12, 24, 14, 0)) == local(2026, 12, 28, 8, 0)


def test_new_year_2027_is_tentatively_closed(mataro: OfficeHours) -> None:
    assert mataro.next_opening(local(2026, 12, 31, 14, 30)) == local(2027, 1, 4, 8, 0)
    assert mataro.holidays[date(2027, 11, 1)].tentative


def test_spring_daylight_saving_weekend(mataro: OfficeHours) -> None:
    # Clocks go forward on Sunday 29 March 2026: 19:00 CET is 18:00 UTC, 8:00 CEST is 6:00 UTC.
    assert mataro.next_closing(local(2026, 3, 27, 12, 0)) == utc(2026, 3, 27, 18, 0)
    opening = mataro.next_opening(utc(2026, 3, 28, 12, 0))
    assert opening == utc(2026, 3, 30, 6, 0)
    assert opening is not None
    assert (opening.hour, opening.minute) == (8, 0)
    assert not mataro.is_open(utc(2026, 3, 30, 5, 59))
    assert mataro.is_open(utc(2026, 3, 30, 6, 0))


def test_autumn_daylight_saving_weekend(mataro: OfficeHours) -> None:
    # Clocks go back on Sunday 25 October 2026: 19:00 CEST is 17:00 UTC, 8:00 CET is 7:00 UTC.
    assert mataro.next_closing(local(2026, 10, 23, 12, 0)) == utc(2026, 10, 23, 17, 0)
    assert mataro.next_opening(utc(2026, 10, 24, 12, 0)) == utc(2026, 10, 26, 7, 0)
    assert not mataro.is_open(utc(2026, 10, 26, 6, 59))


def test_interval_across_the_daylight_saving_change_itself() -> None:
    # Sunday 1:00-4:00 local: 2 real hours in spring (2:00-3:00 does not exist), 4 in autumn.
    spring_open = SPLIT.next_opening(utc(2026, 3, 28, 20, 0))
    assert spring_open == utc(2026, 3, 29, 0, 0)
    assert SPLIT.next_closing(spring_open) == utc(2026, 3, 29, 2, 0)
    autumn_open = SPLIT.next_opening(utc(2026, 10, 24, 20, 0))
    assert autumn_open == utc(2026, 10, 24, 23, 0)
    assert SPLIT.next_closing(autumn_open) == utc(2026, 10, 25, 3, 0)
    assert SPLIT.is_open(utc(2026, 10, 25, 0, 30))  # the first 2:30, in summer time
    assert SPLIT.is_open(utc(2026, 10, 25, 1, 30))  # the second 2:30, in winter time


def test_split_shift_and_adjacent_intervals() -> None:
    monday = local(2026, 6, 15, 15, 0)
    assert not SPLIT.is_open(monday)
    assert SPLIT.next_opening(monday) == local(2026, 6, 15, 16, 0)
    assert SPLIT.next_closing(local(2026, 6, 15, 9, 0)) == local(2026, 6, 15, 14, 0)
    # Tuesday's two intervals touch: one open period, one closing.
    assert SPLIT.next_closing(local(2026, 6, 16, 9, 0)) == local(2026, 6, 16, 19, 0)
    assert SPLIT.period_key(local(2026, 6, 16, 9, 0)) == SPLIT.period_key(local(2026, 6, 16, 15))


def test_period_keys_change_exactly_at_the_boundaries(mataro: OfficeHours) -> None:
    friday = mataro.period_key(local(2026, 3, 27, 8, 0))
    assert friday == mataro.period_key(local(2026, 3, 27, 18, 59, 59))
    weekend = mataro.period_key(local(2026, 3, 27, 19, 0))
    assert weekend.startswith("closed:")
    assert friday.startswith("open:")
    assert weekend == mataro.period_key(local(2026, 3, 29, 23, 0))
    assert weekend != mataro.period_key(local(2026, 3, 30, 8, 0))
    assert mataro.period_key(local(2026, 3, 30, 8, 0)) != friday


def test_naive_datetimes_are_refused(mataro: OfficeHours) -> None:
    with pytest.raises(ValueError, match="zone-aware"):
        mataro.is_open(datetime(2026, 1, 2, 10, 0))


def test_a_calendar_without_hours_never_opens() -> None:
    hours = OfficeHours(timezone="Europe/Madrid", weekly={})
    at = utc(2026, 1, 1)
    assert hours.next_opening(at) is None
    assert hours.next_closing(at) == at
    assert hours.period_key(at) == "closed:never"


# ----------------------------------------------------------------------------- properties

instants = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 20), timezones=st.just(UTC)
)
calendars = st.sampled_from(["mataro", "split"])


def _calendar(name: str, mataro: OfficeHours) -> OfficeHours:
    return mataro if name == "mataro" else SPLIT


def _aligned_points(start: datetime, stop: datetime) -> list[datetime]:
    """Every quarter hour strictly after ``start`` and before ``stop`` (all calendars here use
    quarter-hour boundaries, so an open interval would contain one of these points)."""
    first = start.replace(minute=start.minute - start.minute % 15, second=0, microsecond=0)
    points = []
    t = first + timedelta(minutes=15)
    while t < stop:
        points.append(t)
        t += timedelta(minutes=15)
    return points


@settings(max_examples=60, deadline=None)
@given(at=instants, name=calendars)
def test_next_opening_is_open_not_past_and_minimal(
    at: datetime, name: str, mataro: OfficeHours
) -> None:
    hours = _calendar(name, mataro)
    opening = hours.next_opening(at)
    assert opening is not None
    assert opening >= at
    assert hours.is_open(opening)
    assert (opening == at) == hours.is_open(at)
    assert not any(hours.is_open(t) for t in _aligned_points(at, opening))


@settings(max_examples=60, deadline=None)
@given(at=instants, name=calendars)
def test_next_closing_is_closed_not_past_and_minimal(
    at: datetime, name: str, mataro: OfficeHours
) -> None:
    hours = _calendar(name, mataro)
    closing = hours.next_closing(at)
    assert closing >= at
    assert not hours.is_open(closing)
    assert all(hours.is_open(t) for t in _aligned_points(at, closing))
    key = hours.period_key(at)
    if closing > at:
        assert hours.period_key(closing - timedelta(microseconds=1)) == key
        assert hours.period_key(closing) != key


# ----------------------------------------------------------------------------- YAML errors


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_office_hours(text, source="hours.yaml")
    return str(info.value)


def test_bad_interval_names_file_and_line() -> None:
    text = "timezone: Europe/Madrid\nweekly:\n  monday: ['08:00-19:00']\n  tuesday: ['8h-19h']\n"
    assert _error(text).startswith("hours.yaml:4: tuesday: expected an interval like")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("weekly: {monday: ['08:00-19:00']}", "hours.yaml:1: missing 'timezone'"),
        ("timezone: Mars/Olympus\nweekly: {}", "hours.yaml:1: unknown time zone 'Mars/Olympus'"),
        ("timezone: UTC\nweekly: {funday: ['08:00-09:00']}", "'funday' is not a day"),
        ("timezone: UTC\nweekly: {monday: ['08:00-12:00', '11:00-13:00']}", "overlap"),
        ("timezone: UTC\nweekly: {monday: ['19:00-08:00']}", "must start before it ends"),
        ("timezone: UTC\nweekly: {monday: ['08:00-25:00']}", "not a valid time"),
        (
            "timezone: UTC\nweekly: {}\nholidays:\n  - date: 2026-13-01\n",
            "hours.yaml:4: '2026-13-01'",
        ),
        (
            "timezone: UTC\nweekly: {}\nholidays:\n  - name: x\n",
            "hours.yaml:4: a holiday needs a 'date'",
        ),
        (
            "timezone: UTC\nweekly: {}\nholidays:\n  - {date: 2026-01-01}\n  - {date: 2026-01-01}\n",
            "listed twice",
        ),
        (
            "timezone: UTC\nweekly: {}\nholidays:\n  - {date: 2026-01-01, tentative: maybe}\n",
            "true or false",
        ),
        ("timezone: UTC\nweekly: {}\nspecial_days:\n  - {date: 2026-12-24}\n", "needs 'hours'"),
        ("timezone: UTC\nweekly: {}\ncolour: blue\n", "unknown field 'colour'"),
        ("timezone: UTC\nweekly: [monday]\n", "hours.yaml:2: weekly must be a mapping"),
        ("timezone: [UTC\n", "not valid YAML"),
        ("", "is empty"),
    ],
)
def test_bad_office_hours_are_explained(text: str, expected: str) -> None:
    assert expected in _error(text)


def test_special_day_with_no_hours_is_closed() -> None:
    hours = parse_office_hours(
        "timezone: Europe/Madrid\nweekly: {monday: ['08:00-19:00']}\n"
        "special_days:\n  - {date: 2026-06-15, hours: []}\n"
    )
    assert not hours.is_open(local(2026, 6, 15, 10, 0))
    assert hours.is_open(local(2026, 6, 22, 10, 0))


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_office_hours(tmp_path / "nope.yaml")


# ----------------------------------------------------------------------------- iCalendar

ICAL = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\n"
    "BEGIN:VEVENT\r\nDTSTART;VALUE=DATE:20260915\r\nSUMMARY:Festa major\r\n  de prova\r\nEND:VEVENT\r\n"
    "BEGIN:VEVENT\r\nDTSTART;VALUE=DATE:20260817\r\nDTEND;VALUE=DATE:20260819\r\n"
    "SUMMARY:Tancament d'estiu\r\nEND:VEVENT\r\n"
    "END:VCALENDAR\r\n"
)


def test_ical_all_day_events_become_holidays(mataro: OfficeHours) -> None:
    days = parse_ical_holidays(ICAL, tentative=True)
    assert [d.date for d in days] == [date(2026, 9, 15), date(2026, 8, 17), date(2026, 8, 18)]
    assert days[0].name == {"*": "Festa major de prova"}
    hours = mataro.with_holidays(days)
    assert not hours.is_open(local(2026, 9, 15, 10, 0))
    assert hours.next_opening(local(2026, 8, 17, 7, 0)) == local(2026, 8, 19, 8, 0)
    assert mataro.is_open(local(2026, 9, 15, 10, 0))  # the original is unchanged


def test_ical_existing_holiday_names_win(mataro: OfficeHours) -> None:
    ical = "BEGIN:VEVENT\nDTSTART;VALUE=DATE:20260101\nSUMMARY:X\nEND:VEVENT\n"
    merged = mataro.with_holidays(parse_ical_holidays(ical))
    assert merged.holidays[date(2026, 1, 1)] == mataro.holidays[date(2026, 1, 1)]
    assert isinstance(merged.holidays[date(2026, 1, 1)], DayOff)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("BEGIN:VEVENT\nDTSTART:20260101T100000Z\nEND:VEVENT\n", "cal.ics:2: only all-day events"),
        ("BEGIN:VEVENT\nSUMMARY:x\nEND:VEVENT\n", "cal.ics:3: a VEVENT has no DTSTART"),
        ("BEGIN:VEVENT\nDTSTART;VALUE=DATE:2026011\nEND:VEVENT\n", "is not a date"),
        ("BEGIN:VEVENT\nDTSTART;VALUE=DATE:20260101\n", "not closed"),
        (
            "BEGIN:VEVENT\nDTSTART;VALUE=DATE:20260105\nDTEND;VALUE=DATE:20260101\nEND:VEVENT\n",
            "cal.ics:3: DTEND is not after DTSTART",
        ),
    ],
)
def test_bad_ical_is_explained(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_ical_holidays(text, source="cal.ics")
    assert expected in str(info.value)
