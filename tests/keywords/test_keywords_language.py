from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from civicchat.keywords import detect_language


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("On és la deixalleria?", "ca"),
        ("on es la deixalleria", "ca"),
        ("Quin temps farà demà?", "ca"),
        ("Vull demanar cita prèvia", "ca"),
        ("col·lecció", "ca"),
        ("plaça", "ca"),
        ("informacio", "ca"),
        ("¿Dónde está el ayuntamiento?", "es"),
        ("donde esta el ayuntamiento", "es"),
        ("Quiero pedir cita previa", "es"),
        ("mañana", "es"),
        ("¡Gracias!", "es"),
        ("informacion", "es"),
        ("horario del autobús", "es"),
    ],
)
def test_the_message_decides(text: str, expected: str) -> None:
    assert detect_language(text, previous="es" if expected == "ca" else "ca") == expected


@pytest.mark.parametrize("text", ["ok", "bus", "123", "", "🙂", "taxi"])
def test_without_evidence_previous_then_hint_then_default(text: str) -> None:
    assert detect_language(text) == "ca"
    assert detect_language(text, default="es") == "es"
    assert detect_language(text, hint="es-ES") == "es"
    assert detect_language(text, previous="ca", hint="es") == "ca"
    assert detect_language(text, previous="fr", hint="en") == "ca"  # not catalog languages


def test_other_language_sets() -> None:
    assert detect_language("plaça", languages=("es",)) == "es"
    assert detect_language("hello", default="es", languages=("es", "en")) == "es"


@settings(max_examples=200, deadline=None)
@given(st.text(), st.sampled_from([None, "ca", "es", "es-ES", "xx"]))
def test_never_raises_and_returns_a_catalog_language(text: str, previous: str | None) -> None:
    assert detect_language(text, previous=previous) in ("ca", "es")
