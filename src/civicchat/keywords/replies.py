"""Reply templates: jinja2 in a sandbox, with babel formatting dates in the reply language.

A reply template sees ``name`` (the citizen's name or ``""``), ``now`` (an aware datetime in the
city's time zone), ``office_hours`` (a description in the reply language), ``language`` and
whatever extra context the caller passes; the filters ``date``, ``time`` and ``datetime`` format
through babel::

    >>> from datetime import datetime
    >>> from zoneinfo import ZoneInfo
    >>> r = TemplateRenderer()
    >>> now = datetime(2026, 3, 27, 17, 5, tzinfo=ZoneInfo("Europe/Madrid"))
    >>> r.render("Hola {{ name }}, avui és {{ now | date }}.", {"name": "Anna", "now": now}, "ca")
    'Hola Anna, avui és 27 de març del 2026.'
    >>> r.render("Son las {{ now | time }}.", {"now": now}, "es")
    'Son las 17:05.'
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import date, datetime, time
from typing import Any

import babel.dates
from jinja2 import TemplateError, pass_context
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

__all__ = ["TemplateRenderer", "is_template"]

_log = logging.getLogger("civicchat.keywords")

_MARKERS = ("{{", "{%", "{#")
_MARKUP = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)


def is_template(source: str) -> bool:
    """Whether ``source`` holds jinja2 syntax (plain text is sent as it is, without jinja2)."""
    return any(marker in source for marker in _MARKERS)


def _locale(ctx: Context) -> str:
    value = ctx.get("language")
    return value if isinstance(value, str) and value else "ca"


@pass_context
def _format_date(ctx: Context, value: Any, format: str = "long") -> str:
    if not isinstance(value, date):
        return str(value)
    return babel.dates.format_date(value, format=format, locale=_locale(ctx))


@pass_context
def _format_time(ctx: Context, value: Any, format: str = "short") -> str:
    if not isinstance(value, datetime | time):
        return str(value)
    tz = value.tzinfo if isinstance(value, datetime) else None
    return babel.dates.format_time(value, format=format, tzinfo=tz, locale=_locale(ctx))


@pass_context
def _format_datetime(ctx: Context, value: Any, format: str = "medium") -> str:
    if not isinstance(value, datetime):
        return str(value)
    return babel.dates.format_datetime(
        value, format=format, tzinfo=value.tzinfo, locale=_locale(ctx)
    )


class TemplateRenderer:
    """Compiles and renders reply templates in a jinja2 sandbox, caching compiled templates."""

    def __init__(self) -> None:
        env = SandboxedEnvironment(autoescape=False, keep_trailing_newline=False)
        env.filters["date"] = _format_date
        env.filters["time"] = _format_time
        env.filters["datetime"] = _format_datetime
        self._env = env
        self._cache: dict[str, Any] = {}

    def check(self, source: str) -> tuple[str, int | None] | None:
        """Compile ``source``; returns ``(error message, template line)`` or ``None`` if fine."""
        if not is_template(source):
            return None
        try:
            self._cache[source] = self._env.from_string(source)
        except TemplateError as exc:
            line = getattr(exc, "lineno", None)
            return f"the reply template does not compile: {exc.message or exc}", line
        return None

    def render(self, source: str, context: Mapping[str, object], language: str) -> str:
        """Render ``source`` in ``language``. A template that fails at run time falls back to
        its source text with the jinja2 markup left out, and logs a warning."""
        if not is_template(source):
            return source
        template = self._cache.get(source)
        try:
            if template is None:
                template = self._env.from_string(source)
                self._cache[source] = template
            return str(template.render({**context, "language": language}))
        # Any error a city's template raises at run time ({{ 1 / 0 }}, {{ name + 1 }}, the
        # sandbox refusing an attribute) must not stop the citizen's answer.
        except Exception as exc:
            _log.warning("a reply template failed to render: %s", type(exc).__name__)
            return re.sub(r"[ \t]{2,}", " ", _MARKUP.sub("", source)).strip()
