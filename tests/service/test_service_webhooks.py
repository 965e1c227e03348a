from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from service_fakes import (
    TG_SECRET,
    WA_VERIFY,
    Service,
    signed_headers,
    wa_envelope,
    wa_message,
    wa_status,
    wa_text,
    wait_for,
)

from civicchat.messages import DeliveryStatus

TS = int(datetime(2026, 11, 30, 9, 0, tzinfo=UTC).timestamp())  # 10:00 in Mataró, a Monday


async def _all_counts(service: Service) -> int:
    counts = await service.state.store.state_counts()
    return sum(counts.values())


async def test_signed_whatsapp_keyword_is_answered_through_the_graph_api_and_status_recorded(
    service: Service,
):
    body = wa_text("wamid.in.1", "PARAULES CLAU", ts=TS)
    response = await service.client.post(
        "/webhooks/whatsapp/mataro-wa", content=body, headers=signed_headers(body)
    )
    assert response.status_code == 200
    texts = await wait_for(lambda: len(service.fake.texts()) >= 2 and service.fake.texts())
    assert "010" in texts[0]  # the first-contact privacy notice comes first
    assert "Paraules clau" in texts[1]
    sent = service.fake.sent()[1]
    assert sent["to"] == "34600111222"
    assert sent["type"] == "text"

    status = wa_status("wamid.out.2", "delivered", ts=TS + 5)
    response = await service.client.post(
        "/webhooks/whatsapp/mataro-wa", content=status, headers=signed_headers(status)
    )
    assert response.status_code == 200
    store = service.state.store

    async def delivered() -> bool:
        items = [await store.get_outbound(i) for i in (1, 2)]
        return any(i is not None and i.status is DeliveryStatus.DELIVERED for i in items)

    await wait_for(delivered)


async def test_wrong_signature_is_refused_with_403_and_nothing_is_stored(service: Service):
    body = wa_text("wamid.in.2", "hola", ts=TS)
    headers = signed_headers(body, secret="not-the-secret")
    response = await service.client.post(
        "/webhooks/whatsapp/mataro-wa", content=body, headers=headers
    )
    assert response.status_code == 403
    missing = await service.client.post(
        "/webhooks/whatsapp/mataro-wa", content=body, headers={"content-type": "application/json"}
    )
    assert missing.status_code == 401
    # The refusal says what is wrong, for whoever sets the provider up.
    assert response.text.startswith("SignatureError: ")
    assert "signature" in response.text.lower()
    assert "X-Hub-Signature-256" in missing.text
    assert await _all_counts(service) == 0
    assert 'status="refused_403"' in (await service.client.get("/metrics")).text


async def test_malformed_body_is_400_and_oversized_body_is_413(service: Service):
    body = b"{not json"
    response = await service.client.post(
        "/webhooks/whatsapp/mataro-wa", content=body, headers=signed_headers(body)
    )
    assert response.status_code == 400
    big = b"{" + b" " * (1_048_576 + 10) + b"}"
    response = await service.client.post(
        "/webhooks/whatsapp/mataro-wa", content=big, headers=signed_headers(big)
    )
    assert response.status_code == 413
    assert await _all_counts(service) == 0


async def test_the_same_webhook_five_times_gets_one_reply(service: Service):
    body = wa_text("wamid.in.dup", "horario autobús", ts=TS)
    for _ in range(5):
        response = await service.client.post(
            "/webhooks/whatsapp/mataro-wa", content=body, headers=signed_headers(body)
        )
        assert response.status_code == 200
    await wait_for(lambda: len(service.fake.texts()) >= 2)
    counts = await service.state.store.state_counts()
    assert sum(counts.values()) == 1
    await wait_for(lambda: "duplicate" in _metric_lines(service))
    await asyncio.sleep(0.5)  # time for a duplicate reply to go out, if there were one
    sent = [json.dumps(body, sort_keys=True) for body in service.fake.sent()]
    assert len(sent) == len(set(sent))  # nothing was sent twice
    texts = service.fake.texts()
    assert "bus" in texts[1].lower()


def _metric_lines(service: Service) -> str:
    return service.state.metrics.render().decode()


async def test_verification_handshake_unknown_and_wrong_channel(service: Service):
    ok = await service.client.get(
        "/webhooks/whatsapp/mataro-wa",
        params={"hub.mode": "subscribe", "hub.verify_token": WA_VERIFY, "hub.challenge": "12345"},
    )
    assert (ok.status_code, ok.text) == (200, "12345")
    bad = await service.client.get(
        "/webhooks/whatsapp/mataro-wa",
        params={"hub.mode": "subscribe", "hub.verify_token": "no", "hub.challenge": "1"},
    )
    assert bad.status_code == 403
    assert (
        await service.client.post("/webhooks/whatsapp/nobody", content=b"{}")
    ).status_code == 404
    assert (
        await service.client.post("/webhooks/telegram/mataro-wa", content=b"{}")
    ).status_code == 404


async def test_telegram_secret_checked_and_keyword_answered(service: Service):
    update = {
        "update_id": 1,
        "message": {
            "message_id": 7,
            "date": TS,
            "chat": {"id": 4242, "type": "private"},
            "from": {"id": 4242, "is_bot": False, "first_name": "Pau", "language_code": "es"},
            "text": "PALABRAS CLAVE",
        },
    }
    body = json.dumps(update).encode()
    refused = await service.client.post(
        "/webhooks/telegram/mataro-tg",
        content=body,
        headers={"x-telegram-bot-api-secret-token": "wrong", "content-type": "application/json"},
    )
    assert refused.status_code in (401, 403)
    assert await _all_counts(service) == 0
    accepted = await service.client.post(
        "/webhooks/telegram/mataro-tg",
        content=body,
        headers={"x-telegram-bot-api-secret-token": TG_SECRET, "content-type": "application/json"},
    )
    assert accepted.status_code == 200
    texts = await wait_for(
        lambda: len(service.fake.texts("telegram")) >= 2 and service.fake.texts("telegram")
    )
    assert "Palabras clave" in texts[1]


async def test_photo_then_location_media_downloaded_and_stored(service: Service):
    photo = wa_message(
        "wamid.in.photo", "image", {"id": "555000111", "mime_type": "image/jpeg"}, ts=TS
    )
    where = wa_message(
        "wamid.in.loc", "location", {"latitude": 41.5381, "longitude": 2.4445}, ts=TS + 10
    )
    for body in (photo, where):
        response = await service.client.post(
            "/webhooks/whatsapp/mataro-wa", content=body, headers=signed_headers(body)
        )
        assert response.status_code == 200
    blobs = service.state.blobs

    def stored() -> list[str]:
        root = blobs.root
        if not root.exists():
            return []
        # Not the blob store's temporary file, only what it renamed into place.
        return [str(p) for p in root.rglob("*") if p.is_file() and not p.name.startswith(".tmp")]

    files = await wait_for(stored)
    assert any("whatsapp/mataro-wa/" in f for f in files)
    data = await blobs.get(files[0].split(str(blobs.root) + "/", 1)[1])
    assert data.startswith(b"\xff\xd8")
    # Both messages are in the conversation, which waits for a person (in office hours).
    async with service.state.store.transaction() as tx:
        convs = await tx.conversations.list("mataro-wa")
        assert [c.state for c in convs] == ["queued"]
        await wait_for(lambda: True)

    async def two_messages() -> bool:
        async with service.state.store.transaction() as tx:
            records = await tx.conversation_messages(convs[0].id)
        kinds = [json.loads(r.content_json)["kind"] for r in records if r.direction == "in"]
        return kinds == ["media", "location"]

    await wait_for(two_messages)


async def test_status_for_another_number_of_the_same_app_is_ignored(service: Service):
    body = wa_envelope({"statuses": []})
    response = await service.client.post(
        "/webhooks/whatsapp/mataro-wa", content=body, headers=signed_headers(body)
    )
    assert response.status_code == 200
    assert await _all_counts(service) == 0


async def test_live_events_for_the_console_follow_a_conversation(service: Service):
    seen: list[tuple[str, int | None]] = []
    async with service.state.live.subscribe("mataro-wa") as events:
        body = wa_text("wamid.live.1", "hola, tinc un dubte personal", ts=TS)
        await service.client.post(
            "/webhooks/whatsapp/mataro-wa", content=body, headers=signed_headers(body)
        )
        await wait_for(lambda: len(service.fake.texts()) >= 2)
        status = wa_status("wamid.out.1", "read", ts=TS + 9)
        await service.client.post(
            "/webhooks/whatsapp/mataro-wa", content=status, headers=signed_headers(status)
        )
        while not {"message_in", "conversation", "message_out", "status"} <= {k for k, _ in seen}:
            event = await asyncio.wait_for(anext(events), 5)
            seen.append((event.kind, event.conversation_id))
    conversation_ids = {cid for kind, cid in seen if kind != "status"}
    assert len(conversation_ids) == 1
    assert None not in conversation_ids
    assert ("conversation", next(iter(conversation_ids))) in seen  # bot -> queued
