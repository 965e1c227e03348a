from __future__ import annotations

from datetime import datetime

import pytest
from routing_support import local

from civicchat.exceptions import ConfigError
from civicchat.routing import DEFAULT_TEXTS, OfficeHours, RoutingTexts, parse_office_hours


def test_mataro_described_in_catalan_and_spanish(mataro: OfficeHours) -> None:
    assert mataro.describe("ca") == "de dilluns a divendres, de 8:00 a 19:00"
    assert mataro.describe("es") == "de lunes a viernes, de 8:00 a 19:00"
    assert mataro.describe("es-ES") == "de lunes a viernes, de 8:00 a 19:00"


def test_split_shifts_and_catalan_elision() -> None:
    hours = parse_office_hours(
        """
timezone: Europe/Madrid
weekly:
  monday: ["08:00-14:00", "16:00-19:00"]
  tuesday: ["08:00-14:00", "16:00-19:00"]
  thursday: ["11:00-13:30"]
"""
    )
    assert hours.describe("ca") == (
        "de dilluns a dimarts, de 8:00 a 14:00 i de 16:00 a 19:00; dijous, d'11:00 a 13:30"
    )
    assert hours.describe("es") == (
        "de lunes a martes, de 8:00 a 14:00 y de 16:00 a 19:00; jueves, de 11:00 a 13:30"
    )


def test_closed_all_week_says_so() -> None:
    hours = OfficeHours(timezone="Europe/Madrid", weekly={})
    assert hours.describe("ca") == "tancat"
    assert hours.reopening_phrase(local(2026, 1, 1), "es") == "más adelante"


@pytest.mark.parametrize(
    ("at", "ca", "es"),
    [
        (local(2026, 3, 27, 19, 1), "dilluns a les 8:00", "el lunes a las 8:00"),
        (local(2026, 3, 30, 7, 0), "avui a les 8:00", "hoy a las 8:00"),
        (local(2026, 3, 31, 19, 30), "demà a les 8:00", "mañana a las 8:00"),
        (local(2026, 4, 2, 19, 30), "dimarts a les 8:00", "el martes a las 8:00"),
        (local(2026, 12, 24, 14, 0), "dilluns a les 8:00", "el lunes a las 8:00"),
    ],
)
def test_reopening_phrases(mataro: OfficeHours, at: datetime, ca: str, es: str) -> None:
    assert mataro.reopening_phrase(at, "ca") == ca
    assert mataro.reopening_phrase(at, "es") == es


def test_reopening_beyond_a_week_gives_the_date() -> None:
    hours = parse_office_hours(
        """
timezone: Europe/Madrid
weekly: {monday: ["13:00-14:00"]}
holidays: [{date: 2026-08-10}]
"""
    )
    at = local(2026, 8, 3, 15, 0)
    assert hours.reopening_phrase(at, "ca") == "dilluns 17 d’agost a les 13:00"
    assert hours.reopening_phrase(at, "es") == "el lunes 17 de agosto a las 13:00"


def test_one_oclock_is_singular() -> None:
    hours = parse_office_hours("timezone: Europe/Madrid\nweekly: {monday: ['01:00-02:00']}")
    assert hours.reopening_phrase(local(2026, 6, 14, 12, 0), "ca") == "demà a la 1:00"
    assert hours.reopening_phrase(local(2026, 6, 14, 12, 0), "es") == "mañana a la 1:00"


def test_unknown_language_is_refused(mataro: OfficeHours) -> None:
    with pytest.raises(ValueError, match="not 'fr'"):
        mataro.describe("fr")


def test_default_texts_render_in_both_languages(mataro: OfficeHours) -> None:
    at = local(2026, 3, 27, 19, 1)
    fields = {"reopening": mataro.reopening_phrase(at, "ca"), "hours": mataro.describe("ca")}
    ca = DEFAULT_TEXTS.render("out_of_hours", "ca", **fields)
    assert "Tornem a obrir dilluns a les 8:00" in ca
    assert "Envia PARAULES CLAU" in ca.replace("envia", "Envia")
    assert DEFAULT_TEXTS.render("ack", "ca") == "Un moment, us atendrà una persona del 010."
    assert DEFAULT_TEXTS.render("ack", "fr") == DEFAULT_TEXTS.render("ack", "ca")  # fallback


def test_texts_refuse_unknown_fields_and_missing_keys() -> None:
    good = {k: dict(v) for k, v in DEFAULT_TEXTS.templates.items()}
    with pytest.raises(ConfigError, match="unknown field"):
        RoutingTexts({**good, "ack": {"ca": "Hola {nom}"}})
    with pytest.raises(ConfigError, match="missing 'out_of_hours'"):
        RoutingTexts({"ack": good["ack"], "out_of_hours_unknown": good["ack"]})
