import hashlib
import hmac
import json
from datetime import UTC, datetime

import httpx
import pytest
from channels_helpers import (
    MATARO,
    MATARO_010,
    OTHER_APP,
    SSL_CONTEXT,
    fixture_bytes,
    text_message,
    whatsapp_envelope,
    whatsapp_post,
)

from civicchat.channels.base import WebhookRequest
from civicchat.channels.whatsapp import WhatsAppChannel, sign
from civicchat.exceptions import PayloadError, SignatureError, WebhookError
from civicchat.messages import (
    Contacts,
    DeliveryStatus,
    InboundMessage,
    InteractiveReply,
    Location,
    Media,
    MediaKind,
    Reaction,
    StatusUpdate,
    SystemNotice,
    Text,
    Unsupported,
)


@pytest.fixture
def channel() -> WhatsAppChannel:
    return WhatsAppChannel(
        [MATARO, MATARO_010, OTHER_APP], client=httpx.AsyncClient(verify=SSL_CONTEXT)
    )


def test_signature_matches_meta_test_vector() -> None:
    assert sign(b"test", "secret") == (
        "sha256=0329a06b62cd16b33eb6792be8c60b158d89a2ee3a876fce9a881ebb488c0914"
    )


def test_verification_handshake_echoes_the_challenge(channel: WhatsAppChannel) -> None:
    request = WebhookRequest(
        method="GET",
        query={
            "hub.mode": "subscribe",
            "hub.challenge": "1158201444",
            "hub.verify_token": "mataro-010-verify",
        },
    )
    result = channel.handle_webhook(request)
    assert (result.status_code, result.body, result.events) == (200, b"1158201444", ())


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ({"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": "nope"}, 403),
        ({"hub.mode": "subscribe", "hub.challenge": "1158201444"}, 403),
        (
            {"hub.mode": "unsubscribe", "hub.challenge": "1", "hub.verify_token": "mataro-verify"},
            400,
        ),
        (
            {
                "hub.mode": "subscribe",
                "hub.challenge": "<script>",
                "hub.verify_token": "mataro-verify",
            },
            400,
        ),
    ],
)
def test_verification_handshake_refusals(
    channel: WhatsAppChannel, query: dict[str, str], status: int
) -> None:
    with pytest.raises(WebhookError) as info:
        channel.handle_webhook(WebhookRequest(method="GET", query=query))
    assert info.value.status_code == status


def test_missing_signature_is_401_and_nothing_parsed(channel: WhatsAppChannel) -> None:
    body = fixture_bytes("whatsapp_text.json")
    with pytest.raises(SignatureError) as info:
        channel.handle_webhook(WebhookRequest(method="POST", body=body))
    assert info.value.status_code == 401


@pytest.mark.parametrize(
    "header",
    [
        "sha256=" + "0" * 64,
        "sha1=" + hmac.new(b"mataro-app-secret", b"x", hashlib.sha1).hexdigest(),
        "sha256=",
        "garbage",
    ],
)
def test_wrong_signature_is_403(channel: WhatsAppChannel, header: str) -> None:
    body = fixture_bytes("whatsapp_text.json")
    request = WebhookRequest(method="POST", headers={"X-Hub-Signature-256": header}, body=body)
    with pytest.raises(SignatureError) as info:
        channel.handle_webhook(request)
    assert info.value.status_code == 403


def test_signature_is_checked_on_the_raw_bytes(channel: WhatsAppChannel) -> None:
    body = fixture_bytes("whatsapp_text.json")
    request = whatsapp_post(body)
    # Same JSON, different bytes (reformatted): the signature no longer matches.
    reformatted = json.dumps(json.loads(body)).encode()
    assert reformatted != body
    tampered = WebhookRequest(method="POST", headers=request.headers, body=reformatted)
    with pytest.raises(SignatureError):
        channel.handle_webhook(tampered)
    assert len(channel.handle_webhook(request).events) == 1


def test_uppercase_hex_signature_is_accepted(channel: WhatsAppChannel) -> None:
    body = fixture_bytes("whatsapp_text.json")
    header = "sha256=" + hmac.new(b"mataro-app-secret", body, hashlib.sha256).hexdigest().upper()
    request = WebhookRequest(method="POST", headers={"x-hub-signature-256": header}, body=body)
    assert len(channel.handle_webhook(request).events) == 1


@pytest.mark.parametrize(
    "body", [b"{not json", b"[]", b"\xff\xfe", b'{"object": "page", "entry": []}']
)
def test_malformed_body_is_400(channel: WhatsAppChannel, body: bytes) -> None:
    with pytest.raises(PayloadError) as info:
        channel.handle_webhook(whatsapp_post(body))
    assert info.value.status_code == 400


def test_envelope_with_wrong_shapes_is_400(channel: WhatsAppChannel) -> None:
    payload = whatsapp_envelope([text_message("wamid.1")])
    payload["entry"][0]["changes"][0]["value"]["messages"] = {"not": "a list"}
    with pytest.raises(PayloadError):
        channel.handle_webhook(whatsapp_post(payload))


def test_other_methods_are_405(channel: WhatsAppChannel) -> None:
    with pytest.raises(WebhookError) as info:
        channel.handle_webhook(WebhookRequest(method="PUT"))
    assert info.value.status_code == 405


def test_text_message_is_parsed(channel: WhatsAppChannel) -> None:
    result = channel.handle_webhook(whatsapp_post(fixture_bytes("whatsapp_text.json")))
    assert result.status_code == 200
    (message,) = result.events
    assert isinstance(message, InboundMessage)
    assert message.channel == "whatsapp"
    assert message.account == "mataro"
    assert message.sender.id == "34600111222"
    assert message.sender.name == "Núria Puig"
    assert message.timestamp == datetime(2026, 3, 27, 14, 0, tzinfo=UTC)
    assert message.content == Text(body="horari deixalleria")


def test_every_inbound_type(channel: WhatsAppChannel) -> None:
    events = channel.handle_webhook(whatsapp_post(fixture_bytes("whatsapp_every_type.json"))).events
    by_id = {e.provider_message_id: e for e in events if isinstance(e, InboundMessage)}
    assert len(by_id) == 18
    assert by_id["wamid.text"].content == Text(body="Hi ha un fanal trencat")
    image = by_id["wamid.image"].content
    assert isinstance(image, Media)
    assert (image.media_kind, image.media_id, image.caption, image.mime_type) == (
        MediaKind.IMAGE,
        "900000000000001",
        "Carrer de la Riera",
        "image/jpeg",
    )
    assert image.link is not None
    assert image.link.startswith("https://lookaside")
    assert isinstance(by_id["wamid.video"].content, Media)
    assert by_id["wamid.video"].content.media_kind is MediaKind.VIDEO
    assert by_id["wamid.audio"].content.media_kind is MediaKind.AUDIO  # type: ignore[union-attr]
    assert by_id["wamid.voice"].content.media_kind is MediaKind.VOICE  # type: ignore[union-attr]
    document = by_id["wamid.document"].content
    assert isinstance(document, Media)
    assert (document.filename, document.caption) == ("denuncia.pdf", "La denúncia")
    sticker = by_id["wamid.sticker"].content
    assert isinstance(sticker, Media)
    assert (sticker.media_kind, sticker.animated) == (MediaKind.STICKER, True)
    assert by_id["wamid.location"].content == Location(
        latitude=41.5381,
        longitude=2.4445,
        name="Ajuntament de Mataró",
        address="La Riera, 48, Mataró",
    )
    contacts = by_id["wamid.contacts"].content
    assert isinstance(contacts, Contacts)
    card = contacts.contacts[0]
    assert (card.name, card.phones, card.emails, card.organization) == (
        "Anna Soler",
        ("+34 600 555 666",),
        ("anna@example.org",),
        "AMPA Escola",
    )
    assert by_id["wamid.button_reply"].content == InteractiveReply(reply_id="kw:bus", title="Bus")
    assert by_id["wamid.button_reply"].reply_to == "wamid.menu"
    assert by_id["wamid.list_reply"].content == InteractiveReply(
        reply_id="kw:taxi", title="Taxi", description="Parades i telèfons", source="list"
    )
    assert by_id["wamid.template_button"].content == InteractiveReply(
        reply_id="reopen", title="Sí, continuar", source="template_button"
    )
    assert by_id["wamid.reaction"].content == Reaction(message_id="wamid.ours", emoji="👍")
    assert by_id["wamid.reaction_removed"].content == Reaction(message_id="wamid.ours", emoji=None)
    assert by_id["wamid.reply"].reply_to == "wamid.ours"
    assert by_id["wamid.forwarded"].forwarded is True
    assert by_id["wamid.text"].forwarded is False
    unsupported = by_id["wamid.unsupported"].content
    assert isinstance(unsupported, Unsupported)
    assert unsupported.provider_type == "unsupported/poll"
    assert unsupported.reason is not None
    assert "131051" in unsupported.reason
    assert by_id["wamid.unsupported"].sender.name == "Jordi Vila"
    assert by_id["wamid.system"].content == SystemNotice(
        notice="user_changed_number", new_id="34600999888"
    )


def test_reaction_without_emoji_key_is_a_removal(channel: WhatsAppChannel) -> None:
    message = {
        "from": "34600111222",
        "id": "wamid.r",
        "timestamp": "1774620000",
        "type": "reaction",
        "reaction": {"message_id": "wamid.ours"},
    }
    (event,) = channel.handle_webhook(whatsapp_post(whatsapp_envelope([message]))).events
    assert isinstance(event, InboundMessage)
    assert event.content == Reaction(message_id="wamid.ours", emoji=None)


@pytest.mark.parametrize(
    ("message", "provider_type"),
    [
        ({"type": "hologram", "hologram": {"x": 1}}, "hologram"),
        ({"type": "interactive"}, "interactive"),
        (
            {"type": "interactive", "interactive": {"type": "nfm_reply", "nfm_reply": {}}},
            "interactive/nfm_reply",
        ),
        ({"type": "text", "text": "not an object"}, "text"),
        ({"type": "location", "location": {"latitude": 123.0, "longitude": 2.0}}, "location"),
        ({"type": "image", "image": {"mime_type": "image/jpeg"}}, "image"),
        ({"type": "order", "order": {"catalog_id": "1", "product_items": []}}, "order"),
    ],
)
def test_unknown_or_broken_types_are_recorded_as_unsupported(
    channel: WhatsAppChannel, message: dict[str, object], provider_type: str
) -> None:
    item = {"from": "34600111222", "id": "wamid.x", "timestamp": "1774620000", **message}
    result = channel.handle_webhook(whatsapp_post(whatsapp_envelope([item])))
    assert result.status_code == 200
    (event,) = result.events
    assert isinstance(event, InboundMessage)
    assert isinstance(event.content, Unsupported)
    assert event.content.provider_type == provider_type


def test_statuses_in_any_order_with_errors(channel: WhatsAppChannel) -> None:
    events = channel.handle_webhook(whatsapp_post(fixture_bytes("whatsapp_statuses.json"))).events
    statuses = [e for e in events if isinstance(e, StatusUpdate)]
    assert [(s.provider_message_id, s.status) for s in statuses] == [
        ("wamid.out1", DeliveryStatus.READ),
        ("wamid.out1", DeliveryStatus.SENT),
        ("wamid.out2", DeliveryStatus.PLAYED),
        ("wamid.out3", DeliveryStatus.FAILED),
        ("wamid.out4", DeliveryStatus.DELIVERED),
    ]
    failed = statuses[3]
    assert failed.errors[0].code == 131026
    assert failed.errors[0].detail == "The recipient cannot receive this message."
    assert failed.recipient_id == "34600333444"
    assert all(s.account == "mataro" for s in statuses)
    # Merging by rank puts the late "sent" behind the earlier "read".
    assert max((s.status for s in statuses[:2]), key=lambda s: s.rank) is DeliveryStatus.READ


def test_unknown_status_values_are_skipped(channel: WhatsAppChannel) -> None:
    status = {
        "id": "wamid.o",
        "status": "deleted",
        "timestamp": "1774620000",
        "recipient_id": "34600111222",
    }
    result = channel.handle_webhook(whatsapp_post(whatsapp_envelope(statuses=[status])))
    assert (result.status_code, result.events) == (200, ())


def test_batch_of_1000_messages(channel: WhatsAppChannel) -> None:
    messages = [text_message(f"wamid.{i}", f"missatge {i}") for i in range(1000)]
    events = channel.handle_webhook(whatsapp_post(whatsapp_envelope(messages))).events
    assert [e.provider_message_id for e in events] == [f"wamid.{i}" for i in range(1000)]


def test_same_message_id_twice_in_one_batch_gives_one_event(channel: WhatsAppChannel) -> None:
    messages = [
        text_message("wamid.dup", "primer"),
        text_message("wamid.dup", "primer"),
        text_message("wamid.other"),
    ]
    status = {
        "id": "wamid.o",
        "status": "sent",
        "timestamp": "1774620000",
        "recipient_id": "34600111222",
    }
    payload = whatsapp_envelope(messages, statuses=[status, status])
    events = channel.handle_webhook(whatsapp_post(payload)).events
    assert [e.provider_message_id for e in events] == ["wamid.dup", "wamid.other", "wamid.o"]


def test_several_entries_are_routed_to_their_accounts(channel: WhatsAppChannel) -> None:
    first = whatsapp_envelope([text_message("wamid.a")])
    second = whatsapp_envelope(
        [text_message("wamid.b")], phone_number_id=MATARO_010.phone_number_id
    )
    first["entry"].append(second["entry"][0])
    events = channel.handle_webhook(whatsapp_post(first)).events
    assert [(e.provider_message_id, e.account) for e in events] == [
        ("wamid.a", "mataro"),
        ("wamid.b", "mataro-010"),
    ]


def test_another_apps_number_is_not_accepted_with_this_apps_secret(
    channel: WhatsAppChannel,
) -> None:
    payload = whatsapp_envelope(
        [text_message("wamid.a")], phone_number_id=OTHER_APP.phone_number_id
    )
    # Signed with Mataró's app secret: valid signature, but not for Argentona's number.
    assert channel.handle_webhook(whatsapp_post(payload)).events == ()
    (event,) = channel.handle_webhook(whatsapp_post(payload, secret="other-app-secret")).events
    assert event.account == "argentona"


def test_unknown_number_is_skipped_with_200(channel: WhatsAppChannel) -> None:
    payload = whatsapp_envelope([text_message("wamid.a")], phone_number_id="999")
    result = channel.handle_webhook(whatsapp_post(payload))
    assert (result.status_code, result.events) == (200, ())


def test_other_webhook_fields_are_ignored(channel: WhatsAppChannel) -> None:
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "account_update", "value": {"event": "X"}}]}],
    }
    assert channel.handle_webhook(whatsapp_post(payload)).events == ()


def test_message_without_id_is_refused(channel: WhatsAppChannel) -> None:
    message = text_message("wamid.a")
    del message["id"]
    with pytest.raises(PayloadError):
        channel.handle_webhook(whatsapp_post(whatsapp_envelope([message])))


def test_bad_timestamp_is_refused(channel: WhatsAppChannel) -> None:
    message = text_message("wamid.a")
    message["timestamp"] = "yesterday"
    with pytest.raises(PayloadError):
        channel.handle_webhook(whatsapp_post(whatsapp_envelope([message])))
