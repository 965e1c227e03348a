from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from service_fakes import (
    Service,
    running,
    signed_headers,
    start_service,
    wa_text,
    wait_for,
)

from civicchat.channels.degrade import degrade
from civicchat.channels.webchat import WebChatChannel
from civicchat.messages import OutboundMessage, Text
from civicchat.service.live import LiveEvent
from civicchat.service.runtime import ChannelSender, RelayHub
from civicchat.storage.engine import create_engine
from civicchat.storage.sql import SqlStore

MONDAY_10 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


async def test_health_readiness_and_metrics(service: Service):
    assert (await service.client.get("/healthz")).text == "ok"
    ready = await service.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["database"] == "ok"
    body = wa_text("wamid.m.1", "horari bus", ts=int(MONDAY_10.timestamp()))
    await service.client.post(
        "/webhooks/whatsapp/mataro-wa", content=body, headers=signed_headers(body)
    )
    await wait_for(lambda: len(service.fake.texts()) >= 2)
    metrics = (await service.client.get("/metrics")).text
    assert 'civicchat_inbound_total{channel="whatsapp",status="accepted"} 1.0' in metrics
    assert 'civicchat_keyword_total{account="mataro-wa",result="hit"} 1.0' in metrics
    assert "civicchat_processing_seconds_bucket" in metrics
    assert 'civicchat_inbox_events{state="done"} 1.0' in metrics
    await wait_for(lambda: 'status="sent"' in service.state.metrics.render().decode())


async def test_readiness_fails_when_the_database_is_gone(service: Service):
    working = service.state.store
    # A database that refuses connections (nothing listens on port 1).
    service.state.store = SqlStore(create_engine("postgresql://civicchat@127.0.0.1:1/none"))
    try:
        ready = await service.client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["database"] == "down"
    finally:
        await service.state.store.close()
        service.state.store = working


async def test_unknown_text_out_of_hours_gets_the_reopening_and_is_queued(tmp_path: Path):
    app, fake, provider, _ = await start_service(
        tmp_path,
        clock="fixed: 2026-11-28T21:00:00+01:00",  # a Saturday night
    )
    ts = int(datetime(2026, 11, 28, 20, 0, tzinfo=UTC).timestamp())
    transport = httpx.ASGITransport(app)
    async with running(app), httpx.AsyncClient(transport=transport, base_url="http://s") as c:
        body = wa_text("wamid.ooh", "tinc un problema amb un gual", ts=ts)
        await c.post("/webhooks/whatsapp/mataro-wa", content=body, headers=signed_headers(body))
        texts = await wait_for(lambda: len(fake.texts()) >= 2 and fake.texts())
        assert "dilluns" in texts[1]
        assert "8:00" in texts[1]
        async with app.state.civicchat.store.transaction() as tx:
            convs = await tx.conversations.list("mataro-wa")
        assert [c.state for c in convs] == ["queued"]
    await provider.aclose()


async def test_operator_reply_after_the_window_closed_sends_the_template_and_holds_the_text(
    tmp_path: Path,
):
    app, fake, provider, _ = await start_service(tmp_path, clock="start: 2026-12-02T10:00:00+01:00")
    old = int((MONDAY_10 - timedelta(hours=1)).timestamp())  # two days earlier
    state = app.state.civicchat
    transport = httpx.ASGITransport(app)
    async with running(app), httpx.AsyncClient(transport=transport, base_url="http://s") as c:
        body = wa_text("wamid.old", "necessito ajuda amb un tràmit", ts=old)
        await c.post("/webhooks/whatsapp/mataro-wa", content=body, headers=signed_headers(body))
        # The acknowledgements could not go out either (window closed): one template only.
        await wait_for(lambda: fake.texts())
        async with state.store.transaction() as tx:
            conv = (await tx.conversations.list("mataro-wa"))[0]
            op_ids = await tx.enqueue(
                [
                    OutboundMessage(
                        channel="whatsapp",
                        account="mataro-wa",
                        recipient_id=conv.recipient_id,
                        content=Text(body="Ja tenim la resposta: ..."),
                    )
                ],
                key_prefix="op:1",
                conversation_id=conv.id,
            )

        async def held() -> bool:
            async with state.store.transaction() as tx:
                found = await tx.conversations.get(conv.id)
            return bool(found and any("Ja tenim" in h for h in found.data.get("held", [])))

        await wait_for(held)

        async def recorded_as_held() -> bool:
            item = await state.store.get_outbound(op_ids[0])
            return item is not None and "held" in (item.last_error or "")

        await wait_for(recorded_as_held)
        templates = [t for t in fake.texts() if t.startswith("<template")]
        assert templates == ["<template reprendre_conversa>"]
        assert not any("Ja tenim" in t for t in fake.texts())
        # The citizen answers the template: the held answer goes out now, as text.
        now = int(state.clock.now().timestamp())
        reply = wa_text("wamid.back", "Llegir la resposta", ts=now)
        await c.post("/webhooks/whatsapp/mataro-wa", content=reply, headers=signed_headers(reply))
        await wait_for(lambda: any("Ja tenim la resposta" in t for t in fake.texts()))
    await provider.aclose()


async def test_catalog_changed_event_reloads_the_catalog_from_disk(tmp_path: Path):
    app, _fake, provider, _ = await start_service(tmp_path)
    state = app.state.civicchat
    account = state.accounts["mataro-web"]
    catalog_copy = tmp_path / "catalog.yaml"
    catalog_copy.write_text(account.catalog_path.read_text(encoding="utf-8"), encoding="utf-8")
    state.accounts["mataro-web"] = dataclasses.replace(account, catalog_path=catalog_copy)
    state.runtime.accounts = state.accounts
    async with running(app):
        before = len(account.engine.catalog.keywords)
        text = catalog_copy.read_text(encoding="utf-8")
        cut = text.index("\n  - id:", text.index("keywords:"))
        nxt = text.index("\n  - id:", cut + 5)
        catalog_copy.write_text(text[:cut] + text[nxt:], encoding="utf-8")
        await state.live.publish(LiveEvent(account="mataro-web", kind="catalog_changed"))
        await wait_for(lambda: len(account.engine.catalog.keywords) == before - 1)
    await provider.aclose()


async def test_webchat_reply_reaches_the_visitors_stream_through_the_live_bus(service: Service):
    visitor = "visitor_0123456789abcdef"
    received: list[dict[str, object]] = []

    async def listen() -> None:
        async for event in service.state.hub.subscribe("mataro-web", visitor):
            received.append(event)

    task = asyncio.create_task(listen())
    await asyncio.sleep(0)
    response = await service.client.post(
        "/webhooks/webchat/mataro-web",
        json={"visitor": visitor, "id": "m1", "text": "PALABRAS CLAVE"},
    )
    assert response.status_code == 200
    await wait_for(lambda: len(received) >= 2)
    task.cancel()
    bodies = [e["content"]["body"] for e in received]  # type: ignore[index]
    assert "Palabras clave" in bodies[1]
    page = await service.client.get("/chat/mataro-web", headers={"accept-language": "es-ES"})
    assert page.status_code == 200
    assert 'lang="es"' in page.text
    widget = await service.client.get("/chat/mataro-web/widget.js")
    assert '"mataro-web"' in widget.text
    assert (await service.client.get("/chat/nobody")).status_code == 404
    bad = await service.client.get("/chat/mataro-web/events", params={"visitor": "x"})
    assert bad.status_code == 400


async def test_disabled_account_answers_503_and_the_others_work(tmp_path: Path):
    app, _fake, provider, _ = await start_service(tmp_path)
    await provider.aclose()
    path = tmp_path / "config.yaml"
    text = path.read_text().replace(
        'access_token: "${TEST_WA_TOKEN:-test-access-token}"', 'access_token: "${TEST_WA_TOKEN}"'
    )
    path.write_text(text)
    from civicchat.service.app import create_app
    from civicchat.service.config import load_config

    app = create_app(load_config(path, env={}), announce=lambda _l: None)
    transport = httpx.ASGITransport(app)
    async with running(app), httpx.AsyncClient(transport=transport, base_url="http://s") as c:
        response = await c.post("/webhooks/whatsapp/mataro-wa", content=b"{}")
        assert response.status_code == 503
        assert "disabled" in response.text
        ok = await c.post(
            "/webhooks/webchat/mataro-web",
            json={"visitor": "visitor_0123456789abcdef", "text": "hola"},
        )
        assert ok.status_code == 200


async def test_operator_reply_on_a_closed_window_queues_one_template_itself(tmp_path: Path):
    app, fake, provider, _ = await start_service(tmp_path, clock="start: 2026-12-02T10:00:00+01:00")
    state = app.state.civicchat
    async with running(app):
        async with state.store.transaction() as tx:
            contact = await tx.contacts.identify("whatsapp", "mataro-wa", "34699000111")
            conv = await tx.conversations.create(
                channel="whatsapp",
                account="mataro-wa",
                contact_id=contact.id,
                recipient_id="34699000111",
                state="queued",
            )
            conv = dataclasses.replace(conv, last_inbound_at=MONDAY_10, language="es")
            await tx.conversations.save(conv)
            replies = [
                OutboundMessage(
                    channel="whatsapp",
                    account="mataro-wa",
                    recipient_id="34699000111",
                    content=Text(body=f"Respuesta {n}"),
                )
                for n in (1, 2)
            ]
            await tx.enqueue(replies, key_prefix="op:closed", conversation_id=conv.id)
        sent = await wait_for(lambda: fake.sent())
        template = sent[0]
        assert template["type"] == "template"
        assert template["template"]["name"] == "reprendre_conversa"
        assert template["template"]["language"]["code"].startswith("es")

        async def both_held() -> bool:
            async with state.store.transaction() as tx:
                found = await tx.conversations.get(conv.id)
            return found is not None and len(found.data.get("held", [])) == 2

        await wait_for(both_held)
        await asyncio.sleep(0.2)
        assert len(fake.sent()) == 1  # one template for both, no free-form text
    await provider.aclose()


async def test_the_longest_web_chat_reply_crosses_processes_in_notifications_that_fit(
    service: Service,
):
    from civicchat.service.live import LiveBus

    published: list[LiveEvent] = []

    class Capture(LiveBus):
        async def publish(self, event: LiveEvent) -> None:
            published.append(event)

        def subscribe(self, account):  # pragma: no cover - not used
            raise NotImplementedError

    account = service.state.accounts["mataro-web"]
    limit = account.channel.capabilities.max_text_length
    line = 'àèò «Ajuntament» "010"\n'  # worst case: 2-byte letters, JSON escapes
    text = line * (2 * limit // len(line))  # two pieces of the longest a web chat shows
    hub = RelayHub(Capture())
    sender = ChannelSender(
        dataclasses.replace(account, channel=WebChatChannel(hub, account="mataro-web")),
        service.state.store,
        service.state.clock,
    )
    pieces = degrade(Text(body=text), account.channel.capabilities, "ca")
    assert len(pieces) > 1
    for piece in pieces:
        message = OutboundMessage(
            channel="webchat",
            account="mataro-web",
            recipient_id="visitor_0123456789abcdef",
            content=piece,
        )
        await sender.send(message, last_inbound_at=None)
    await asyncio.sleep(0.05)
    assert len(published) > len(pieces)  # each piece went out in several parts
    assert max(len(e.to_json().encode()) for e in published) < 7900


async def test_live_events_are_published_only_for_what_committed(tmp_path: Path):
    from civicchat.bot import HandledMessage
    from civicchat.messages import InboundMessage, Sender
    from civicchat.service.metrics import ServiceMetrics
    from civicchat.service.runtime import LiveInboxProcessor, on_handled
    from civicchat.storage.engine import upgrade
    from civicchat.storage.workers import Reply

    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/live.db")
    await upgrade(engine)
    store = SqlStore(engine)
    await store.accept(
        [
            InboundMessage(
                channel="whatsapp",
                account="mataro-wa",
                provider_message_id=f"wamid.{who}",
                sender=Sender(id=who),
                timestamp=MONDAY_10,
                content=Text(body="hola"),
            )
            for who in ("34600000001", "34600000002")
        ]
    )
    published: list[LiveEvent] = []

    class Bus:
        async def publish(self, event: LiveEvent) -> None:
            published.append(event)

        def subscribe(self, account):  # pragma: no cover - not used
            raise NotImplementedError

    metrics = ServiceMetrics()
    callback = on_handled(metrics)

    class Handler:
        async def handle(self, event, tx):
            callback(HandledMessage("mataro-wa", "whatsapp", event.id, "bot", "bot", None, None, 0))
            if event.payload.sender.id == "34600000002":
                raise RuntimeError("broken")
            return Reply()

    proc = LiveInboxProcessor(store, Handler(), Bus(), metrics, worker_id="w", batch_size=8)
    try:
        assert await proc.run_once()
    finally:
        await store.close()
    # The batch of two rolled back, then each ran alone: only the one that committed is told.
    assert [(e.kind, e.conversation_id) for e in published] == [("message_in", 1)]


async def test_readiness_fails_when_writes_are_stuck_though_reads_answer(tmp_path: Path):
    app, _fake, provider, _ = await start_service(tmp_path)
    transport = httpx.ASGITransport(app)
    async with running(app), httpx.AsyncClient(transport=transport, base_url="http://s") as c:
        assert (await c.get("/readyz")).status_code == 200
        store = app.state.civicchat.store
        holding, release = asyncio.Event(), asyncio.Event()

        async def hold_the_writer() -> None:
            async with store.transaction():  # SQLite: the single writer, held
                holding.set()
                await release.wait()

        holder = asyncio.create_task(hold_the_writer())
        await holding.wait()
        try:
            stuck = await c.get("/readyz")
            assert stuck.status_code == 503
            assert stuck.json()["database"] == "writes stuck"
        finally:
            release.set()
            await holder
        assert (await c.get("/readyz")).status_code == 200
    await provider.aclose()
