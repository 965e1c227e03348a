"""Helpers of the routing tests: the real Mataró calendar, a tiny fake responder, messages."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from civicchat.keywords.base import AnswerKind, KeywordAnswer, KeywordMatch
from civicchat.messages import Buttons, InboundContent, InboundMessage, ReplyButton, Sender, Text

MADRID = ZoneInfo("Europe/Madrid")
MATARO_HOURS = Path(__file__).resolve().parents[2] / "examples" / "mataro" / "hours.yaml"


def local(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    """A wall-clock time in Mataró."""
    return datetime(year, month, day, hour, minute, second, tzinfo=MADRID)


class FakeResponder:
    """Answers "bus" (exactly or inside a sentence), the index, and "bu" ambiguously."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def _kw(self, keyword_id: str, language: str, exact: bool) -> KeywordAnswer:
        match = KeywordMatch(keyword_id, keyword_id, 100.0 if exact else 85.0, language, exact)
        body = f"[{language}] {keyword_id}"
        return KeywordAnswer(AnswerKind.KEYWORD, language, (Text(body=body),), match)

    def answer(
        self,
        text: str,
        *,
        language: str | None = None,
        context: Mapping[str, object] | None = None,
        max_length: int = 4096,
    ) -> KeywordAnswer | None:
        self.calls.append(text)
        lang = "es" if "autobús" in text or "palabras" in text.lower() else (language or "ca")
        words = text.lower().split()
        if text.strip().upper() in ("PARAULES CLAU", "PALABRAS CLAVE"):
            return KeywordAnswer(AnswerKind.INDEX, lang, (Text(body=f"[{lang}] index"),))
        if words == ["bus"] or words == ["autobús"]:
            return self._kw("bus", lang, exact=True)
        if "bus" in words:
            return self._kw("bus", lang, exact=False)
        if words == ["bu"]:
            buttons = Buttons(
                body="Volia dir...?" if lang == "ca" else "¿Quería decir...?",
                buttons=(
                    ReplyButton(id="kw:bus", title="Bus"),
                    ReplyButton(id="kw:bus_nit", title="Bus nit"),
                ),
            )
            return KeywordAnswer(AnswerKind.CLARIFY, lang, (buttons,))
        return None

    def answer_choice(
        self,
        keyword_id: str,
        *,
        language: str,
        context: Mapping[str, object] | None = None,
        max_length: int = 4096,
    ) -> KeywordAnswer | None:
        if keyword_id in ("bus", "bus_nit"):
            return self._kw(keyword_id, language, exact=False)
        return None


_counter = iter(range(10**9))


def inbound(
    content: InboundContent | str,
    at: datetime,
    *,
    account: str = "wa-010",
    channel: str = "whatsapp",
    sender: str = "34600000000",
    hint: str | None = None,
) -> InboundMessage:
    """An inbound message; a plain string becomes Text."""
    body = Text(body=content) if isinstance(content, str) else content
    return InboundMessage(
        channel=channel,
        account=account,
        provider_message_id=f"m{next(_counter)}",
        sender=Sender(id=sender, language_hint=hint),
        timestamp=at,
        content=body,
    )
