import asyncio
import contextlib
import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from channels_helpers import NOW
from hypothesis import given, settings
from hypothesis import strategies as st

from civicchat.channels.base import WebhookRequest
from civicchat.channels.degrade import degrade
from civicchat.channels.webchat import (
    MAX_EVENT_BYTES,
    MAX_TEXT_IN,
    WebChatChannel,
    WebChatHub,
    event_chunks,
    is_heif,
    sniff_image,
)
from civicchat.clock import ManualClock
from civicchat.exceptions import (
    ConfigError,
    MediaError,
    MediaExpiredError,
    MediaTooLargeError,
    PayloadError,
    UnsupportedContentError,
    WebhookError,
)
from civicchat.keywords import KeywordEngine, load_catalog
from civicchat.messages import (
    Buttons,
    InboundMessage,
    InteractiveReply,
    ListMenu,
    ListRow,
    ListSection,
    Location,
    Media,
    MediaKind,
    OutboundContent,
    OutboundMessage,
    ReplyButton,
    Text,
)
from civicchat.storage.media import media_blob_key

VISITOR = "v_3f9a2c71b84e4d0f"


def post(data: dict[str, Any] | bytes, content_type: str = "application/json") -> WebhookRequest:
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    return WebhookRequest(method="POST", headers={"Content-Type": content_type}, body=body)


@pytest.fixture
def hub() -> WebChatHub:
    return WebChatHub(backlog=3)


@pytest.fixture
def channel(hub: WebChatHub) -> WebChatChannel:
    ids = iter(f"id{i}" for i in range(1000))
    return WebChatChannel(hub, account="web", clock=ManualClock(NOW), new_id=lambda: next(ids))


def only(channel: WebChatChannel, data: dict[str, Any]) -> InboundMessage:
    (event,) = channel.handle_webhook(post(data)).events
    assert isinstance(event, InboundMessage)
    return event


def test_text_from_the_page(channel: WebChatChannel) -> None:
    result = channel.handle_webhook(
        post({"visitor": VISITOR, "id": "m1", "text": "horari bus", "language": "es"})
    )
    (event,) = result.events
    assert isinstance(event, InboundMessage)
    assert event.content == Text(body="horari bus")
    assert (event.channel, event.account, event.provider_message_id) == (
        "webchat",
        "web",
        f"{VISITOR}:m1",
    )
    assert event.sender.id == VISITOR
    assert event.sender.language_hint == "es"
    assert event.timestamp == NOW
    assert json.loads(result.body) == {"id": f"{VISITOR}:m1"}


def test_a_retried_post_with_the_same_id_is_the_same_message(channel: WebChatChannel) -> None:
    first = only(channel, {"visitor": VISITOR, "id": "m1", "text": "hola"})
    again = only(channel, {"visitor": VISITOR, "id": "m1", "text": "hola"})
    assert first.provider_message_id == again.provider_message_id
    no_id = only(channel, {"visitor": VISITOR, "text": "hola"})
    assert no_id.provider_message_id == f"{VISITOR}:id0"


def test_button_and_location(channel: WebChatChannel) -> None:
    button = only(channel, {"visitor": VISITOR, "reply_id": "kw:bus", "text": "Bus"})
    assert button.content == InteractiveReply(reply_id="kw:bus", title="Bus")
    location = only(
        channel, {"visitor": VISITOR, "location": {"latitude": 41.54, "longitude": 2.44}}
    )
    assert location.content == Location(latitude=41.54, longitude=2.44)


@pytest.mark.parametrize(
    "data",
    [
        {"visitor": "short", "text": "hola"},
        {"visitor": "v" * 16 + "<script>", "text": "hola"},
        {"visitor": 12345678901234567, "text": "hola"},
        {"text": "hola"},
        {"visitor": VISITOR},
        {"visitor": VISITOR, "text": "   "},
        {"visitor": VISITOR, "text": 5},
        {"visitor": VISITOR, "text": "x" * 4097},
        {"visitor": VISITOR, "id": "../../etc", "text": "hola"},
        # "$" in a pattern matches before a final newline: these ids must still be refused
        {"visitor": VISITOR + "\n", "text": "hola"},
        {"visitor": VISITOR, "id": "m1\n", "text": "hola"},
        {"visitor": VISITOR, "location": {"latitude": 100, "longitude": 2}},
        {"visitor": VISITOR, "location": {"latitude": True, "longitude": 2}},
        {"visitor": VISITOR, "location": {"latitude": 41.5, "longitude": -181}},
        {"visitor": VISITOR, "location": {"latitude": "41.5", "longitude": 2.4}},
        {"visitor": VISITOR, "location": {"latitude": 41.5}},
        {"visitor": VISITOR, "location": {"latitude": 10**400, "longitude": 2}},
        {"visitor": VISITOR, "location": "here"},
        {"visitor": VISITOR, "reply_id": ""},
    ],
)
def test_bad_posts_are_refused_cleanly(channel: WebChatChannel, data: dict[str, Any]) -> None:
    with pytest.raises(PayloadError):
        channel.handle_webhook(post(data))


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_a_location_that_is_not_a_finite_number_is_refused(
    channel: WebChatChannel, number: bytes
) -> None:
    # json.loads reads these (Python's JSON accepts NaN and Infinity); none is a place.
    body = b'{"visitor": "%s", "location": {"latitude": %s, "longitude": 2.44}}' % (
        VISITOR.encode(),
        number,
    )
    with pytest.raises(PayloadError, match=r"finite|range"):
        channel.handle_webhook(post(body))


def test_content_type_and_size_are_checked(channel: WebChatChannel) -> None:
    with pytest.raises(WebhookError) as info:
        channel.handle_webhook(
            post({"visitor": VISITOR, "text": "hola"}, content_type="text/plain")
        )
    assert info.value.status_code == 415
    with pytest.raises(PayloadError) as big:
        channel.handle_webhook(post(b"{" + b" " * 20_000 + b"}"))
    assert big.value.status_code == 413
    with pytest.raises(PayloadError):
        channel.handle_webhook(post(b"not json"))


def out(content: OutboundContent, visitor: str = VISITOR) -> OutboundMessage:
    return OutboundMessage(channel="webchat", account="web", recipient_id=visitor, content=content)


async def test_buttons_under_a_media_header_are_one_message_for_the_page(
    channel: WebChatChannel, hub: WebChatHub
) -> None:
    plan = Media(
        media_kind=MediaKind.DOCUMENT,
        link="https://www.mataro.cat/planol.pdf",
        filename="planol.pdf",
    )
    menu = Buttons(
        body="Mataró Bus", media=plan, buttons=(ReplyButton(id="kw:tren", title="Tren"),)
    )
    assert degrade(menu, channel.capabilities, "ca") == [menu]  # not split in two
    await channel.send(out(menu), last_inbound_at=None)
    (event,) = hub.backlog("web", VISITOR)
    assert event["content"]["media"]["link"] == "https://www.mataro.cat/planol.pdf"
    assert event["content"]["media"]["filename"] == "planol.pdf"
    # The page shows files by https link only: an id of another provider is refused.
    by_id = menu.model_copy(update={"media": Media(media_kind=MediaKind.IMAGE, media_id="wa-123")})
    with pytest.raises(UnsupportedContentError):
        await channel.send(out(by_id), last_inbound_at=None)
    assert len(hub.backlog("web", VISITOR)) == 1


async def test_send_publishes_to_the_hub(channel: WebChatChannel, hub: WebChatHub) -> None:
    buttons = Buttons(body="Volies dir...?", buttons=(ReplyButton(id="kw:bus", title="Bus"),))
    event_id = await channel.send(out(buttons), last_inbound_at=None)
    (event,) = hub.backlog("web", VISITOR)
    assert event["id"] == event_id
    assert event["seq"] == 1
    assert event["content"]["kind"] == "buttons"
    assert event["content"]["buttons"] == [{"id": "kw:bus", "title": "Bus"}]
    assert event["timestamp"] == NOW.isoformat()


@pytest.mark.parametrize(
    ("language", "footer"),
    [
        ("ca", "Tria una opció o escriu «cancel·lar»."),
        ("es", "Elige una opción o escribe «cancelar»."),
    ],
)
async def test_the_footer_of_buttons_and_of_a_list_reaches_the_page(
    channel: WebChatChannel, hub: WebChatHub, language: str, footer: str
) -> None:
    rows = tuple(ListRow(id=f"case:cat:{n}", title=f"Categoria {n}") for n in range(4))
    menu = ListMenu(
        body="?", button="Categories", sections=(ListSection(rows=rows),), footer=footer
    )
    buttons = Buttons(
        body="?", header="Bus", footer=footer, buttons=(ReplyButton(id="kw:bus", title="Bus"),)
    )
    for content in (menu, buttons):
        # The page has no lists: degrade makes them buttons, and keeps the footer.
        (shown,) = degrade(content, channel.capabilities, language)
        assert isinstance(shown, Buttons)
        await channel.send(out(shown), last_inbound_at=None)
    listed, plain = hub.backlog("web", VISITOR)
    assert listed["content"]["footer"] == footer
    assert [b["id"] for b in listed["content"]["buttons"]] == [r.id for r in rows]
    assert plain["content"]["footer"] == footer
    assert plain["content"]["header"] == "Bus"


@pytest.mark.parametrize(
    "content",
    [
        Location(latitude=1, longitude=2),
        ListMenu(body="?", button="b", sections=(ListSection(rows=(ListRow(id="a", title="A"),)),)),
        Media(media_kind=MediaKind.IMAGE, media_id="123"),
        Text(body="x" * 40_000),  # over the 32,768 characters a message may have
    ],
)
async def test_send_refuses_what_the_page_cannot_show(
    channel: WebChatChannel, hub: WebChatHub, content: OutboundContent
) -> None:
    with pytest.raises(UnsupportedContentError):
        await channel.send(out(content), last_inbound_at=None)
    assert hub.backlog("web", VISITOR) == []


async def test_fetch_media_is_refused(channel: WebChatChannel) -> None:
    with pytest.raises(MediaError):
        await channel.fetch_media("web", "x", max_bytes=10)


JPEG = bytes.fromhex("ffd8ffe000104a46494600010100000100010000") + b"\x00" * 40 + b"\xff\xd9"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 30
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 30
HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 30


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (JPEG, "image/jpeg"),
        (PNG, "image/png"),
        (WEBP, "image/webp"),
        (HEIC, None),
        (b"%PDF-1.7\n", None),
        (b"GIF89a" + b"\x00" * 10, None),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", None),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", None),  # RIFF, but a sound
        (b"\xff\xd8", None),  # too short to be a JPEG
        (b"", None),
    ],
)
def test_the_image_type_comes_from_the_bytes(data: bytes, mime: str | None) -> None:
    assert sniff_image(data[:16]) == mime


def test_heic_is_recognised_to_be_refused_by_name() -> None:
    assert is_heif(HEIC[:16])
    assert not is_heif(JPEG[:16])
    assert not is_heif(b"\x00\x00\x00\x18ftypisom\x00\x00\x00\x00")  # an MP4 video


class DictBlobs:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    async def get(self, key: str) -> bytes:
        return self.blobs[key]


def test_an_uploaded_photo_is_an_image_message_with_its_caption(channel: WebChatChannel) -> None:
    message = channel.upload_message(
        visitor=VISITOR,
        data=JPEG,
        mime_type="image/jpeg",
        client_id="p1",
        caption="  Fanal trencat  ",
        language="es",
    )
    assert message.channel == "webchat"
    assert message.account == "web"
    assert message.provider_message_id == f"{VISITOR}:p1"
    assert message.sender.id == VISITOR
    assert message.sender.language_hint == "es"
    assert message.timestamp == NOW
    media = message.content
    assert isinstance(media, Media)
    assert media.media_kind is MediaKind.IMAGE
    assert media.mime_type == "image/jpeg"
    assert media.caption == "Fanal trencat"
    assert media.size == len(JPEG)
    digest = hashlib.sha256(JPEG).hexdigest()
    assert media.sha256 == digest
    assert media.media_id is not None
    assert media.media_id.startswith(digest + "-")
    assert VISITOR not in media.media_id  # it shows in console links
    # A retried upload (same client id) is the same message and the same media ...
    again = channel.upload_message(
        visitor=VISITOR, data=JPEG, mime_type="image/jpeg", client_id="p1"
    )
    assert again.provider_message_id == message.provider_message_id
    assert isinstance(again.content, Media)
    assert again.content.media_id == media.media_id
    assert again.content.caption is None
    # ... the same photo sent again is another media (one media row per message).
    other = channel.upload_message(
        visitor=VISITOR, data=JPEG, mime_type="image/jpeg", client_id="p2"
    )
    assert isinstance(other.content, Media)
    assert other.content.media_id != media.media_id


@pytest.mark.parametrize(
    "change",
    [
        {"visitor": "short"},
        {"visitor": VISITOR + "\n"},
        {"client_id": "../x"},
        {"mime_type": "image/heic"},
        {"mime_type": "application/pdf"},
        {"data": b""},
        {"caption": "x" * 1025},
    ],
)
def test_a_bad_upload_is_refused(channel: WebChatChannel, change: dict[str, Any]) -> None:
    args: dict[str, Any] = {"visitor": VISITOR, "data": JPEG, "mime_type": "image/jpeg"}
    with pytest.raises(PayloadError):
        channel.upload_message(**{**args, **change})


async def test_fetch_media_reads_an_upload_back_from_the_blob_store(hub: WebChatHub) -> None:
    blobs = DictBlobs()
    channel = WebChatChannel(hub, account="web", clock=ManualClock(NOW), uploads=blobs)
    message = channel.upload_message(visitor=VISITOR, data=PNG, mime_type="image/png")
    assert isinstance(message.content, Media)
    media_id = message.content.media_id
    assert media_id is not None
    with pytest.raises(MediaExpiredError):  # the service stores the bytes before the event
        await channel.fetch_media("web", media_id, max_bytes=10_000)
    blobs.blobs[media_blob_key("webchat", "web", hashlib.sha256(PNG).hexdigest())] = PNG
    download = await channel.fetch_media("web", media_id, max_bytes=10_000)
    assert download.mime_type == "image/png"
    assert await download.read() == PNG
    with pytest.raises(MediaTooLargeError):
        await channel.fetch_media("web", media_id, max_bytes=10)
    # Only ids the page made, and only of this account.
    for account, wrong in (("web", "123"), ("web", "../" + media_id), ("other", media_id)):
        with pytest.raises(MediaError):
            await channel.fetch_media(account, wrong, max_bytes=10_000)


async def test_subscriber_gets_backlog_then_live_events(hub: WebChatHub) -> None:
    hub.publish("web", VISITOR, {"text": "a"})
    hub.publish("web", VISITOR, {"text": "b"})
    stream = hub.subscribe("web", VISITOR)
    received = [await anext(stream), await anext(stream)]
    assert [e["text"] for e in received] == ["a", "b"]
    waiting = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    assert not waiting.done()
    hub.publish("web", VISITOR, {"text": "c"})
    live = await asyncio.wait_for(waiting, 1)
    assert (live["text"], live["seq"]) == ("c", 3)
    assert hub.subscribers("web", VISITOR) == 1
    await stream.aclose()  # type: ignore[attr-defined]
    assert hub.subscribers("web", VISITOR) == 0


async def test_reconnecting_page_gets_only_what_it_missed(hub: WebChatHub) -> None:
    for text in "abcde":
        hub.publish("web", VISITOR, {"text": text})
    # The backlog keeps 3 events (c, d, e); the page last saw seq 3 (c).
    stream = hub.subscribe("web", VISITOR, after=3)
    assert [(await anext(stream))["text"] for _ in range(2)] == ["d", "e"]
    await stream.aclose()  # type: ignore[attr-defined]


async def test_the_backlog_drops_whole_messages_never_one_part() -> None:
    hub = WebChatHub(backlog=5)
    channel = WebChatChannel(hub, account="web", max_event_bytes=256)
    for body in ("x" * 600, "y" * 600, "z" * 600):  # 3 parts each
        await channel.send(out(Text(body=body)), last_inbound_at=None)
    events = hub.backlog("web", VISITOR)
    # 9 events for a bound of 5: the two oldest messages went whole, the newest is whole.
    assert [e["part"] for e in events] == [1, 2, 3]
    assert json.loads("".join(e["chunk"] for e in events))["body"] == "z" * 600
    # A message with more parts than the bound is kept whole rather than cut.
    await channel.send(out(Text(body="w" * 2000)), last_inbound_at=None)
    events = hub.backlog("web", VISITOR)
    assert len(events) > 5
    assert json.loads("".join(e["chunk"] for e in events))["body"] == "w" * 2000


async def test_a_slow_page_loses_whole_messages_and_sees_a_gap() -> None:
    hub = WebChatHub(backlog=100, queue_size=4)
    channel = WebChatChannel(hub, account="web", max_event_bytes=256)
    stream = hub.subscribe("web", VISITOR)
    waiting = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    await channel.send(out(Text(body="a" * 600)), last_inbound_at=None)  # seq 1-3
    first = await asyncio.wait_for(waiting, 1)
    # The page took part 1 of "a", then reads nothing while three more messages come.
    for body in ("b" * 600, "c" * 600, "d"):  # seq 4-6, 7-9, 10
        await channel.send(out(Text(body=body)), last_inbound_at=None)
    rest = [await asyncio.wait_for(anext(stream), 1) for _ in range(4)]
    await stream.aclose()  # type: ignore[attr-defined]
    # What is left of "a" and all of "b" went; "c" and "d" are whole. The jump from seq 1 to
    # 7 tells the page it lost something (it reads its history again).
    assert [first["seq"]] + [e["seq"] for e in rest] == [1, 7, 8, 9, 10]
    assert [e.get("part") for e in rest] == [1, 2, 3, None]
    assert json.loads("".join(e["chunk"] for e in rest[:3]))["body"] == "c" * 600
    assert rest[3]["content"]["body"] == "d"


async def test_visitors_and_accounts_are_isolated(hub: WebChatHub) -> None:
    other = "w_" + "0" * 16
    hub.publish("web", other, {"text": "private"})
    hub.publish("web2", VISITOR, {"text": "other account"})
    stream = hub.subscribe("web", VISITOR)
    waiting = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    assert not waiting.done()
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    # A page that goes away (its task cancelled) is unsubscribed.
    assert hub.subscribers("web", VISITOR) == 0


def test_hub_forgets_the_least_recent_idle_visitors() -> None:
    hub = WebChatHub(max_visitors=2)
    visitors = [f"visitor_{i:010d}" for i in range(3)]
    for v in visitors:
        hub.publish("web", v, {"text": v})
    assert hub.backlog("web", visitors[0]) == []  # forgotten, a fresh empty backlog
    assert len(hub.backlog("web", visitors[2])) == 1


def test_hub_refuses_bad_visitor_ids() -> None:
    with pytest.raises(ValueError, match="visitor"):
        WebChatHub().publish("web", "bad id", {})


def run_channels_doc_example(
    marker: str, capsys: pytest.CaptureFixture[str]
) -> tuple[str, list[str]]:
    """The one example of docs/channels.md that mentions ``marker``, and the lines it printed."""
    doc = Path(__file__).parents[2] / "docs" / "channels.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)
    (example,) = [b for b in blocks if marker in b]
    exec(compile(example, str(doc), "exec"), {"__name__": f"docs_channels_{marker}"})
    return example, capsys.readouterr().out.splitlines()


def test_the_web_chat_example_in_docs_channels_prints_what_it_says(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, printed = run_channels_doc_example("photo_from_the_page", capsys)
    assert printed == [
        "image/jpeg None",
        "image Fanal trencat",
        "image/jpeg True",
    ]


MATARO_CATALOG = Path(__file__).resolve().parents[2] / "examples" / "mataro" / "catalog.yaml"


async def test_the_keyword_index_is_one_message_of_one_event() -> None:
    engine = KeywordEngine(load_catalog(MATARO_CATALOG))
    hub = WebChatHub()
    channel = WebChatChannel(hub, account="web")
    for words in ("PARAULES CLAU", "PALABRAS CLAVE"):
        answer = engine.answer(words)
        assert answer is not None
        (index,) = answer.contents
        assert isinstance(index, Text)
        assert len(index.body) > 2000  # what used to be cut in two
        assert degrade(index, channel.capabilities, answer.language) == [index]
        before = len(hub.backlog("web", VISITOR))
        await channel.send(out(index), last_inbound_at=None)
        (event,) = hub.backlog("web", VISITOR)[before:]
        assert event["content"]["body"] == index.body


@pytest.mark.parametrize("unit", ['àèò «Ajuntament» "010"\n', "🚌\\", "a"])
async def test_a_long_message_goes_in_parts_that_each_fit_a_notification(unit: str) -> None:
    hub = WebChatHub(backlog=500)
    channel = WebChatChannel(hub, account="web", max_event_bytes=1000)
    body = (unit * 8000)[:8000]
    await channel.send(out(Text(body=body)), last_inbound_at=None)
    events = hub.backlog("web", VISITOR)
    assert len(events) > 1
    assert {e["id"] for e in events} == {events[0]["id"]}
    assert [e["part"] for e in events] == list(range(1, len(events) + 1))
    assert {e["parts"] for e in events} == {len(events)}
    assert all("content" not in e for e in events)
    for event in events:
        # Each part, as the service relays it in JSON, stays within the budget plus its envelope.
        assert len(json.dumps(event["chunk"], ensure_ascii=False).encode()) <= 1000 + 2
        assert len(json.dumps(event, ensure_ascii=False).encode()) < 1300
    content = json.loads("".join(e["chunk"] for e in events))
    assert content["body"] == body


def _chunks_per_char(text: str, max_bytes: int) -> list[str]:
    """The obviously correct reference: each character's JSON-escaped size from json.dumps."""
    pieces: list[str] = []
    start, size = 0, 0
    for index, char in enumerate(text):
        cost = len(json.dumps(char, ensure_ascii=False).encode()) - 2
        if size + cost > max_bytes and index > start:
            pieces.append(text[start:index])
            start, size = index, 0
        size += cost
    pieces.append(text[start:])
    return pieces


# The worst case: characters that escape (quotes, backslashes, control characters) or take
# 2-4 bytes, mixed with plain ASCII.
_HARD = st.text(
    alphabet=st.one_of(
        st.sampled_from('"\\\x00\x01\x1f\x7f\b\f\n\r\t\u2028é€🚌a '),
        st.characters(codec="utf-8"),
    ),
    max_size=400,
)


@settings(max_examples=300, deadline=None)
@given(text=_HARD, max_bytes=st.integers(min_value=1, max_value=64))
def test_event_chunks_cut_as_the_per_character_json_reference(text: str, max_bytes: int) -> None:
    chunks = event_chunks(text, max_bytes)
    assert chunks == _chunks_per_char(text, max_bytes)
    assert "".join(chunks) == text
    for chunk in chunks:
        size = len(json.dumps(chunk, ensure_ascii=False).encode()) - 2
        assert size <= max_bytes or len(chunk) == 1


def test_a_32k_answer_of_escapes_is_cut_fast_and_every_part_fits_a_notification() -> None:
    body = ('\x01"\\🚌é\n' * 6000)[:32_768]
    content = json.dumps({"kind": "text", "body": body}, ensure_ascii=False)
    started = time.perf_counter()
    chunks = event_chunks(content, MAX_EVENT_BYTES)
    elapsed = time.perf_counter() - started
    assert chunks == _chunks_per_char(content, MAX_EVENT_BYTES)
    for chunk in chunks:
        event = {"id": "e" * 32, "timestamp": NOW.isoformat(), "reply_to": None, "part": 99,
                 "parts": 99, "chunk": chunk, "seq": 10**6}  # fmt: skip
        assert len(json.dumps(event, ensure_ascii=False).encode()) < 8000  # PostgreSQL NOTIFY
    assert elapsed < 0.05  # the per-character json.dumps took ~0.08 s here


def test_a_too_small_event_budget_is_refused(hub: WebChatHub) -> None:
    with pytest.raises(ConfigError, match="max_event_bytes"):
        WebChatChannel(hub, account="web", max_event_bytes=10)


def test_a_citizens_text_is_bounded_apart_from_the_replies(channel: WebChatChannel) -> None:
    assert channel.capabilities.max_text_length > MAX_TEXT_IN
    ok = channel.handle_webhook(post({"visitor": VISITOR, "text": "x" * MAX_TEXT_IN}))
    assert len(ok.events) == 1
    with pytest.raises(PayloadError, match="more than"):
        channel.handle_webhook(post({"visitor": VISITOR, "text": "x" * (MAX_TEXT_IN + 1)}))


def test_the_long_answer_example_in_docs_channels_prints_what_it_says(
    capsys: pytest.CaptureFixture[str],
) -> None:
    example, printed = run_channels_doc_example("long_answer", capsys)
    assert printed == ["2 {2}", "True"]
    assert "# 2 {2}" in example
    assert "# True" in example


def test_the_docstring_examples_of_the_web_chat_run() -> None:
    import doctest

    from civicchat.channels import webchat

    failures, tried = doctest.testmod(webchat)
    assert tried >= 3
    assert failures == 0


def test_asking_for_the_place_points_at_the_pages_own_location_button() -> None:
    from civicchat.channels.degrade import degrade
    from civicchat.channels.webchat import WEBCHAT_CAPABILITIES
    from civicchat.messages import LocationRequest

    for lang, words in (("ca", "toca el botó 📍"), ("es", "toca el botón 📍")):
        (text,) = degrade(LocationRequest(body="On és?"), WEBCHAT_CAPABILITIES, lang)
        assert words in text.body  # type: ignore[union-attr]
        assert "📎" not in text.body  # type: ignore[union-attr]  # the clip sends photos here
