"""A photo and a location from the web chat, through the running service to the console and cases."""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.parse
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cases_service_helpers import case_service
from service_fakes import Service, running, start_service, wait_for

from browser.browser_helpers import tiny_png
from civicchat.exceptions import StorageError
from civicchat.messages import Media, MediaKind
from civicchat.storage.base import EventState, MediaState
from civicchat.storage.media import media_blob_key

VISITOR = "visitor_photo_0123456789"
UPLOAD = "/chat/mataro-web/upload"
JPEG = bytes.fromhex("ffd8ffe000104a46494600010100000100010000") + b"\x00" * 200 + b"\xff\xd9"
HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"


def headers(
    *, visitor: str = VISITOR, mid: str | None = "p1", caption: str | None = None, **more: str
) -> dict[str, str]:
    out = {"content-type": "application/octet-stream", "x-visitor": visitor, "x-language": "ca"}
    if mid is not None:
        out["x-message-id"] = mid
    if caption is not None:
        out["x-caption"] = urllib.parse.quote(caption)
    return {**out, **more}


async def refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    data: dict[str, Any] = response.json()
    assert data["error"] == code
    assert data["message"]["ca"]
    assert data["message"]["es"]
    assert data["message"]["ca"] != data["message"]["es"]
    return data


async def web_media(service: Service) -> list[Media]:
    """The media of the web chat conversation, as stored (the inbox processor has run)."""
    async with service.state.store.transaction() as tx:
        convs = await tx.conversations.list("mataro-web")
        if not convs:
            return []
        records = await tx.conversation_messages(convs[0].id)
    out = []
    for record in records:
        data = json.loads(record.content_json)
        if record.direction == "in" and data["kind"] == "media":
            out.append(Media.model_validate(data))
    return out


async def add_operator(
    service: Service, login: str = "op1", password: str = "a long password 1"
) -> None:
    from civicchat.service.console import hash_password

    async with service.state.store.transaction() as tx:
        await tx.operators.add_operator(
            account="mataro", name="Operadora", login=login, password_hash=hash_password(password)
        )


async def console_login(client: httpx.AsyncClient, login: str, password: str) -> None:
    page = await client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    response = await client.post(
        "/login", data={"login": login, "password": password, "csrf_token": token.group(1)}
    )
    assert response.status_code == 303, response.text


@pytest.fixture
async def small(tmp_path: Path) -> AsyncIterator[Service]:
    """A service that takes photos of at most 2 KiB and 4 messages a minute per address."""
    extra = "server: {webchat_upload_max_bytes: 2048, webchat_messages_per_minute: 4}"
    app, fake, provider, path = await start_service(tmp_path, extra=extra)
    async with running(app):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            yield Service(app, app.state.civicchat, client, fake, path)
    await provider.aclose()


async def test_a_photo_reaches_the_inbox_the_blob_store_and_the_console(service: Service) -> None:
    await photo_round_trip(service)


@pytest.mark.postgres
async def test_a_photo_reaches_the_console_on_postgres(pg_service: Service) -> None:
    await photo_round_trip(pg_service)


async def photo_round_trip(service: Service) -> None:
    png = tiny_png()
    response = await service.client.post(
        UPLOAD, content=png, headers=headers(caption="Fanal trencat al carrer d'Argentona")
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"id": f"{VISITOR}:p1"}

    (media,) = await wait_for(lambda: web_media(service))
    assert media.media_kind is MediaKind.IMAGE
    assert media.mime_type == "image/png"
    assert media.caption == "Fanal trencat al carrer d'Argentona"
    assert media.size == len(png)
    digest = hashlib.sha256(png).hexdigest()
    assert await service.state.blobs.get(f"webchat/mataro-web/{digest[:2]}/{digest}") == png

    # The media worker records it as it does a WhatsApp photo: stored, with its event.
    async def stored() -> Any:
        async with service.state.store.transaction() as tx:
            assert media.media_id is not None
            row = await tx.media.get_media("webchat", "mataro-web", media.media_id)
        return row if row is not None and row.state is MediaState.STORED else None

    row = await wait_for(stored)
    assert row.event_id is not None  # so erasing the citizen erases the photo too
    assert row.mime_type == "image/png"
    assert row.sha256 == digest

    # The operator sees it in the conversation and opens it.
    await add_operator(service)
    await console_login(service.client, "op1", "a long password 1")
    async with service.state.store.transaction() as tx:
        (conv,) = await tx.conversations.list("mataro-web")
    page = await service.client.get(f"/console/conversations/{conv.id}")
    assert page.status_code == 200
    link = f"/console/conversations/{conv.id}/media/{media.media_id}"
    assert f'<img src="{link}"' in page.text
    assert "Fanal trencat al carrer d" in page.text
    photo = await service.client.get(link)
    assert photo.status_code == 200
    assert photo.headers["content-type"] == "image/png"
    assert photo.content == png


async def test_the_type_comes_from_the_bytes_not_from_the_browser(service: Service) -> None:
    # A JPEG the browser calls a PDF is a JPEG ...
    ok = await service.client.post(
        UPLOAD, content=JPEG, headers=headers(**{"content-type": "application/pdf"})
    )
    assert ok.status_code == 200, ok.text
    (media,) = await wait_for(lambda: web_media(service))
    assert media.mime_type == "image/jpeg"
    # ... and a PDF, an SVG or a GIF called image/jpeg are refused.
    for n, data in enumerate(
        (PDF, b"<svg xmlns='http://www.w3.org/2000/svg'/>", b"GIF89a" + b"\0" * 40)
    ):
        response = await service.client.post(
            UPLOAD, content=data, headers=headers(mid=f"x{n}", **{"content-type": "image/jpeg"})
        )
        body = await refused(response, 415, "wrong_type")
        assert "JPEG, PNG o WebP" in body["message"]["ca"]
    heic = await service.client.post(UPLOAD, content=HEIC, headers=headers(mid="h1"))
    body = await refused(heic, 415, "heic")
    assert "HEIC" in body["message"]["ca"]
    assert "HEIC" in body["message"]["es"]
    # Nothing of the refused ones reached the inbox or the blob store.
    await wait_for(lambda: web_media(service))
    assert len(await web_media(service)) == 1
    files = [p for p in service.state.blobs.root.rglob("*") if p.is_file()]
    assert len(files) == 1


async def test_an_empty_body_a_bad_visitor_or_a_bad_caption_is_refused(service: Service) -> None:
    await refused(await service.client.post(UPLOAD, content=b"", headers=headers()), 400, "empty")
    for bad in ("short", VISITOR + "<"):
        response = await service.client.post(UPLOAD, content=JPEG, headers=headers(visitor=bad))
        await refused(response, 400, "bad_request")
    bad_id = await service.client.post(UPLOAD, content=JPEG, headers=headers(mid="../etc"))
    await refused(bad_id, 400, "bad_request")
    not_utf8 = await service.client.post(
        UPLOAD, content=JPEG, headers=headers(**{"x-caption": "%ff%fe"})
    )
    await refused(not_utf8, 400, "bad_request")
    long_caption = await service.client.post(
        UPLOAD, content=JPEG, headers=headers(caption="x" * 1025)
    )
    body = await refused(long_caption, 400, "caption_too_long")
    assert "1024" in body["message"]["es"]
    counts = await service.state.store.state_counts()
    assert sum(counts.values()) == 0


async def test_an_unknown_chat_is_404_in_both_languages(service: Service) -> None:
    for path in ("/chat/no-such-chat/upload", "/chat/mataro-wa/upload"):  # wa: not a web chat
        response = await service.client.post(path, content=JPEG, headers=headers())
        body = await refused(response, 404, "no_chat")
        assert "revisa l'enllaç" in body["message"]["ca"]


async def test_a_photo_over_the_limit_is_refused_before_and_while_reading(small: Service) -> None:
    big = await small.client.post(UPLOAD, content=JPEG + b"\0" * 3000, headers=headers())
    body = await refused(big, 413, "too_large")
    assert "(com a màxim 2 kB)" in body["message"]["ca"]  # the limit, readable
    assert "(como máximo 2 kB)" in body["message"]["es"]
    sent: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        # No Content-Length (chunked): the limit is counted while reading.
        for n in range(1000):
            sent.append(n)
            yield (JPEG if n == 0 else b"\0" * 1024)

    response = await small.client.post(UPLOAD, content=endless(), headers=headers(mid="p2"))
    await refused(response, 413, "too_large")
    assert len(sent) < 10  # it stopped reading at the limit, not at the end
    counts = await small.state.store.state_counts()
    assert sum(counts.values()) == 0
    just = await small.client.post(UPLOAD, content=JPEG, headers=headers(mid="p3"))
    assert just.status_code == 200


async def test_photos_and_texts_share_the_per_address_limit(small: Service) -> None:
    for n in range(2):
        text = await small.client.post(
            "/webhooks/webchat/mataro-web", json={"visitor": VISITOR, "id": f"t{n}", "text": "hola"}
        )
        assert text.status_code == 200
    for n in range(2):
        photo = await small.client.post(UPLOAD, content=JPEG, headers=headers(mid=f"p{n}"))
        assert photo.status_code == 200
    over = await small.client.post(UPLOAD, content=JPEG, headers=headers(mid="p9"))
    body = await refused(over, 429, "rate_limited")
    assert "minut" in body["message"]["ca"]
    text = await small.client.post(
        "/webhooks/webchat/mataro-web", json={"visitor": VISITOR, "id": "t9", "text": "hola"}
    )
    assert text.status_code == 429


async def test_a_failed_inbox_commit_is_an_error_the_citizen_can_retry(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = service.state.store
    real_accept = store.accept
    failures = [StorageError("database unavailable")]

    async def flaky(events: Any) -> Any:
        if failures:
            raise failures.pop()
        return await real_accept(events)

    monkeypatch.setattr(store, "accept", flaky)
    png = tiny_png()
    first = await service.client.post(UPLOAD, content=png, headers=headers(mid="r1"))
    body = await refused(first, 503, "try_again")
    assert "Torna-ho a provar" in body["message"]["ca"]
    # The bytes were stored first: a leftover, which the retry reuses (same content key).
    digest = hashlib.sha256(png).hexdigest()
    key = f"webchat/mataro-web/{digest[:2]}/{digest}"
    assert await service.state.blobs.get(key) == png
    assert sum((await store.state_counts()).values()) == 0
    again = await service.client.post(UPLOAD, content=png, headers=headers(mid="r1"))
    assert again.status_code == 200
    (media,) = await wait_for(lambda: web_media(service))
    assert media.sha256 == digest


async def test_bytes_deleted_between_the_upload_and_its_commit_are_stored_again(
    service: Service,
) -> None:
    """Identical photos share one blob: an erasure of another citizen's copy may find it named
    by nothing while this upload's message is not committed yet, and delete it. Once the message
    is committed the upload makes sure its bytes are there, holding the key."""
    await deleted_between_upload_and_commit(service)


@pytest.mark.postgres
async def test_bytes_deleted_between_the_upload_and_its_commit_on_postgres(
    pg_service: Service,
) -> None:
    await deleted_between_upload_and_commit(pg_service)


async def deleted_between_upload_and_commit(service: Service) -> None:
    import asyncio

    store, blobs = service.state.store, service.state.blobs
    png = tiny_png()
    digest = hashlib.sha256(png).hexdigest()
    key = media_blob_key("webchat", "mataro-web", digest)
    async with store.transaction() as tx:
        # A deletion holds the key (and, on SQLite, the writer the upload's commit needs)...
        await tx.media.hold_blob(key)
        upload = asyncio.create_task(
            service.client.post(UPLOAD, content=png, headers=headers(mid="gone"))
        )
        for _ in range(100):
            if await blobs.exists(key):  # the upload stored its bytes and waits on its commit
                break
            await asyncio.sleep(0.01)
        assert await blobs.exists(key)
        await blobs.delete(key)  # ...found nothing naming them, and deleted them.
    answer = await asyncio.wait_for(upload, 10)
    assert answer.status_code == 200
    assert await blobs.get(key) == png  # stored again: the accepted photo has its bytes
    (media,) = await wait_for(lambda: web_media(service))
    assert media.sha256 == digest


async def test_a_photo_whose_message_was_never_accepted_is_swept_after_a_day(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    from civicchat.clock import SystemClock
    from civicchat.storage.privacy import ORPHAN_GRACE, Privacy

    store = service.state.store
    real_accept = store.accept

    async def down(events: Any) -> Any:
        raise StorageError("database unavailable")

    monkeypatch.setattr(store, "accept", down)
    lost = await service.client.post(UPLOAD, content=JPEG, headers=headers(mid="lost"))
    await refused(lost, 503, "try_again")  # the citizen never sends it again
    monkeypatch.setattr(store, "accept", real_accept)
    png = tiny_png()
    kept = await service.client.post(UPLOAD, content=png, headers=headers(mid="kept"))
    assert kept.status_code == 200, kept.text
    await wait_for(lambda: web_media(service))
    blobs = service.state.blobs
    orphan = media_blob_key("webchat", "mataro-web", hashlib.sha256(JPEG).hexdigest())
    photo = media_blob_key("webchat", "mataro-web", hashlib.sha256(png).hexdigest())
    privacy = Privacy(store, blobs, SystemClock())  # the files' times are the real ones
    assert await privacy.sweep_orphans("mataro-web") == 0  # within the grace period
    assert await blobs.exists(orphan)
    old = (privacy.clock.now() - ORPHAN_GRACE - timedelta(minutes=5)).timestamp()
    for key in (orphan, photo):
        os.utime(blobs.root / key, (old, old))
    assert await privacy.sweep_orphans("mataro-web") == 1
    assert not await blobs.exists(orphan)
    assert await blobs.get(photo) == png  # its message made a media row: it stays


async def test_an_upload_is_written_once_under_the_media_workers_key(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    blobs = service.state.blobs
    real_put = blobs.put
    puts: list[str] = []

    async def counted(key: str, data: bytes, *, content_type: str | None = None) -> None:
        puts.append(key)
        await real_put(key, data, content_type=content_type)

    monkeypatch.setattr(blobs, "put", counted)
    png = tiny_png()
    response = await service.client.post(UPLOAD, content=png, headers=headers(mid="once"))
    assert response.status_code == 200, response.text
    (media,) = await wait_for(lambda: web_media(service))
    key = media_blob_key("webchat", "mataro-web", hashlib.sha256(png).hexdigest())

    async def stored() -> Any:
        async with service.state.store.transaction() as tx:
            assert media.media_id is not None
            row = await tx.media.get_media("webchat", "mataro-web", media.media_id)
        return row if row is not None and row.state is MediaState.STORED else None

    row = await wait_for(stored)
    assert row.blob_key == key
    # The upload wrote it; the media worker, finding it under its own key, did not again.
    assert puts == [key]


async def test_a_failed_blob_write_accepts_nothing(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def full_disk(key: str, data: bytes, *, content_type: str | None = None) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(service.state.blobs, "put", full_disk)
    response = await service.client.post(UPLOAD, content=JPEG, headers=headers())
    await refused(response, 503, "try_again")
    assert sum((await service.state.store.state_counts()).values()) == 0


@pytest.mark.parametrize(
    "location",
    [
        b'{"latitude": NaN, "longitude": 2.44}',
        b'{"latitude": 41.5, "longitude": Infinity}',
        b'{"latitude": 91, "longitude": 2.44}',
        b'{"latitude": 41.5, "longitude": -180.5}',
        b'{"latitude": "41.5", "longitude": "2.44"}',
        b'{"latitude": true, "longitude": 2.44}',
        b'{"latitude": 41.5}',
    ],
)
async def test_bad_coordinates_are_refused(service: Service, location: bytes) -> None:
    body = b'{"visitor": "%s", "id": "l1", "location": %s}' % (VISITOR.encode(), location)
    response = await service.client.post(
        "/webhooks/webchat/mataro-web", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert sum((await service.state.store.state_counts()).values()) == 0


async def test_a_shared_location_reaches_the_conversation(service: Service) -> None:
    response = await service.client.post(
        "/webhooks/webchat/mataro-web",
        json={
            "visitor": VISITOR,
            "id": "l1",
            "location": {"latitude": 41.5381, "longitude": 2.4445},
        },
    )
    assert response.status_code == 200

    async def located() -> Any:
        async with service.state.store.transaction() as tx:
            convs = await tx.conversations.list("mataro-web")
            records = await tx.conversation_messages(convs[0].id) if convs else []
        return [json.loads(r.content_json) for r in records if r.direction == "in"]

    (location,) = await wait_for(located)
    assert location["kind"] == "location"
    assert (location["latitude"], location["longitude"]) == (41.5381, 2.4445)


async def test_an_incident_with_a_photo_from_the_web_chat(tmp_path: Path) -> None:
    async with case_service(tmp_path) as svc:
        await svc.web(1, text="incidència")
        await svc.web(2, text="1")
        asked = " ".join(await svc.web(3, text="La farola no s'encén"))
        assert "foto o un vídeo" in asked
        png = tiny_png()
        response = await svc.client.post(
            UPLOAD,
            content=png,
            headers=headers(visitor="visitor_0123456789abcdef", mid="m4"),
        )
        assert response.status_code == 200, response.text
        await svc.settle()
        assert "On és?" in " ".join(await svc.replies())
        await svc.web(5, location={"latitude": 41.5385, "longitude": 2.4447})
        done = " ".join(await svc.web(6, text="sí"))
        assert "MTR-2026-000001" in done
        cases = svc.state.runtime.cases
        assert cases is not None
        case = await cases.cases.get("MTR-2026-000001")
        assert case is not None
        assert [(m.media_kind, m.channel) for m in case.media] == [(MediaKind.IMAGE, "webchat")]

        async def photo() -> Any:
            return await cases.media_bytes(case, 0)

        data, mime = await wait_for(photo)
        assert (data, mime) == (png, "image/png")
        counts = await svc.state.store.state_counts()
        assert counts[EventState.FAILED] == 0


async def test_a_photo_out_of_the_blue_on_the_web_chat_starts_a_report(tmp_path: Path) -> None:
    async with case_service(tmp_path) as svc:
        response = await svc.client.post(
            UPLOAD,
            content=tiny_png(),
            headers=headers(visitor="visitor_0123456789abcdef", mid="m1", caption="Paperera"),
        )
        assert response.status_code == 200, response.text
        await svc.settle()
        assert "Quin tipus de problema és?" in " ".join(await svc.replies())
