"""The conversation lists' waiting time, and the reports' keyword names."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta

import httpx
from console_helpers import World, login_as

from civicchat.messages import InboundMessage, Sender, Text
from civicchat.service.console.lists import waiting_since
from civicchat.storage.assignment_sql import ReplyTimes
from civicchat.storage.base import Conversation, Presence


def _waiting_cell(html: str, cid: int) -> str:
    row = html[html.index(f'data-conversation="{cid}"') :]
    row = row[: row.index("</tr>")]
    cells = re.findall(r"<td>(.*?)</td>", row, flags=re.DOTALL)
    return re.sub(r"<[^>]+>", "", cells[2]).strip()  # citizen, channel, waiting, ...


async def _citizen_writes(world: World, cid: int, body: str, n: int) -> None:
    """Another message of the citizen, stored and linked as the inbox processor does it."""
    async with world.store.transaction() as tx:
        conv = await tx.conversations.get(cid)
    assert conv is not None
    msg = InboundMessage(
        channel=conv.channel,
        account=conv.account,
        provider_message_id=f"wamid.again.{n}",
        sender=Sender(id=conv.recipient_id, name="Maria"),
        timestamp=world.clock.now(),
        content=Text(body=body),
    )
    await world.store.accept([msg])
    event = await world.store.claim_event("test", lease_seconds=30)
    assert event is not None
    async with world.store.transaction() as tx:
        await tx.conversations.save(dataclasses.replace(conv, last_inbound_at=world.clock.now()))
        await tx.complete_event(event.id, "test", conversation_id=cid)


async def _reply(client: httpx.AsyncClient, cid: int, csrf: str, **data: str) -> None:
    response = await client.post(
        f"/console/conversations/{cid}/reply", data={"csrf_token": csrf, **data}
    )
    assert response.status_code == 303, response.text


async def test_waiting_stops_when_an_operator_answers_and_starts_again_with_the_citizen(
    world: World,
) -> None:
    conv = await world.conversation("wa-a")
    async with world.client() as client:
        csrf = await login_as(client, "op_a")
        world.clock.advance(timedelta(minutes=7))
        assert _waiting_cell((await client.get("/console")).text, conv.id) == "7 min"

        await _reply(client, conv.id, csrf, kind="text", body="Bon dia, ho miro")
        world.clock.advance(timedelta(minutes=5))
        assert _waiting_cell((await client.get("/console")).text, conv.id) == "respost"
        page = await client.get(f"/console/conversations/{conv.id}")
        assert "Espera" not in page.text[: page.text.index('id="messages"')]

        await _citizen_writes(world, conv.id, "encara hi és", 1)
        world.clock.advance(timedelta(minutes=2))
        await _citizen_writes(world, conv.id, "hola?", 2)
        world.clock.advance(timedelta(minutes=1))
        # Since the first message nobody answered, not the last one.
        assert _waiting_cell((await client.get("/console")).text, conv.id) == "3 min"

        await _reply(client, conv.id, csrf, kind="document", url="https://www.mataro.cat/a.pdf")
        world.clock.advance(timedelta(minutes=30))
        assert _waiting_cell((await client.get("/console")).text, conv.id) == "respost"

        await world.set_presence("op2_a", Presence.AVAILABLE)  # an offline one is refused
        # Handed to a colleague: still answered (the assignment resets the reply timer only).
        transfer = await client.post(
            f"/console/conversations/{conv.id}/transfer",
            data={"csrf_token": csrf, "to": str(world.ops["op2_a"].id)},
        )
        assert transfer.status_code == 303
        await login_as(client, "op2_a")
        assert _waiting_cell((await client.get("/console")).text, conv.id) == "respost"


async def test_waiting_is_said_in_the_operators_language(world: World) -> None:
    conv = await world.conversation("wa-a")
    async with world.client() as client:
        csrf = await login_as(client, "op_a")
        await _reply(client, conv.id, csrf, kind="text", body="Hola")
        await client.get("/lang/es?next=/console")
        assert _waiting_cell((await client.get("/console")).text, conv.id) == "respondido"
        await client.get("/lang/en?next=/console")
        assert _waiting_cell((await client.get("/console")).text, conv.id) == "answered"


async def test_reports_name_keywords_by_title_and_mark_removed_ones(world: World) -> None:
    today = world.clock.now().date()
    async with world.store.transaction() as tx:
        await tx.keywords.count_keyword("wa-a", "cita_previa", today, by=5)
        await tx.keywords.count_keyword("web-a", "cita_previa", today, by=2)
        await tx.keywords.count_keyword("wa-a", "bus_antic_retirat", today, by=3)
    async with world.client() as client:
        await login_as(client, "sup_a")
        catalan = (await client.get("/console/reports")).text
        await client.get("/lang/es?next=/console/reports")
        spanish = (await client.get("/console/reports")).text
        await client.get("/lang/en?next=/console/reports")
        english = (await client.get("/console/reports")).text
    table = catalan[catalan.index("<h2>") :]
    assert re.search(r'<span title="cita_previa">Cita prèvia</span></td><td>7</td>', table)
    assert "<code>bus_antic_retirat</code>" in table
    assert "ja no és al catàleg" in table
    assert '<span title="cita_previa">Cita previa</span>' in spanish
    assert "ya no está en el catálogo" in spanish
    # The catalog has no English: its default language.
    assert '<span title="cita_previa">Cita prèvia</span>' in english
    assert "no longer in the catalog" in english


def test_waiting_since_follows_the_first_unanswered_message() -> None:
    t0 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)

    def at(minutes: int) -> datetime:
        return t0 + timedelta(minutes=minutes)

    conv = Conversation(
        1, "wa-a", "whatsapp", 1, "34600000001", "queued", at(-60), queued_at=at(0),
        last_inbound_at=at(0),
    )  # fmt: skip
    assert waiting_since(conv, None) == at(0)  # nobody answered: since it was queued
    assert waiting_since(conv, ReplyTimes(None, at(-30))) == at(0)  # the bot's part not counted
    assert waiting_since(conv, ReplyTimes(at(5), None)) is None  # answered
    later = dataclasses.replace(conv, last_inbound_at=at(9))
    assert waiting_since(later, ReplyTimes(at(5), at(7))) == at(7)  # first since the answer
    # The message is not linked to the conversation yet: its time on the conversation counts.
    assert waiting_since(later, ReplyTimes(at(5), None)) == at(9)
    # The reply timer of the conversation counts as an answer too.
    timer = dataclasses.replace(later, last_operator_reply_at=at(10))
    assert waiting_since(timer, ReplyTimes(at(5), at(7))) is None
