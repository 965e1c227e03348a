"""The cases package's citizen-facing texts: every one in Catalan and Spanish, in one table."""

from __future__ import annotations

import doctest
import importlib
import string

import pytest

from civicchat.cases import texts
from civicchat.cases.models import CaseKind
from civicchat.cases.texts import TEXTS, say


def _fields(pattern: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(pattern) if name}


def test_every_text_exists_in_catalan_and_spanish_with_the_same_placeholders() -> None:
    for key, versions in TEXTS.items():
        assert set(versions) == {"ca", "es"}, key
        assert all(v.strip() for v in versions.values()), key
        assert _fields(versions["ca"]) == _fields(versions["es"]), key


@pytest.mark.parametrize(
    ("language", "hint"),
    [("ca", "Per deixar-ho, escriu «cancel·lar»."), ("es", "Para dejarlo, escribe «cancelar».")],
)
def test_the_cancel_hint_is_one_of_the_texts(language: str, hint: str) -> None:
    assert say("cancel_hint", language) == hint


@pytest.mark.parametrize(
    ("language", "kind", "notice"),
    [
        (
            "ca",
            CaseKind.SUGGESTION,
            "D'acord, deixem el suggeriment aquí. Per tornar a començar, escriu «suggeriment».",
        ),
        (
            "es",
            CaseKind.COMPLAINT,
            "De acuerdo, dejamos la queja aquí. Para volver a empezar, escribe «queja».",
        ),
    ],
)
def test_the_left_notice_names_the_kind_with_its_article(
    language: str, kind: CaseKind, notice: str
) -> None:
    assert say("left", language, kind=kind) == notice


@pytest.mark.parametrize("module", [texts, importlib.import_module("civicchat.cases.chat")])
def test_the_docstring_examples_run(module: object) -> None:
    failures, tried = doctest.testmod(module)  # type: ignore[arg-type]
    assert tried >= 1
    assert failures == 0
