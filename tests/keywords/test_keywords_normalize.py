from __future__ import annotations

import time

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from civicchat.keywords import normalize
from civicchat.keywords.normalize import MAX_INPUT_CHARS, STOP_WORDS, content_tokens


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("BUS", "bus"),
        ("Autobús", "autobus"),
        ("àéèíïòóúüçñ ÀÉÈÍÏÒÓÚÜÇÑ", "aeeiioouucn aeeiioouucn"),
        ("col·lecció", "colleccio"),
        ("col.lecció", "colleccio"),
        ("col•lecció", "colleccio"),
        ("coŀlecció", "colleccio"),
        ("l'agenda", "agenda"),
        ("L’AGENDA", "agenda"),
        ("l´agenda d`interès", "agenda interes"),
        ("punt d'interès", "punt interes"),
        ("s'ha endut", "ha endut"),
        ("on és la deixalleria???", "on es la deixalleria"),
        ("¿Dónde está?", "donde esta"),
        ("bus 🚌🚌 urbà!!", "bus urba"),
        ("  molts     espais\t\n  ", "molts espais"),
        ("horari_del-bus", "horari del bus"),
        ("", ""),
        ("🙂🙂", ""),
    ],
)
def test_normalize_examples(text: str, expected: str) -> None:
    assert normalize(text) == expected


def test_normalize_refuses_non_text_quietly() -> None:
    assert normalize(None) == ""  # type: ignore[arg-type]
    assert normalize(42) == ""  # type: ignore[arg-type]


def test_control_characters_and_lone_surrogates_become_spaces() -> None:
    assert normalize("bus\x00\x07\u200b\ud800\udfff urbà") == "bus urba"


def test_long_text_is_cut_and_stays_fast() -> None:
    text = "queixa del bus " * 10_000  # 150 KB
    start = time.perf_counter()
    result = normalize(text)
    elapsed = time.perf_counter() - start
    assert len(result) <= MAX_INPUT_CHARS
    assert result.startswith("queixa del bus queixa")
    assert elapsed < 0.05


def test_content_tokens_drop_stop_words_and_greetings() -> None:
    assert content_tokens(normalize("Bon dia! On és la deixalleria, si us plau?")) == [
        "deixalleria"
    ]
    assert content_tokens(normalize("Buenas tardes, ¿el horario del autobús?")) == [
        "horario",
        "autobus",
    ]
    # "nit" alone is a word ("bus de nit"), only "bona nit" is a greeting.
    assert content_tokens(normalize("bus de nit")) == ["bus", "nit"]
    assert {"de", "la", "el", "on", "que", "donde"} <= STOP_WORDS


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_normalize_is_idempotent_and_never_raises(text: str) -> None:
    once = normalize(text)
    assert normalize(once) == once
    assert once == once.strip()
    assert "  " not in once


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2100), max_size=40))
@example("ŉ")  # decomposes into an apostrophe and a letter
@example("l´agenda")
@example("𝑨ﬁ")
def test_normalize_is_idempotent_on_latin_and_symbols(text: str) -> None:
    once = normalize(text)
    assert normalize(once) == once


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec=None), max_size=40))
def test_normalize_any_code_point_including_surrogates(text: str) -> None:
    once = normalize(text)
    assert normalize(once) == once
    once.encode("utf-8")  # no lone surrogate survives


_FOLD_PAIRS = {"a": "àáâä", "e": "èéêë", "i": "ìíîï", "o": "òóôö", "u": "ùúûü", "c": "ç", "n": "ñ"}


@st.composite
def accent_and_case_variant(draw: st.DrawFn) -> tuple[str, str]:
    word = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=12))
    out = []
    for ch in word:
        choices = [ch, ch.upper(), *list(_FOLD_PAIRS.get(ch, ""))]
        choice = draw(st.sampled_from(choices))
        out.append(choice.upper() if draw(st.booleans()) else choice)
    return word, "".join(out)


@settings(max_examples=200, deadline=None)
@given(accent_and_case_variant())
def test_case_and_accent_variants_normalise_alike(pair: tuple[str, str]) -> None:
    word, variant = pair
    assert normalize(variant) == normalize(word)
