"""The routing's own words to citizens, in Catalan and Spanish, editable per account.

Templates use ``str.format`` fields: ``{reopening}`` (e.g. "dilluns a les 8:00") and ``{hours}``
(e.g. "de dilluns a divendres, de 8:00 a 19:00")::

    >>> DEFAULT_TEXTS.render("ack", "es")
    'Un momento, le atenderá una persona del 010.'
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from civicchat.exceptions import ConfigError

__all__ = ["DEFAULT_TEXTS", "RoutingTexts"]

_KEYS = ("ack", "out_of_hours", "out_of_hours_unknown")
_FIELDS = frozenset({"reopening", "hours"})
#: Keys an account may leave out (the library's words are used), and the fields each may use.
_OPTIONAL: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "reminder": frozenset(),
        "reminder_position": frozenset({"position"}),
        "out_of_hours_reminder": frozenset({"reopening"}),
        "out_of_hours_reminder_unknown": frozenset(),
    }
)


@dataclass(frozen=True)
class RoutingTexts:
    """Per-language templates: ``templates[key][language]``.

    Keys: ``ack`` (queued for a person during office hours), ``out_of_hours`` (the office is
    closed; ``{reopening}`` and ``{hours}`` available) and ``out_of_hours_unknown`` (closed with
    no known reopening). Optional: ``reminder`` (a gentle "we have your messages" to a citizen
    who keeps writing while queued) and ``reminder_position`` (the same with ``{position}`` in
    the queue), ``out_of_hours_reminder`` (out of hours, to a citizen who writes again after the
    out-of-hours reply: "we have your message, a person answers you {reopening}") and
    ``out_of_hours_reminder_unknown`` (the same with no known reopening); left out, the
    library's words are used. Validated at construction so a typo fails at start-up, not at
    19:01.
    """

    templates: Mapping[str, Mapping[str, str]]
    default_language: str = "ca"
    languages: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        frozen: dict[str, Mapping[str, str]] = {}
        langs: set[str] = set()
        for key in _KEYS:
            per_lang = self.templates.get(key)
            if not per_lang:
                raise ConfigError(f"routing texts: missing {key!r} (give it per language)")
            for lang, template in per_lang.items():
                names = {f for _, f, _, _ in string.Formatter().parse(template) if f}
                if not names <= _FIELDS:
                    raise ConfigError(
                        f"routing texts: {key}.{lang} uses unknown field(s) "
                        f"{sorted(names - _FIELDS)}; available: {sorted(_FIELDS)}"
                    )
                langs.add(lang)
            frozen[key] = MappingProxyType(dict(per_lang))
        for key, allowed in _OPTIONAL.items():
            per_lang = self.templates.get(key)
            if per_lang is None:
                continue
            if not per_lang:
                raise ConfigError(f"routing texts: {key!r} is empty (give it per language)")
            for lang, template in per_lang.items():
                try:
                    names = {f for _, f, _, _ in string.Formatter().parse(template) if f}
                except ValueError as exc:
                    raise ConfigError(f"routing texts: {key}.{lang}: {exc}") from None
                if not names <= allowed:
                    raise ConfigError(
                        f"routing texts: {key}.{lang} uses unknown field(s) "
                        f"{sorted(names - allowed)}; available: {sorted(allowed)}"
                    )
            frozen[key] = MappingProxyType(dict(per_lang))
        unknown = sorted(set(self.templates) - set(_KEYS) - set(_OPTIONAL))
        if unknown:
            raise ConfigError(
                f"routing texts: unknown key(s) {unknown}; known: {sorted([*_KEYS, *_OPTIONAL])}"
            )
        if self.default_language not in frozen["ack"]:
            raise ConfigError(
                f"routing texts: the default language {self.default_language!r} has no 'ack'"
            )
        object.__setattr__(self, "templates", MappingProxyType(frozen))
        object.__setattr__(self, "languages", tuple(sorted(langs)))

    def render(self, key: str, language: str | None, **fields: str) -> str:
        """The text ``key`` in ``language`` (or the default language), with ``fields`` filled."""
        per_lang = self.templates.get(key) or _OPTIONAL_DEFAULTS[key]
        template = per_lang.get(language or "") or per_lang.get(self.default_language)
        if template is None:
            template = next(iter(per_lang.values()))
        return template.format(**fields)


_OPTIONAL_DEFAULTS: Mapping[str, Mapping[str, str]] = {
    "reminder": {
        "ca": "Tenim els vostres missatges. Una persona del 010 us respondrà tan aviat com pugui.",
        "es": "Tenemos sus mensajes. Una persona del 010 le responderá lo antes posible.",
    },
    "reminder_position": {
        "ca": (
            "Tenim els vostres missatges. Una persona del 010 us respondrà tan aviat com pugui; "
            "sou el número {position} de la cua."
        ),
        "es": (
            "Tenemos sus mensajes. Una persona del 010 le responderá lo antes posible; "
            "es el número {position} de la cola."
        ),
    },
    "out_of_hours_reminder": {
        "ca": "Hem rebut el vostre missatge. Una persona del 010 us respondrà {reopening}.",
        "es": "Hemos recibido su mensaje. Una persona del 010 le responderá {reopening}.",
    },
    "out_of_hours_reminder_unknown": {
        "ca": "Hem rebut el vostre missatge. Una persona del 010 us respondrà quan obrim.",
        "es": "Hemos recibido su mensaje. Una persona del 010 le responderá cuando abramos.",
    },
}

DEFAULT_TEXTS = RoutingTexts(
    {
        "ack": {
            "ca": "Un moment, us atendrà una persona del 010.",
            "es": "Un momento, le atenderá una persona del 010.",
        },
        "out_of_hours": {
            "ca": (
                "Ara l'oficina del 010 és tancada. Tornem a obrir {reopening} "
                "(horari: {hours}) i una persona us respondrà llavors. "
                "Mentrestant, envia PARAULES CLAU per veure les respostes automàtiques."
            ),
            "es": (
                "Ahora la oficina del 010 está cerrada. Volvemos a abrir {reopening} "
                "(horario: {hours}) y una persona le responderá entonces. "
                "Mientras tanto, envíe PALABRAS CLAVE para ver las respuestas automáticas."
            ),
        },
        **_OPTIONAL_DEFAULTS,
        "out_of_hours_unknown": {
            "ca": (
                "Ara l'oficina del 010 és tancada; una persona us respondrà quan obrim. "
                "Mentrestant, envia PARAULES CLAU per veure les respostes automàtiques."
            ),
            "es": (
                "Ahora la oficina del 010 está cerrada; una persona le responderá cuando abramos. "
                "Mientras tanto, envíe PALABRAS CLAVE para ver las respuestas automáticas."
            ),
        },
    }
)
