"""known_language: the one rule for the citizen's chosen language (pipeline and report flow)."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given
from hypothesis import strategies as st

import civicchat.routing.pipeline
from civicchat.routing import LANGUAGE_CHOICE_CHANNELS, known_language

LANGS = ("ca", "es")


@pytest.mark.parametrize(
    ("channel", "hint", "previous", "expected"),
    [
        ("webchat", "es", "ca", "es"),  # the selector's choice wins
        ("webchat", "es-ES", "ca", "es"),
        ("webchat", "ES_es", None, "es"),
        ("webchat", "ca", None, "ca"),
        ("webchat", "fr", "ca", "ca"),  # not a language of the city: the conversation's
        ("webchat", "cat", "es", "es"),  # a 3-letter code is not "ca" cut short
        ("webchat", None, "es", "es"),
        ("webchat", "", None, None),
        ("whatsapp", "es", "ca", "ca"),  # a client setting, not a choice
        ("telegram", "es", None, None),
    ],
)
def test_the_choice_wins_only_on_a_choice_channel_and_only_for_a_known_language(
    channel: str, hint: str | None, previous: str | None, expected: str | None
) -> None:
    assert known_language(channel, hint, previous, LANGS) == expected


def test_the_choice_channels_and_languages_are_the_callers() -> None:
    assert {"webchat"} == LANGUAGE_CHOICE_CHANNELS
    assert known_language("kiosk", "es", "ca", LANGS, ("kiosk",)) == "es"
    assert known_language("webchat", "es", "ca", LANGS, ()) == "ca"
    assert known_language("webchat", "fr", "ca", ("ca", "es", "fr")) == "fr"


@given(
    channel=st.sampled_from(["webchat", "whatsapp", "telegram"]),
    hint=st.none() | st.text(max_size=12),
    previous=st.none() | st.sampled_from(LANGS),
)
def test_the_answer_is_a_known_language_or_the_previous_one(
    channel: str, hint: str | None, previous: str | None
) -> None:
    found = known_language(channel, hint, previous, LANGS)
    assert found == previous or (found in LANGS and channel == "webchat")


def test_the_docstring_examples_run() -> None:
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    for test in finder.find(
        known_language, "known_language", globs=vars(civicchat.routing.pipeline)
    ):
        runner.run(test)
    assert runner.failures == 0
    assert runner.tries >= 3
