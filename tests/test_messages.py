from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from civicchat.messages import (
    Buttons,
    DeliveryStatus,
    InboundMessage,
    Location,
    Media,
    MediaKind,
    OutboundMessage,
    ReplyButton,
    Sender,
    Text,
    content_from_json,
    split_text,
)


def test_every_content_round_trips_through_json() -> None:
    contents = [
        Text(body="horari bus", preview_url=True),
        Media(media_kind=MediaKind.VOICE, media_id="123", mime_type="audio/ogg"),
        Location(latitude=41.5381, longitude=2.4445, name="OAC", address="La Riera, 48"),
        Buttons(body="Volia dir...?", buttons=(ReplyButton(id="kw:bus", title="Bus"),)),
    ]
    for content in contents:
        assert content_from_json(content.model_dump_json()) == content


def test_media_needs_a_source() -> None:
    with pytest.raises(ValidationError, match="media_id or a link"):
        Media(media_kind=MediaKind.IMAGE)


def test_location_bounds_are_checked() -> None:
    with pytest.raises(ValidationError):
        Location(latitude=91, longitude=0)


def test_inbound_message_refuses_naive_time() -> None:
    with pytest.raises(ValidationError):
        InboundMessage(
            channel="whatsapp",
            account="mataro",
            provider_message_id="wamid.1",
            sender=Sender(id="34600000000"),
            timestamp=datetime(2026, 1, 1, 12, 0),
            content=Text(body="hola"),
        )


def test_envelopes_are_frozen_and_typed() -> None:
    msg = OutboundMessage(
        channel="telegram", account="bot", recipient_id="42", content=Text(body="hola")
    )
    with pytest.raises(ValidationError):
        msg.recipient_id = "43"  # type: ignore[misc]
    inbound = InboundMessage.model_validate_json(
        InboundMessage(
            channel="whatsapp",
            account="mataro",
            provider_message_id="wamid.1",
            sender=Sender(id="34600000000", name="Núria"),
            timestamp=datetime(2026, 1, 1, 12, 0, tzinfo=UTC),
            content=Location(latitude=41.5, longitude=2.4),
        ).model_dump_json()
    )
    assert isinstance(inbound.content, Location)


def test_status_rank_orders_out_of_order_statuses() -> None:
    assert DeliveryStatus.READ.rank > DeliveryStatus.DELIVERED.rank > DeliveryStatus.SENT.rank
    assert DeliveryStatus.FAILED.rank > DeliveryStatus.PLAYED.rank


# --------------------------------------------------------------------------- Buttons.media


def _bus_buttons(header: str | None = None, media: Media | None = None, **kw: str) -> Buttons:
    buttons = (ReplyButton(id="kw:tren", title="Tren"),)
    return Buttons(body="Bus urbà", buttons=buttons, header=header, media=media, **kw)


def test_buttons_carry_a_media_header_and_round_trip() -> None:
    doc = Media(media_kind=MediaKind.DOCUMENT, link="https://example.org/x.pdf", filename="x.pdf")
    content = _bus_buttons(media=doc)
    assert content.media == doc
    assert content_from_json(content.model_dump_json()) == content
    image = Media(media_kind=MediaKind.IMAGE, media_id="123")
    assert _bus_buttons(media=image, footer="010").media == image


def test_buttons_refuse_a_text_header_and_a_media_header_together() -> None:
    doc = Media(media_kind=MediaKind.DOCUMENT, link="https://example.org/x.pdf")
    with pytest.raises(ValidationError, match="text header or a media header, not both"):
        _bus_buttons(header="Mataró Bus", media=doc)


@pytest.mark.parametrize("kind", [MediaKind.AUDIO, MediaKind.VOICE, MediaKind.STICKER])
def test_buttons_refuse_a_media_header_that_is_not_image_video_or_document(
    kind: MediaKind,
) -> None:
    with pytest.raises(ValidationError, match="image, a video or a document"):
        _bus_buttons(media=Media(media_kind=kind, media_id="1"))


def test_a_media_header_still_needs_a_source() -> None:
    with pytest.raises(ValidationError, match="media_id or a link"):
        Buttons.model_validate(
            {
                "body": "x",
                "buttons": [{"id": "a", "title": "A"}],
                "media": {"media_kind": "image"},
            }
        )


# --------------------------------------------------------------------------- split_text


def test_split_text_is_one_function_for_keywords_and_channels() -> None:
    import importlib

    for module in ("civicchat.channels.degrade", "civicchat.keywords.index"):
        assert importlib.import_module(module).split_text is split_text


def test_split_text_prefers_paragraphs_then_lines_then_sentences_then_spaces() -> None:
    assert split_text("abc", 10) == ["abc"]
    assert split_text("aaa bbb\n\nccc", 7) == ["aaa bbb", "ccc"]
    assert split_text("Primer. Segon tros", 12) == ["Primer.", "Segon tros"]
    assert split_text("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]
    assert split_text("  \n ", 10) == []


def test_split_text_refuses_a_limit_below_one() -> None:
    with pytest.raises(ValueError, match="positive limit"):
        split_text("abc", 0)
