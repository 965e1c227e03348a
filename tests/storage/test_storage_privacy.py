"""Erasure, export, retention and phone masking."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

import pytest
from storage_helpers import conversation_of, inbound, reply_to

from civicchat.messages import InboundMessage, Media, MediaKind, Sender
from civicchat.storage.base import EventState, RetentionMode
from civicchat.storage.media import LocalBlobStore
from civicchat.storage.privacy import Privacy, RetentionPolicy, mask_phone
from civicchat.storage.workers import InboxProcessor, OutboxSender, Reply


async def handler(event, tx):
    msg = event.payload
    conv = await conversation_of(tx, msg, name="Maria")
    await tx.conversations.save(dataclasses.replace(conv, last_inbound_at=msg.timestamp))
    return Reply([reply_to(msg, f"rebut {msg.content.kind}")], conversation_id=conv.id)


class Channel:
    async def send(self, message, *, last_inbound_at):
        return f"prov.{message.recipient_id}"


async def populate(store, clock):
    maria, joan = "34600000001", "34600000002"
    media = InboundMessage(
        channel="whatsapp",
        account="acc1",
        provider_message_id="wamid.media",
        sender=Sender(id=maria),
        timestamp=inbound(3).timestamp,
        content=Media(media_kind=MediaKind.IMAGE, media_id="M1", mime_type="image/png"),
    )
    await store.accept([inbound(1, maria), inbound(2, maria), media, inbound(1, joan)])
    proc = InboxProcessor(store, handler, clock, worker_id="p")
    while await proc.run_once():
        pass
    sender = OutboxSender(store, {("whatsapp", "acc1"): Channel()}, clock)
    while await sender.run_once():
        pass
    return maria, joan


async def test_export_has_everything_about_one_citizen_and_nothing_else(store, clock):
    maria, joan = await populate(store, clock)
    privacy = Privacy(store, clock=clock)
    data = await privacy.export("whatsapp", "acc1", maria, actor="admin:1")
    json.dumps(data)  # JSON-ready
    assert data["contact"]["name"] == "Maria"
    assert [i["external_id"] for i in data["identities"]] == [maria]
    assert [m["provider_message_id"] for m in data["inbound_messages"]] == [
        f"wamid.{maria}.1",
        f"wamid.{maria}.2",
        "wamid.media",
    ]
    assert len(data["outbound_messages"]) == 3
    assert {m["recipient_id"] for m in data["outbound_messages"]} == {maria}
    assert len(data["conversations"]) == 1
    assert joan not in json.dumps(data)
    async with store.transaction() as tx:
        (entry,) = await tx.audit.audit_entries("acc1")
    assert entry.action == "privacy.export"
    assert maria not in json.dumps(entry.details)  # the audit log masks the number


async def test_erase_removes_one_citizen_everywhere(store, clock, tmp_path):
    maria, joan = await populate(store, clock)
    blobs = LocalBlobStore(tmp_path / "blobs")
    async with store.transaction() as tx:
        (ref,) = await tx.media.claim_media("m", limit=5, lease_seconds=30)
        await blobs.put("whatsapp/acc1/ab/abc", b"png")
        await tx.media.media_stored(
            ref.id, blob_key="whatsapp/acc1/ab/abc", size=3, sha256="abc", mime_type="image/png"
        )
    result = await Privacy(store, blobs, clock).erase("whatsapp", "acc1", maria, actor="admin:1")
    assert (result.contacts, result.conversations, result.messages, result.media) == (1, 1, 6, 1)
    with pytest.raises(KeyError):
        await blobs.get("whatsapp/acc1/ab/abc")
    after = await store.export_citizen("whatsapp", "acc1", maria)
    assert after["contact"] is None
    assert after["inbound_messages"] == []
    assert after["outbound_messages"] == []
    assert after["conversations"] == []
    other = await store.export_citizen("whatsapp", "acc1", joan)
    assert len(other["inbound_messages"]) == 1
    assert len(other["outbound_messages"]) == 1
    # Erasing someone unknown is not an error.
    nobody = await store.erase_citizen("whatsapp", "acc1", "0000")
    assert (nobody.contacts, nobody.messages) == (0, 0)


async def test_retention_deletes_old_conversations(store, clock):
    maria, joan = await populate(store, clock)
    clock.advance(timedelta(days=31))
    await store.accept([inbound(50, joan).model_copy(update={"timestamp": clock.now()})])
    proc = InboxProcessor(store, handler, clock, worker_id="p")
    while await proc.run_once():
        pass
    done = await Privacy(store, clock=clock).apply_retention(
        {"acc1": RetentionPolicy(days=30), "acc2": RetentionPolicy(days=30)}
    )
    assert done == {"acc1": 1, "acc2": 0}  # Joan wrote again, Maria did not
    assert (await store.export_citizen("whatsapp", "acc1", maria))["inbound_messages"] == []
    assert len((await store.export_citizen("whatsapp", "acc1", joan))["inbound_messages"]) == 2


async def test_retention_can_anonymise_instead(store, clock):
    maria, _ = await populate(store, clock)
    clock.advance(timedelta(days=40))
    n = await store.apply_retention(
        "acc1", older_than=clock.now() - timedelta(days=30), mode=RetentionMode.ANONYMISE
    )
    assert n == 2
    data = await store.export_citizen("whatsapp", "acc1", maria)
    assert data["inbound_messages"] == []
    async with store.transaction() as tx:
        conv = await tx.conversations.get(1)
        assert conv.recipient_id == "anonymised"
        records = await tx.conversation_messages(conv.id)
    assert len(records) == 6
    assert all(maria not in r.content_json and "missatge" not in r.content_json for r in records)
    assert (await store.state_counts())[EventState.DONE] == 4


def test_retention_shorter_than_the_redelivery_window_is_refused():
    with pytest.raises(ValueError, match="at least 2 days"):
        RetentionPolicy(days=1)


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("+34 600 123 456", "+34******456"),
        ("34600123456", "34******456"),
        ("600-12-34-56", "60****456"),
        ("12345", "*****"),
        ("", ""),
        (None, ""),
    ],
)
def test_mask_phone(raw, masked):
    assert mask_phone(raw) == masked
