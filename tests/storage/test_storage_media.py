"""Media off the webhook path: the local blob store and the downloader."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import select
from storage_helpers import T0

from civicchat.exceptions import MediaExpiredError, MediaTooLargeError
from civicchat.messages import InboundMessage, Media, MediaKind, Sender
from civicchat.storage.base import MediaState
from civicchat.storage.media import LocalBlobStore, MediaDownloader, media_blob_key
from civicchat.storage.schema import MediaRow
from civicchat.storage.workers import InboxProcessor


async def test_local_blob_store_round_trip_and_refuses_escaping_keys(tmp_path):
    blobs = LocalBlobStore(tmp_path)
    await blobs.put("whatsapp/acc/ab/abc", b"\x89PNG")
    assert await blobs.get("whatsapp/acc/ab/abc") == b"\x89PNG"
    assert await blobs.exists("whatsapp/acc/ab/abc")
    assert not await blobs.exists("whatsapp/acc/ab/other")
    assert not await blobs.exists("whatsapp/acc/ab")  # a directory is no blob
    await blobs.delete("whatsapp/acc/ab/abc")
    assert not await blobs.exists("whatsapp/acc/ab/abc")
    await blobs.delete("whatsapp/acc/ab/abc")  # twice is fine
    with pytest.raises(KeyError):
        await blobs.get("whatsapp/acc/ab/abc")
    for bad in ("../etc/passwd", "/abs", "a//b", ""):
        with pytest.raises(ValueError, match="invalid blob key"):
            await blobs.put(bad, b"x")
    assert not list(tmp_path.rglob(".tmp-*"))


class Download:
    def __init__(self, mime_type, data):
        self.mime_type = mime_type
        self._data = data

    async def read(self):
        return self._data


class Source:
    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    async def fetch_media(self, account, media_id, *, max_bytes):
        self.calls.append((account, media_id, max_bytes))
        answer = self.answers[media_id].pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def receive(store, clock, *media_ids):
    await store.accept(
        [
            InboundMessage(
                channel="whatsapp",
                account="acc1",
                provider_message_id=f"wamid.{m}",
                sender=Sender(id="34600000001"),
                timestamp=T0,
                content=Media(media_kind=MediaKind.IMAGE, media_id=m, mime_type="image/jpeg"),
            )
            for m in media_ids
        ]
    )

    async def handler(event, tx):
        return []

    proc = InboxProcessor(store, handler, clock, worker_id="p")
    while await proc.run_once():
        pass


async def refs(store):
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(MediaRow).order_by(MediaRow.id))).all()
    return {r.media_id: r for r in rows}


async def test_downloader_stores_checks_and_retries(store, clock, tmp_path):
    await receive(store, clock, "ok", "flaky", "huge", "exe", "gone")
    source = Source(
        {
            "ok": [Download("image/jpeg", b"jpeg")],
            "flaky": [ConnectionError("reset"), Download("image/png; q=1", b"png")],
            "huge": [MediaTooLargeError("over the cap")],
            "exe": [Download("application/x-msdownload", b"MZ")],
            "gone": [MediaExpiredError("expired")],
        }
    )
    blobs = LocalBlobStore(tmp_path)
    downloader = MediaDownloader(
        store, {"whatsapp": source}, blobs, clock, max_bytes=1000, batch_size=10
    )
    assert await downloader.run_once()
    assert not await downloader.run_once()  # "flaky" waits for its retry
    clock.advance(timedelta(minutes=5))
    assert await downloader.run_once()
    got = await refs(store)
    digest = hashlib.sha256(b"jpeg").hexdigest()
    assert got["ok"].state == MediaState.STORED
    assert got["ok"].blob_key == f"whatsapp/acc1/{digest[:2]}/{digest}"
    assert (got["ok"].size, got["ok"].sha256) == (4, digest)
    assert await blobs.get(got["ok"].blob_key) == b"jpeg"
    assert got["flaky"].state == MediaState.STORED
    assert got["flaky"].mime_type == "image/png"
    assert got["flaky"].attempts == 2
    assert got["huge"].state == MediaState.FAILED
    assert got["exe"].state == MediaState.FAILED
    assert "not accepted" in got["exe"].last_error
    assert got["gone"].state == MediaState.FAILED
    assert source.calls[0] == ("acc1", "ok", 1000)


class CountingBlobs(LocalBlobStore):
    def __init__(self, root):
        super().__init__(root)
        self.puts: list[str] = []

    async def put(self, key, data, *, content_type=None):
        self.puts.append(key)
        await super().put(key, data, content_type=content_type)


async def test_downloader_does_not_write_bytes_already_stored_under_their_key(
    store, clock, tmp_path
):
    await receive(store, clock, "first", "again")
    photo = b"\xff\xd8\xff same photo"
    source = Source(
        {"first": [Download("image/jpeg", photo)], "again": [Download("image/jpeg", photo)]}
    )
    blobs = CountingBlobs(tmp_path)
    digest = hashlib.sha256(photo).hexdigest()
    key = media_blob_key("whatsapp", "acc1", digest)
    assert key == f"whatsapp/acc1/{digest[:2]}/{digest}"
    downloader = MediaDownloader(store, {"whatsapp": source}, blobs, clock, batch_size=10)
    assert await downloader.run_once()
    got = await refs(store)
    # Two media, the same bytes: both recorded under one key, written once.
    assert got["first"].state == got["again"].state == MediaState.STORED
    assert got["first"].blob_key == got["again"].blob_key == key
    assert blobs.puts == [key]
    assert await blobs.get(key) == photo


async def test_downloader_gives_up_after_max_attempts(store, clock, tmp_path):
    await receive(store, clock, "down")
    source = Source({"down": [TimeoutError("t")] * 5})
    downloader = MediaDownloader(
        store, {"whatsapp": source}, LocalBlobStore(tmp_path), clock, max_attempts=2
    )
    for _ in range(4):
        await downloader.run_once()
        clock.advance(timedelta(hours=1))
    got = await refs(store)
    assert got["down"].state == MediaState.FAILED
    assert got["down"].attempts == 2
