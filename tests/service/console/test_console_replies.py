"""What operators do: replies reach the outbox, conversations move, everything is audited."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from console_helpers import World, login_as
from sqlalchemy import event

from civicchat.messages import Location, Media, MediaKind, Text, content_from_json
from civicchat.service.console.views import ConsoleViews
from civicchat.service.console.web import Console
from civicchat.service.live import LiveEvent
from civicchat.storage.base import Presence


async def _out(world: World, conversation_id: int) -> list[object]:
    async with world.store.transaction() as tx:
        messages = await tx.conversation_messages(conversation_id)
    return [content_from_json(m.content_json) for m in messages if m.direction == "out"]


async def _actions(world: World, account: str = "wa-a") -> list[str]:
    async with world.store.transaction() as tx:
        return [e.action for e in await tx.audit.audit_entries(account)]


async def test_text_reply_writes_outbox_assigns_audits_and_publishes(world: World) -> None:
    conv = await world.conversation("wa-a")
    me = world.ops["op_a"]
    async with world.live.subscribe("wa-a") as events, world.client() as client:
        csrf = await login_as(client, "op_a")
        assert (await asyncio.wait_for(anext(events), 2)).kind == "presence"  # came online
        response = await client.post(
            f"/console/conversations/{conv.id}/reply",
            data={
                "csrf_token": csrf,
                "kind": "text",
                "body": "Bon dia, ho passem a Via Pública.",
                "request_id": "11111111-2222-3333-4444-555555555555",
            },
        )
        assert response.status_code == 303
        kinds = [(await asyncio.wait_for(anext(events), 2)).kind for _ in range(2)]
    assert kinds == ["message_out", "conversation"]
    assert await _out(world, conv.id) == [Text(body="Bon dia, ho passem a Via Pública.")]
    async with world.store.transaction() as tx:
        stored = await tx.conversations.get(conv.id)
        history = await tx.history.entries(conv.id)
        audit = await tx.audit.audit_entries("wa-a")
        assignments = await tx.assignments.open_assignments(me.id)
    assert stored is not None
    assert stored.state == "assigned"
    assert stored.assigned_operator == me.id
    assert stored.last_operator_reply_at == world.clock.now()
    assert (history[-1].from_state, history[-1].to_state) == ("queued", "assigned")
    assert history[-1].actor == f"operator:{me.id}"
    assert [a.conversation_id for a in assignments] == [conv.id]
    reply = next(e for e in audit if e.action == "reply")
    assert reply.details["conversation"] == conv.id
    assert "Bon dia" not in json.dumps(reply.details)  # no message text in the audit log


async def test_resubmitted_reply_is_written_once(world: World) -> None:
    conv = await world.conversation("wa-a")
    async with world.client() as client:
        csrf = await login_as(client, "op_a")
        data = {
            "csrf_token": csrf,
            "body": "Hola",
            "request_id": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        }
        for _ in range(3):
            assert (
                await client.post(f"/console/conversations/{conv.id}/reply", data=data)
            ).status_code == 303
    assert len(await _out(world, conv.id)) == 1
    assert (await _actions(world)).count("reply") == 1


async def test_link_location_and_document_replies(world: World) -> None:
    conv = await world.conversation("web-a")
    base = f"/console/conversations/{conv.id}/reply"
    async with world.client() as client:
        csrf = await login_as(client, "op_a")
        for data in (
            {"kind": "link", "body": "Formulari:", "url": "https://www.mataro.cat/tramits"},
            {"kind": "location", "latitude": "41.5381", "longitude": "2.4445", "name": "OAC"},
            {"kind": "document", "url": "https://www.mataro.cat/doc.pdf", "filename": "doc.pdf"},
        ):
            response = await client.post(base, data={"csrf_token": csrf, **data})
            assert response.status_code == 303, response.text
            world.clock.advance(timedelta(seconds=1))  # messages are ordered by time
    sent = await _out(world, conv.id)
    assert sent[0] == Text(body="Formulari:\nhttps://www.mataro.cat/tramits", preview_url=True)
    assert sent[1] == Location(latitude=41.5381, longitude=2.4445, name="OAC")
    assert sent[2] == Media(
        media_kind=MediaKind.DOCUMENT, link="https://www.mataro.cat/doc.pdf", filename="doc.pdf"
    )


@pytest.mark.parametrize(
    "data",
    [
        {"kind": "text", "body": "   "},
        {"kind": "link", "url": "javascript:alert(1)"},
        {"kind": "location", "latitude": "91", "longitude": "2"},
        {"kind": "location", "latitude": "abc", "longitude": "2"},
        {"kind": "document", "url": "ftp://x/y.pdf"},
        {"kind": "sticker", "body": "x"},
    ],
)
async def test_bad_replies_are_refused_and_nothing_is_written(
    world: World, data: dict[str, str]
) -> None:
    conv = await world.conversation("wa-a")
    async with world.client() as client:
        csrf = await login_as(client, "op_a")
        response = await client.post(
            f"/console/conversations/{conv.id}/reply", data={"csrf_token": csrf, **data}
        )
    assert response.status_code == 400
    assert await _out(world, conv.id) == []
    async with world.store.transaction() as tx:
        assert (await tx.conversations.get(conv.id)).state == "queued"  # type: ignore[union-attr]


async def test_take_transfer_and_close(world: World) -> None:
    conv = await world.conversation("wa-a")
    me, colleague = world.ops["op_a"], world.ops["op2_a"]
    base = f"/console/conversations/{conv.id}"
    async with world.client() as client:
        csrf = await login_as(client, "op_a")
        assert (await client.post(f"{base}/take", data={"csrf_token": csrf})).status_code == 303
        async with world.store.transaction() as tx:
            assert (await tx.conversations.get(conv.id)).assigned_operator == me.id  # type: ignore[union-attr]
        await world.set_presence("op2_a", Presence.AVAILABLE)  # an offline one is refused
        moved = await client.post(
            f"{base}/transfer", data={"csrf_token": csrf, "to": str(colleague.id)}
        )
        assert moved.status_code == 303
        # No longer mine: a plain operator cannot act on it any more.
        assert (await client.post(f"{base}/close", data={"csrf_token": csrf})).status_code == 409
        csrf2 = await login_as(client, "op2_a")
        back = await client.post(f"{base}/transfer", data={"csrf_token": csrf2, "to": "queue"})
        assert back.status_code == 303
        await client.post(f"{base}/take", data={"csrf_token": csrf2})
        assert (await client.post(f"{base}/close", data={"csrf_token": csrf2})).status_code == 303
    async with world.store.transaction() as tx:
        stored = await tx.conversations.get(conv.id)
        history = await tx.history.entries(conv.id)
        open_ = await tx.assignments.open_assignments(colleague.id)
    assert stored is not None
    assert stored.state == "closed"
    assert stored.assigned_operator is None
    assert open_ == []
    assert [(h.from_state, h.to_state, h.note) for h in history] == [
        ("queued", "assigned", "take"),
        ("assigned", "assigned", "transfer"),
        ("assigned", "queued", "transfer"),
        ("queued", "assigned", "take"),
        ("assigned", "closed", None),
    ]
    assert [a for a in await _actions(world) if a != "reply"][:5] == [
        "close",
        "take",
        "transfer",
        "transfer",
        "take",
    ]


async def test_transfer_to_an_operator_of_another_city_is_refused(world: World) -> None:
    conv = await world.conversation("wa-a", state="assigned", assigned=world.ops["op_a"])
    async with world.client() as client:
        csrf = await login_as(client, "op_a")
        response = await client.post(
            f"/console/conversations/{conv.id}/transfer",
            data={"csrf_token": csrf, "to": str(world.ops["op_b"].id)},
        )
    assert response.status_code == 400
    async with world.store.transaction() as tx:
        assert (await tx.conversations.get(conv.id)).assigned_operator == world.ops["op_a"].id  # type: ignore[union-attr]


async def test_closing_twice_is_a_conflict_not_a_crash(world: World) -> None:
    conv = await world.conversation("wa-a", state="assigned", assigned=world.ops["op_a"])
    async with world.client() as client:
        csrf = await login_as(client, "sup_a")
        url = f"/console/conversations/{conv.id}/close"
        assert (await client.post(url, data={"csrf_token": csrf})).status_code == 303
        assert (await client.post(url, data={"csrf_token": csrf})).status_code == 409


async def test_presence(world: World) -> None:
    async with world.client() as client:
        csrf = await login_as(client, "op_a")
        response = await client.post(
            "/console/presence",
            data={"presence": "away"},
            headers={"X-CSRF-Token": csrf, "X-Requested-With": "fetch"},
        )
        assert response.status_code == 204
        bad = await client.post(
            "/console/presence", data={"csrf_token": csrf, "presence": "asleep"}
        )
        assert bad.status_code == 400
    async with world.store.transaction() as tx:
        assert (await tx.operators.get_operator(world.ops["op_a"].id)).presence is Presence.AWAY  # type: ignore[union-attr]


async def test_queue_shows_waiting_time_and_whatsapp_window(world: World) -> None:
    conv = await world.conversation("wa-a")
    web = await world.conversation("web-a")
    world.clock.advance(timedelta(hours=2, minutes=5))
    async with world.client() as client:
        await login_as(client, "op_a")
        page = (await client.get("/console")).text
    row = page[page.index(f'data-conversation="{conv.id}"') :]
    row = row[: row.index("</tr>")]
    assert "2 h 05 min" in row  # waiting
    assert "21 h 55 min" in row  # left in the 24-hour window
    web_row = page[page.index(f'data-conversation="{web.id}"') :]
    assert "–" in web_row[: web_row.index("</tr>")]  # the web chat has no window


async def test_closed_window_warns_the_operator(world: World) -> None:
    conv = await world.conversation("wa-a")
    world.clock.advance(timedelta(hours=25))
    async with world.client() as client:
        await login_as(client, "op_a")
        page = await client.get(f"/console/conversations/{conv.id}")
    assert "Finestra tancada" in page.text


async def test_conversation_shows_media_location_ticks_and_suggestions(world: World) -> None:
    conv = await world.conversation("wa-a", content=Text(body="horari de la deixalleria"))
    async with world.store.transaction() as tx:
        await tx.enqueue(
            [
                # an operator's earlier answer, delivered
                __import__("civicchat.messages", fromlist=["OutboundMessage"]).OutboundMessage(
                    channel="whatsapp",
                    account="wa-a",
                    recipient_id=conv.recipient_id,
                    content=Location(latitude=41.54, longitude=2.44, name="Deixalleria"),
                )
            ],
            key_prefix="op:earlier",
            conversation_id=conv.id,
        )
    async with world.client() as client:
        await login_as(client, "op_a")
        page = (await client.get(f"/console/conversations/{conv.id}")).text
    assert "openstreetmap.org/?mlat=41.540000" in page
    assert "tick-queued" in page
    assert "Suggeriments" in page  # the catalog knows the recycling centre
    assert "Hola! Sóc Op A" in page  # canned response in the conversation's language


async def test_media_is_served_after_the_access_check(world: World) -> None:
    conv = await world.conversation(
        "wa-a",
        content=Media(media_kind=MediaKind.IMAGE, media_id="img-1", mime_type="image/jpeg"),
    )
    other = await world.conversation(
        "wa-a",
        content=Media(media_kind=MediaKind.DOCUMENT, media_id="doc-1", mime_type="text/html"),
    )
    async with world.store.transaction() as tx:
        for media_id, mime in (("img-1", "image/jpeg"), ("doc-1", "text/html")):
            ref = await tx.media.add_media(
                "whatsapp", "wa-a", media_id, mime_type=mime, event_id=None
            )
            await tx.media.media_stored(
                ref.id, blob_key=f"blob-{media_id}", size=3, sha256="x", mime_type=mime
            )
    await world.blobs.put("blob-img-1", b"\xff\xd8\xff")
    await world.blobs.put("blob-doc-1", b"<script>alert(1)</script>")
    async with world.client() as client:
        await login_as(client, "op_a")
        page = (await client.get(f"/console/conversations/{conv.id}")).text
        assert f'src="/console/conversations/{conv.id}/media/img-1"' in page
        image = await client.get(f"/console/conversations/{conv.id}/media/img-1")
        assert image.status_code == 200
        assert image.content == b"\xff\xd8\xff"
        assert image.headers["content-type"] == "image/jpeg"
        # A citizen's HTML is never rendered by the console's origin.
        html = await client.get(f"/console/conversations/{other.id}/media/doc-1")
        assert html.headers["content-type"] == "application/octet-stream"
        assert html.headers["content-disposition"] == "attachment"
        # Media of another conversation is not reachable through this one.
        cross = await client.get(f"/console/conversations/{conv.id}/media/doc-1")
        assert cross.status_code == 404


async def test_live_stream_sends_only_the_operators_accounts_and_no_text(world: World) -> None:
    views = ConsoleViews(Console(world.ctx))
    stream = views.stream(frozenset({"wa-a", "web-a"}), heartbeat=0.05, max_seconds=5)
    assert (await anext(stream)).startswith("retry:")
    await asyncio.sleep(0.05)  # let the subscriptions open
    await world.live.publish(LiveEvent("tg-b", "message_in", 7, {"text": "secret"}))
    await world.live.publish(LiveEvent("wa-a", "message_in", 8, {"text": "forat al carrer"}))
    chunks: list[str] = []
    while len(chunks) < 5:
        chunk = await anext(stream)
        chunks.append(chunk)
        if chunk.startswith("event:"):
            break
    await stream.aclose()  # type: ignore[attr-defined]
    event = chunks[-1]
    assert event.startswith("event: message_in\n")
    payload = json.loads(event.split("data: ", 1)[1])
    assert payload == {"kind": "message_in", "account": "wa-a", "conversation_id": 8}
    assert not any("tg-b" in c or "secret" in c or "forat" in c for c in chunks)
    assert world.live.subscriber_count == 0  # closing the stream closed the subscriptions


@pytest.mark.parametrize("state", ["queued", "assigned"])
async def test_a_reply_updates_the_conversation_row_once(world: World, state: str) -> None:
    me = world.ops["op_a"]
    conv = await world.conversation(
        "wa-a", state=state, assigned=me if state == "assigned" else None
    )
    updates: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE CONVERSATIONS"):
            updates.append(statement)

    async with world.client() as client:
        csrf = await login_as(client, "op_a")
        world.clock.advance(timedelta(seconds=30))
        event.listen(world.store.engine.sync_engine, "before_cursor_execute", count)
        try:
            response = await client.post(
                f"/console/conversations/{conv.id}/reply",
                data={"csrf_token": csrf, "kind": "text", "body": "Bon dia"},
            )
        finally:
            event.remove(world.store.engine.sync_engine, "before_cursor_execute", count)
    assert response.status_code == 303
    assert len(updates) == 1  # the move and the reply's time in one save
    async with world.store.read_transaction() as tx:
        stored = await tx.conversations.get(conv.id)
    assert stored is not None
    assert (stored.state, stored.assigned_operator) == ("assigned", me.id)
    assert stored.last_operator_reply_at == world.clock.now()  # not reset by the move
