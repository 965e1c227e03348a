import asyncio
import contextlib
import json
from typing import Any

import pytest
from channels_helpers import NOW

from civicchat.channels.base import WebhookRequest
from civicchat.channels.webchat import WebChatChannel, WebChatHub
from civicchat.clock import ManualClock
from civicchat.exceptions import MediaError, PayloadError, UnsupportedContentError, WebhookError
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
        {"visitor": VISITOR, "location": "here"},
        {"visitor": VISITOR, "reply_id": ""},
    ],
)
def test_bad_posts_are_refused_cleanly(channel: WebChatChannel, data: dict[str, Any]) -> None:
    with pytest.raises(PayloadError):
        channel.handle_webhook(post(data))


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
    "content",
    [
        Location(latitude=1, longitude=2),
        ListMenu(body="?", button="b", sections=(ListSection(rows=(ListRow(id="a", title="A"),)),)),
        Media(media_kind=MediaKind.IMAGE, media_id="123"),
        Text(body="x" * 5000),
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
