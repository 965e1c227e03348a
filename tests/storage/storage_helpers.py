"""Builders shared by the storage tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from civicchat.messages import (
    DeliveryStatus,
    InboundMessage,
    OutboundMessage,
    Sender,
    StatusUpdate,
    Text,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def inbound(
    n: int, sender: str = "34600000001", *, account: str = "acc1", channel: str = "whatsapp"
) -> InboundMessage:
    return InboundMessage(
        channel=channel,
        account=account,
        provider_message_id=f"wamid.{sender}.{n}",
        sender=Sender(id=sender, name="Maria"),
        timestamp=T0 + timedelta(seconds=n),
        content=Text(body=f"missatge {n}"),
    )


def reply_to(msg: InboundMessage, body: str) -> OutboundMessage:
    return OutboundMessage(
        channel=msg.channel,
        account=msg.account,
        recipient_id=msg.sender.id,
        content=Text(body=body),
        reply_to=msg.provider_message_id,
    )


def status(
    provider_id: str,
    st: DeliveryStatus,
    *,
    recipient: str = "34600000001",
    account: str = "acc1",
    at: datetime = T0,
) -> StatusUpdate:
    return StatusUpdate(
        channel="whatsapp",
        account=account,
        provider_message_id=provider_id,
        recipient_id=recipient,
        status=st,
        timestamp=at,
    )


async def conversation_of(tx, msg: InboundMessage, name: str | None = None):  # type: ignore[no-untyped-def]
    """The sender's latest conversation on the message's account, opened ("bot") if none."""
    contact = await tx.contacts.identify(msg.channel, msg.account, msg.sender.id, name=name)
    conv = await tx.conversations.latest_for(msg.channel, msg.account, contact.id)
    if conv is None:
        conv = await tx.conversations.create(
            channel=msg.channel,
            account=msg.account,
            contact_id=contact.id,
            recipient_id=msg.sender.id,
            state="bot",
        )
    return conv
