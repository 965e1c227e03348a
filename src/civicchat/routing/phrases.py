"""Office hours in words, Catalan and Spanish, through babel.

>>> from civicchat.routing.hours import parse_office_hours
>>> hours = parse_office_hours('''
... timezone: Europe/Madrid
... weekly: {monday: ["08:00-19:00"], tuesday: ["08:00-19:00"], wednesday: ["08:00-19:00"],
...          thursday: ["08:00-19:00"], friday: ["08:00-19:00"]}
... ''')
>>> describe_week(hours, "ca")
'de dilluns a divendres, de 8:00 a 19:00'
>>> describe_week(hours, "es")
'de lunes a viernes, de 8:00 a 19:00'
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import TYPE_CHECKING

from babel.dates import format_date, format_time, get_day_names

if TYPE_CHECKING:
    from civicchat.routing.hours import Interval, OfficeHours

__all__ = [
    "LANGUAGES",
    "describe_intervals",
    "describe_week",
    "normalise_language",
    "reopening_phrase",
]

LANGUAGES = ("ca", "es")

_WORDS = {
    "ca": {
        "and": "i",
        "closed": "tancat",
        "today": "avui",
        "tomorrow": "demà",
        "later": "més endavant",
        "weekday_prefix": "",
        "date_pattern": "EEEE d MMMM",
    },
    "es": {
        "and": "y",
        "closed": "cerrado",
        "today": "hoy",
        "tomorrow": "mañana",
        "later": "más adelante",
        "weekday_prefix": "el ",
        "date_pattern": "EEEE d 'de' MMMM",
    },
}


def normalise_language(language: str) -> str:
    """``"ca"``, ``"ca-ES"``, ``"es_ES"`` -> ``"ca"`` / ``"es"``; anything else is refused."""
    short = language.replace("_", "-").split("-", 1)[0].lower()
    if short not in _WORDS:
        raise ValueError(f"routing texts exist in {', '.join(LANGUAGES)}, not {language!r}")
    return short


def _clock(t: time, language: str) -> str:
    return str(format_time(t, "H:mm", locale=language))


def _from(t: time, language: str) -> str:
    """ "de 8:00"; Catalan elides before a vowel sound (d'1:00, d'11:00)."""
    words = _clock(t, language)
    if language == "ca" and t.hour in (1, 11):
        return f"d'{words}"
    return f"de {words}"


def _at(t: time, language: str) -> str:
    """ "a les 8:00" / "a las 8:00"; one o'clock is singular (a la 1:00)."""
    if t.hour == 1:
        return f"a la {_clock(t, language)}"
    return f"{'a les' if language == 'ca' else 'a las'} {_clock(t, language)}"


def describe_intervals(intervals: tuple[Interval, ...], language: str) -> str:
    """``"de 8:00 a 14:00 i de 16:00 a 19:00"``."""
    lang = normalise_language(language)
    parts = [f"{_from(i.start, lang)} a {_clock(i.end, lang)}" for i in intervals]
    if not parts:
        return _WORDS[lang]["closed"]
    if len(parts) == 1:
        return parts[0]
    return f"{', '.join(parts[:-1])} {_WORDS[lang]['and']} {parts[-1]}"


def describe_week(hours: OfficeHours, language: str) -> str:
    """The weekly schedule in words; consecutive days with the same hours are grouped."""
    lang = normalise_language(language)
    names = get_day_names("wide", locale=lang)
    groups: list[tuple[int, int, tuple[Interval, ...]]] = []
    for day in range(7):
        intervals = hours.weekly.get(day, ())
        if not intervals:
            continue
        if groups and groups[-1][1] == day - 1 and groups[-1][2] == intervals:
            groups[-1] = (groups[-1][0], day, intervals)
        else:
            groups.append((day, day, intervals))
    if not groups:
        return _WORDS[lang]["closed"]
    phrases = []
    for first, last, intervals in groups:
        days = names[first] if first == last else f"de {names[first]} a {names[last]}"
        phrases.append(f"{days}, {describe_intervals(intervals, lang)}")
    return "; ".join(phrases)


def reopening_phrase(hours: OfficeHours, at: datetime, language: str) -> str:
    """When the office opens next, relative to ``at``: ``"dilluns a les 8:00"``.

    ``"avui a les 16:00"`` the same day, ``"demà a les 8:00"`` the next, the weekday name within
    a week, and the full date beyond (``"dimarts 7 d’abril a les 8:00"``).
    """
    lang = normalise_language(language)
    opening = hours.next_opening(at)
    if opening is None:
        return _WORDS[lang]["later"]
    today = at.astimezone(hours.timezone).date()
    day: date = opening.date()
    when = _at(opening.time().replace(second=0, microsecond=0), lang)
    gap = (day - today).days
    if gap == 0:
        return f"{_WORDS[lang]['today']} {when}"
    if gap == 1:
        return f"{_WORDS[lang]['tomorrow']} {when}"
    if gap < 7:
        weekday = get_day_names("wide", locale=lang)[day.weekday()]
        return f"{_WORDS[lang]['weekday_prefix']}{weekday} {when}"
    full = format_date(day, _WORDS[lang]["date_pattern"], locale=lang)
    return f"{_WORDS[lang]['weekday_prefix']}{full} {when}"
