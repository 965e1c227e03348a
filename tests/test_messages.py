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
