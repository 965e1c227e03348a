"""CaseChat's options: the channels where the citizen chooses the language."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

import civicchat.cases.chat as chat_module
from civicchat.cases.chat import CaseChat
from civicchat.cases.config import CasesConfig
from civicchat.cases.flow import FlowStep
from civicchat.cases.sql import SqlCaseStore
from civicchat.clock import ManualClock
from civicchat.messages import InboundMessage, Location, Sender
from civicchat.routing import known_language


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


class _FakeFlow:
    languages: ClassVar[list[str]] = []

    def __init__(self, *args: Any) -> None:
        pass

    async def handle(self, state: Any, message: Any, language: str, **kwargs: Any) -> FlowStep:
        self.languages.append(language)
        return FlowStep(None, handled=False)


@pytest.mark.parametrize(
    ("channel", "hint", "conversation", "expected"),
    [
        ("webchat", "es-ES", "ca", "es"),
        ("webchat", "cat", "es", "es"),  # as the pipeline: "cat" is no choice of ca or es
        ("webchat", "fr", None, "ca"),  # no choice, no conversation language: the default
        ("whatsapp", "es", "ca", "ca"),  # a client setting, not a choice
    ],
)
async def test_the_flow_takes_the_language_the_pipeline_would(
    mataro_config: CasesConfig,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
    channel: str,
    hint: str,
    conversation: str | None,
    expected: str,
) -> None:
    monkeypatch.setattr(chat_module, "CaseFlow", _FakeFlow)
    monkeypatch.setattr(SqlCaseStore, "in_transaction", lambda connection: None)
    _FakeFlow.languages = []
    message = InboundMessage(
        channel=channel,
        account="mataro",
        provider_message_id="m1",
        sender=Sender(id="visitor_0123456789abcdef", language_hint=hint),
        timestamp=clock.now(),
        content=Location(latitude=41.54, longitude=2.44),  # no text: no detection
    )
    chat = CaseChat(mataro_config, clock=clock)
    await chat.step(None, {}, message, language=conversation, default_language="ca")  # type: ignore[arg-type]
    assert _FakeFlow.languages == [expected]
    assert expected == (known_language(channel, hint, conversation, ("ca", "es")) or "ca")
