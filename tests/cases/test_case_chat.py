"""CaseChat's options: the channels where the citizen chooses the language."""

from __future__ import annotations

import pytest

from civicchat.cases.chat import CaseChat
from civicchat.cases.config import CasesConfig
from civicchat.clock import ManualClock


def test_the_web_chat_is_a_language_choice_channel_by_default(
    mataro_config: CasesConfig, clock: ManualClock
) -> None:
    assert CaseChat(mataro_config, clock=clock).language_choice_channels == {"webchat"}
    none = CaseChat(mataro_config, clock=clock, language_choice_channels=())
    assert none.language_choice_channels == frozenset()


def test_one_channel_name_instead_of_a_collection_is_refused_with_the_fix(
    mataro_config: CasesConfig, clock: ManualClock
) -> None:
    with pytest.raises(TypeError, match=r"collection of channel names, e.g. \('webchat',\)"):
        CaseChat(mataro_config, clock=clock, language_choice_channels="webchat")
