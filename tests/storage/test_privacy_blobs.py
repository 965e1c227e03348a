"""Shared media blobs under erasure and retention, and the sweep of orphaned blobs.

Blobs are content-addressed: two citizens who send the same photo share one file. Erasing or
retaining one of them must keep the file while another row names it, and delete it with the last.
Every test runs on SQLite and on PostgreSQL (the ``store`` fixture).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
from datetime import timedelta

import pytest
from sqlalchemy import insert, select, update
from storage_helpers import T0, conversation_of, inbound

from civicchat.channels.webchat import WebChatChannel, WebChatHub
from civicchat.messages import InboundMessage, Media, MediaKind, Sender
from civicchat.storage.base import MediaState, RetentionMode
from civicchat.storage.media import LocalBlobStore, MediaDownloader, media_blob_key
from civicchat.storage.privacy import ORPHAN_GRACE, Privacy, RetentionPolicy
from civicchat.storage.schema import CaseRow, InboxRow, MediaRow
from civicchat.storage.workers import InboxProcessor, Reply

MARIA, JOAN = "34600000001", "34600000002"
PHOTO = b"\xff\xd8\xff the same streetlight, sent by two neighbours \xff\xd9"
DIGEST = hashlib.sha256(PHOTO).hexdigest()
WA_KEY = media_blob_key("whatsapp", "acc1", DIGEST)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32  # what sniff_image takes for a PNG
PNG_KEY = media_blob_key("webchat", "web", hashlib.sha256(PNG).hexdigest())
VISITOR_A, VISITOR_B = "visitor_aaaaaaaaaaaaaaaa", "visitor_bbbbbbbbbbbbbbbb"


async def handler(event, tx):
    msg = event.payload
    conv = await conversation_of(tx, msg)
    await tx.conversations.save(dataclasses.replace(conv, last_inbound_at=msg.timestamp))
    return Reply([], conversation_id=conv.id)


def wa_photo(sender: str, media_id: str, *, at=T0) -> InboundMessage:
    return InboundMessage(
        channel="whatsapp",
        account="acc1",
        provider_message_id=f"wamid.{media_id}",
        sender=Sender(id=sender),
        timestamp=at,
        content=Media(media_kind=MediaKind.IMAGE, media_id=media_id, mime_type="image/jpeg"),
    )


async def process(store, clock):
    proc = InboxProcessor(store, handler, clock, worker_id="p")
    while await proc.run_once():
        pass


class Download:
    mime_type = "image/jpeg"

    async def read(self):
        return PHOTO


class SamePhoto:
    """A WhatsApp media source whose every media is :data:`PHOTO`."""

    async def fetch_media(self, account, media_id, *, max_bytes):
        return Download()


async def download(store, clock, blobs):
    downloader = MediaDownloader(store, {"whatsapp": SamePhoto()}, blobs, clock, batch_size=10)
    while await downloader.run_once():
        pass


async def media_rows(store):
    async with store.engine.connect() as conn:
        return {r.media_id: r for r in await conn.execute(select(MediaRow))}


async def two_citizens_one_photo(store, clock, blobs):
    """Maria and Joan sent the same photo on WhatsApp; both downloaded: one blob, two rows."""
    await store.accept([wa_photo(MARIA, "M1"), wa_photo(JOAN, "J1")])
    await process(store, clock)
    await download(store, clock, blobs)
    rows = await media_rows(store)
    assert {m: (r.state, r.blob_key) for m, r in rows.items()} == {
        "M1": (MediaState.STORED, WA_KEY),
        "J1": (MediaState.STORED, WA_KEY),
    }


async def test_erasing_one_citizen_keeps_a_photo_another_citizen_sent_too(store, clock, tmp_path):
    blobs = LocalBlobStore(tmp_path)
    await two_citizens_one_photo(store, clock, blobs)
    privacy = Privacy(store, blobs, clock)

    maria = await privacy.erase("whatsapp", "acc1", MARIA, actor="admin:1")
    assert (maria.media, maria.blob_keys) == (1, ())
    assert await blobs.get(WA_KEY) == PHOTO  # Joan's evidence is still there
    assert set(await media_rows(store)) == {"J1"}

    joan = await privacy.erase("whatsapp", "acc1", JOAN, actor="admin:1")
    assert (joan.media, joan.blob_keys) == (1, (WA_KEY,))
    assert not await blobs.exists(WA_KEY)  # the last reference went: so did the bytes
    assert await media_rows(store) == {}


def upload(channel: WebChatChannel, visitor: str, mid: str) -> InboundMessage:
    return channel.upload_message(visitor=visitor, data=PNG, mime_type="image/png", client_id=mid)


async def test_erasure_deletes_a_web_chat_photo_not_yet_downloaded_unless_shared(
    store, clock, tmp_path
):
    # The page stores the bytes before the message; until the media worker runs, no row has
    # a blob_key: the row's media id (the SHA-256) is what names the file.
    blobs = LocalBlobStore(tmp_path)
    web = WebChatChannel(WebChatHub(), account="web", clock=clock, uploads=blobs)
    await blobs.put(PNG_KEY, PNG)
    await store.accept([upload(web, VISITOR_A, "a1"), upload(web, VISITOR_B, "b1")])
    await process(store, clock)
    rows = await media_rows(store)
    assert [(r.state, r.blob_key) for r in rows.values()] == [(MediaState.PENDING, None)] * 2
    privacy = Privacy(store, blobs, clock)

    first = await privacy.erase("webchat", "web", VISITOR_A, actor="admin:1")
    assert (first.media, first.blob_keys) == (1, ())
    assert await blobs.exists(PNG_KEY)
    second = await privacy.erase("webchat", "web", VISITOR_B, actor="admin:1")
    assert (second.media, second.blob_keys) == (1, (PNG_KEY,))
    assert not await blobs.exists(PNG_KEY)


async def test_erasure_keeps_a_photo_whose_message_waits_in_the_inbox(store, clock, tmp_path):
    blobs = LocalBlobStore(tmp_path)
    web = WebChatChannel(WebChatHub(), account="web", clock=clock, uploads=blobs)
    await blobs.put(PNG_KEY, PNG)
    await store.accept([upload(web, VISITOR_A, "a1")])
    await process(store, clock)
    await store.accept([upload(web, VISITOR_B, "b1")])  # accepted, not processed yet
    result = await Privacy(store, blobs, clock).erase("webchat", "web", VISITOR_A, actor="a:1")
    assert (result.media, result.blob_keys) == (1, ())
    assert await blobs.get(PNG_KEY) == PNG
    await process(store, clock)
    # B's photo reaches the media worker with its bytes.
    downloader = MediaDownloader(store, {"webchat": web}, blobs, clock)
    assert await downloader.run_once()
    (row,) = (await media_rows(store)).values()
    assert (row.state, row.blob_key) == (MediaState.STORED, PNG_KEY)


async def test_retention_deletes_a_shared_photo_only_with_its_last_row(store, clock, tmp_path):
    blobs = LocalBlobStore(tmp_path)
    await store.accept([wa_photo(MARIA, "M1")])
    await process(store, clock)
    clock.advance(timedelta(days=20))
    await store.accept([wa_photo(JOAN, "J1", at=clock.now())])
    await process(store, clock)
    await download(store, clock, blobs)
    privacy = Privacy(store, blobs, clock)
    policy = {"acc1": RetentionPolicy(days=30)}

    clock.advance(timedelta(days=15))  # Maria's conversation is 35 days old, Joan's 15
    assert await privacy.apply_retention(policy) == {"acc1": 1}
    assert set(await media_rows(store)) == {"J1"}
    assert await blobs.get(WA_KEY) == PHOTO

    clock.advance(timedelta(days=20))
    assert await privacy.apply_retention(policy) == {"acc1": 1}
    assert await media_rows(store) == {}
    assert not await blobs.exists(WA_KEY)


async def test_anonymising_retention_removes_the_photos_too(store, clock, tmp_path):
    blobs = LocalBlobStore(tmp_path)
    await two_citizens_one_photo(store, clock, blobs)
    clock.advance(timedelta(days=40))
    outcome = await store.retain(
        "acc1", older_than=clock.now() - timedelta(days=30), mode=RetentionMode.ANONYMISE
    )
    assert (outcome.conversations, outcome.media, outcome.blob_keys) == (2, 2, (WA_KEY,))
    assert await media_rows(store) == {}
    async with store.engine.connect() as conn:
        assert len((await conn.execute(select(InboxRow.id))).all()) == 2  # anonymised, kept


async def add_case(store, *, media_id: str, anonymised: bool = False) -> None:
    data = {
        "channel": "whatsapp",
        "media": [] if anonymised else [{"media_kind": "image", "ref": media_id}],
    }
    async with store.engine.begin() as conn:
        await conn.execute(
            insert(CaseRow).values(
                reference="MAT-2026-0001",
                account="acc1",
                status="in_progress",
                category="enllumenat",
                department=None,
                created_at=T0,
                updated_at=T0,
                anonymised_at=None,
                open311_next_at=None,
                data=json.dumps(data),
            )
        )


async def test_retention_keeps_the_photo_of_an_open_case_until_the_case_lets_it_go(
    store, clock, tmp_path
):
    blobs = LocalBlobStore(tmp_path)
    await store.accept([wa_photo(MARIA, "M1")])
    await process(store, clock)
    await download(store, clock, blobs)
    await add_case(store, media_id="M1")
    privacy = Privacy(store, blobs, clock)
    policy = {"acc1": RetentionPolicy(days=30)}
    clock.advance(timedelta(days=40))
    assert await privacy.apply_retention(policy) == {"acc1": 1}
    # The conversation went; the case still shows the photo.
    assert set(await media_rows(store)) == {"M1"}
    assert await blobs.get(WA_KEY) == PHOTO
    # Case retention anonymises the case (no media any more): the next run deletes the photo.
    async with store.engine.begin() as conn:
        await conn.execute(
            update(CaseRow).values(
                anonymised_at=clock.now(), data=json.dumps({"channel": "whatsapp", "media": []})
            )
        )
    assert await privacy.apply_retention(policy) == {"acc1": 0}
    assert await media_rows(store) == {}
    assert not await blobs.exists(WA_KEY)


async def test_retention_removes_media_rows_an_older_retention_left_behind(store, clock, tmp_path):
    # Before this fix retention deleted the messages and kept their media rows and files.
    blobs = LocalBlobStore(tmp_path)
    await store.accept([wa_photo(MARIA, "M1"), inbound(1, JOAN)])
    await process(store, clock)
    await download(store, clock, blobs)
    async with store.engine.begin() as conn:
        (event_id,) = (await conn.execute(select(MediaRow.event_id))).one()
        await conn.execute(InboxRow.__table__.delete().where(InboxRow.id == event_id))
    clock.advance(timedelta(days=40))
    outcome = await store.retain(
        "acc1", older_than=clock.now() - timedelta(days=30), mode=RetentionMode.DELETE
    )
    assert (outcome.media, outcome.blob_keys) == (1, (WA_KEY,))
    assert await media_rows(store) == {}
    other = await store.retain(
        "acc2", older_than=clock.now() - timedelta(days=30), mode=RetentionMode.DELETE
    )
    assert (other.conversations, other.media, other.blob_keys) == (0, 0, ())


def age(blobs: LocalBlobStore, key: str, clock, by: timedelta) -> None:
    at = (clock.now() - by).timestamp()
    os.utime(blobs.root / key, (at, at))


async def test_the_sweep_deletes_old_blobs_no_row_names_and_keeps_the_rest(store, clock, tmp_path):
    blobs = LocalBlobStore(tmp_path)
    web = WebChatChannel(WebChatHub(), account="web", clock=clock, uploads=blobs)
    refused = media_blob_key("webchat", "web", "cd" * 32)  # its message was never accepted
    recent = media_blob_key("webchat", "web", "ce" * 32)  # ditto, but within the grace period
    waiting = PNG_KEY  # its message is in the inbox, not processed yet
    elsewhere = media_blob_key("webchat", "other", "cd" * 32)  # another account's
    for key in (refused, recent, waiting, elsewhere):
        await blobs.put(key, b"bytes")
    await two_citizens_one_photo(store, clock, blobs)  # WA_KEY: named by two stored rows
    await store.accept([upload(web, VISITOR_A, "a1")])
    (blobs.root / "webchat" / "web" / "cd" / ".tmp-crashed").write_bytes(b"half")
    for key in (refused, waiting, elsewhere, WA_KEY, "webchat/web/cd/.tmp-crashed"):
        age(blobs, key, clock, ORPHAN_GRACE + timedelta(hours=1))
    age(blobs, recent, clock, ORPHAN_GRACE - timedelta(hours=1))

    privacy = Privacy(store, blobs, clock)
    assert await privacy.sweep_orphans("web") == 2
    assert not await blobs.exists(refused)
    assert not (blobs.root / "webchat" / "web" / "cd" / ".tmp-crashed").exists()
    for key in (recent, waiting, elsewhere, WA_KEY):
        assert await blobs.exists(key), key
    assert await privacy.sweep_orphans("web") == 0

    # Processed, its row still names the file by its media id until the worker downloads it.
    await process(store, clock)
    assert await privacy.sweep_orphans("web") == 0
    assert await blobs.exists(waiting)
    # Retention runs the sweep: the other account's orphan goes with that account's run.
    assert await privacy.apply_retention({"other": RetentionPolicy(days=30)}) == {"other": 0}
    assert not await blobs.exists(elsewhere)
    assert await blobs.exists(WA_KEY)


async def test_the_sweep_needs_a_store_that_lists_its_blobs(store, clock):
    class Opaque:  # a BlobStore without stale_keys (an S3 bucket, say)
        async def put(self, key, data, *, content_type=None): ...
        async def get(self, key): ...
        async def delete(self, key): ...
        async def exists(self, key): ...

    assert await Privacy(store, Opaque(), clock).sweep_orphans("web") == 0
    assert await Privacy(store, None, clock).sweep_orphans("web") == 0


async def test_stale_keys_lists_one_account_and_refuses_a_path(tmp_path, clock):
    blobs = LocalBlobStore(tmp_path / "none")
    assert await blobs.stale_keys("web", before=clock.now()) == []  # no directory yet
    blobs = LocalBlobStore(tmp_path)
    await blobs.put("webchat/web/ab/abc", b"x")
    await blobs.put("whatsapp/web/ab/abd", b"x")
    await blobs.put("webchat/web2/ab/abe", b"x")
    later = clock.now() + timedelta(days=3650)  # the files were written "now"; clock is behind
    assert await blobs.stale_keys("web", before=later) == [
        "webchat/web/ab/abc",
        "whatsapp/web/ab/abd",
    ]
    assert await blobs.stale_keys("web", before=T0 - timedelta(days=3650)) == []
    for bad in ("", "..", ".", "a/b"):
        with pytest.raises(ValueError, match="invalid account"):
            await blobs.stale_keys(bad, before=later)


async def test_a_failing_sweep_does_not_stop_the_other_accounts_retention(
    store, clock, tmp_path, caplog
):
    blobs = LocalBlobStore(tmp_path)
    orphan = media_blob_key("webchat", "web", "cd" * 32)
    await blobs.put(orphan, b"bytes")
    age(blobs, orphan, clock, ORPHAN_GRACE + timedelta(hours=1))

    class Failing(Privacy):
        async def sweep_orphans(self, account, **kwargs):  # type: ignore[no-untyped-def]
            if account == "broken":
                raise OSError("disk gone")
            return await super().sweep_orphans(account, **kwargs)

    policy = RetentionPolicy(days=30)
    done = await Failing(store, blobs, clock).apply_retention({"broken": policy, "web": policy})
    assert done == {"broken": 0, "web": 0}
    assert not await blobs.exists(orphan)  # the next account's sweep still ran
    assert "sweeping the orphaned files of broken failed" in caplog.text


# ----------------------------------------------------------------------------- one blob, two hands


async def joan_waits_for_her_download(store, clock, blobs) -> None:
    """Maria's photo is stored and her rows are gone (erased); Joan sent the same photo, whose
    download has not run yet: the blob exists, and no row names it."""
    await store.accept([wa_photo(MARIA, "M1")])
    await process(store, clock)
    await download(store, clock, blobs)
    async with store.engine.begin() as conn:
        await conn.execute(MediaRow.__table__.delete())
    await store.accept([wa_photo(JOAN, "J1")])
    await process(store, clock)
    assert await blobs.get(WA_KEY) == PHOTO
    assert {m: r.blob_key for m, r in (await media_rows(store)).items()} == {"J1": None}


async def test_bytes_being_named_are_not_deleted_by_an_erasure_meanwhile(store, clock, tmp_path):
    blobs = LocalBlobStore(tmp_path)
    await joan_waits_for_her_download(store, clock, blobs)
    (j1,) = (await media_rows(store)).values()
    privacy = Privacy(store, blobs, clock)
    # Joan's download found the bytes already stored, holds their key, and names them...
    async with store.transaction() as tx:
        await tx.media.hold_blob(WA_KEY)
        # ...while the sweep of orphaned blobs (days later) decides that nothing names them.
        deleting = asyncio.create_task(privacy._delete_blobs([WA_KEY]))
        await asyncio.sleep(0.2)
        assert not deleting.done()  # it waits for the key
        await tx.media.media_stored(
            j1.id, blob_key=WA_KEY, size=len(PHOTO), sha256=DIGEST, mime_type="image/jpeg"
        )
    await asyncio.wait_for(deleting, 5)
    assert await blobs.get(WA_KEY) == PHOTO  # named by the time the deletion looked: kept
    assert await store.delete_blob_if_unused(WA_KEY, blobs) is False


async def test_a_download_waits_for_a_deletion_of_its_bytes_and_stores_them_again(
    store, clock, tmp_path
):
    blobs = LocalBlobStore(tmp_path)
    await joan_waits_for_her_download(store, clock, blobs)
    downloader = MediaDownloader(store, {"whatsapp": SamePhoto()}, blobs, clock)
    # Retention holds the key: it found no row naming the bytes and deletes them...
    async with store.transaction() as tx:
        await tx.media.hold_blob(WA_KEY)
        # ...while Joan's download of the same photo comes in.
        downloading = asyncio.create_task(downloader.run_once())
        await asyncio.sleep(0.2)
        assert not downloading.done()  # it waits for the key before it looks at the bytes
        await blobs.delete(WA_KEY)
    assert await asyncio.wait_for(downloading, 5)
    (j1,) = (await media_rows(store)).values()
    assert (j1.state, j1.blob_key) == (MediaState.STORED, WA_KEY)
    assert await blobs.get(WA_KEY) == PHOTO  # stored again: the row names bytes that exist
