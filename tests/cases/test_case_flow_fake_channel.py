"""The report flow end to end through the FakeChannel: webhook in, flow, contents out."""

from __future__ import annotations

import json

from civicchat.cases.flow import CaseFlow, FlowState
from civicchat.cases.memory import MemoryCaseStore
from civicchat.channels.base import Capabilities, WebhookRequest
from civicchat.channels.degrade import degrade
from civicchat.channels.fake import FakeChannel
from civicchat.clock import ManualClock
from civicchat.messages import (
    Buttons,
    InboundMessage,
    ListMenu,
    LocationRequest,
    OutboundMessage,
    Text,
)

TEXT_ONLY = Capabilities(max_text_length=4096)


class Conversation:
    """A citizen on a fake channel; the flow state is kept as JSON, as storage would."""

    def __init__(self, channel: FakeChannel, flow: CaseFlow, language: str) -> None:
        self.channel = channel
        self.flow = flow
        self.language = language
        self.data: str | None = None
        self.counter = 0
        self.cases: list[str] = []

    async def says(self, text: str | None = None, *, reply_id: str | None = None) -> list[str]:
        self.counter += 1
        payload: dict[str, str] = {"from": "34600000007", "id": f"in-{self.counter}"}
        if reply_id is not None:
            payload["reply_id"] = reply_id
        payload["text"] = text or ""
        result = self.channel.handle_webhook(
            WebhookRequest("POST", body=json.dumps(payload).encode())
        )
        (event,) = result.events
        assert isinstance(event, InboundMessage)
        state = FlowState.load(self.data)
        step = await self.flow.handle(state, event, self.language)
        self.data = None if step.state is None else step.state.to_json()
        if step.case is not None:
            self.cases.append(step.case.reference)
        before = len(self.channel.sent)
        for content in step.contents:
            for piece in degrade(content, self.channel.capabilities, self.language):
                outbound = OutboundMessage(
                    channel=self.channel.name,
                    account=self.channel.account,
                    recipient_id=event.sender.id,
                    content=piece,
                )
                await self.channel.send(outbound, last_inbound_at=event.timestamp)
        return [_body(m.content) for m in self.channel.sent[before:]]


def _body(content: object) -> str:
    assert isinstance(content, Text | Buttons | ListMenu | LocationRequest), content
    return content.body


async def test_catalan_report_through_a_channel_with_buttons_and_lists(
    mataro_config, geocoder, clock: ManualClock
) -> None:
    channel = FakeChannel("fake", account="mataro", clock=clock)
    store = MemoryCaseStore()
    chat = Conversation(channel, CaseFlow(mataro_config, store, geocoder, clock), "ca")

    await chat.says("Vull posar una queixa")
    menu = channel.sent[-1].content
    assert isinstance(menu, ListMenu)  # accepted as is: 9 rows fit the channel
    await chat.says("Voreres i paviment", reply_id="case:cat:voreres")
    await chat.says("Una rajola aixecada davant de l'escola")
    await chat.says("Sense foto", reply_id="case:skip")
    (confirm,) = await chat.says("Carrer de Sant Josep, 12")
    assert "Voreres i paviment" in confirm
    assert isinstance(channel.sent[-1].content, Buttons)
    (done,) = await chat.says("Sí", reply_id="case:yes")
    assert done.startswith("Gràcies! Hem registrat la teva queixa amb el número MTR-2026-000001")
    assert chat.cases == ["MTR-2026-000001"]
    assert chat.data is None
    case = await store.get("MTR-2026-000001")
    assert case is not None
    assert case.category == "voreres"
    assert case.channel == "fake"


async def test_spanish_report_through_a_text_only_channel_answers_by_number(
    mataro_config, geocoder, clock: ManualClock, store
) -> None:
    channel = FakeChannel("fake", account="mataro", clock=clock, capabilities=TEXT_ONLY)
    chat = Conversation(channel, CaseFlow(mataro_config, store, geocoder, clock), "es")

    (menu,) = await chat.says("incidencia")
    assert "1. Alumbrado público" in menu
    assert "9. Otros" in menu
    (again,) = await chat.says("pizza")
    assert again.startswith("No he entendido la categoría")
    assert "2. Aceras y pavimento" in again
    await chat.says("2")
    (photo,) = await chat.says("Falta una baldosa")
    assert "1. Sin foto" in photo
    await chat.says("1")  # the numbered "Sin foto"
    await chat.says("no lo sé")
    (confirm,) = await chat.says("vale")  # "vale" is a yes
    assert confirm.startswith("¡Gracias! Hemos registrado tu incidencia")
    assert chat.cases == ["MTR-2026-000001"]

    assert await chat.says("cancelar") == []  # no flow to cancel: left to the keyword engine
    (status,) = await chat.says("estado MTR-2026-000001")
    assert status == "La incidencia MTR-2026-000001 (Aceras y pavimento) está recibida."


async def test_cancel_through_the_channel(mataro_config, geocoder, clock, store) -> None:
    channel = FakeChannel("fake", account="mataro", clock=clock)
    chat = Conversation(channel, CaseFlow(mataro_config, store, geocoder, clock), "ca")
    await chat.says("incidència")
    await chat.says("3")
    (bye,) = await chat.says("Cancel·lar")
    assert bye.startswith("D'acord, he cancel·lat la incidència")
    assert chat.data is None
    assert await store.list_cases() == []
