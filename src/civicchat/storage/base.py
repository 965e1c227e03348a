"""What the rest of civicchat needs from storage: record types and small protocols.

The storage model in one paragraph: a webhook hands its events to :meth:`InboxStore.accept`,
which commits them (a re-delivery is a no-op) before the provider gets its 200. An
:class:`~civicchat.storage.workers.InboxProcessor` claims one event at a time per conversation,
runs the application's handler inside a :class:`Transaction` (conversation state, contacts,
audit...) and, in that SAME transaction, writes the replies to the outbox and marks the event
done. An :class:`~civicchat.storage.workers.OutboxSender` claims outbox rows and sends them.

Every record is a frozen dataclass; every time is zone-aware (UTC when read back).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol, runtime_checkable

from civicchat.messages import DeliveryStatus, InboundMessage, OutboundMessage, StatusUpdate

__all__ = [
    "AcceptResult",
    "Assignment",
    "AssignmentRepository",
    "AuditEntry",
    "AuditLog",
    "BlobStore",
    "Contact",
    "ContactRepository",
    "Conversation",
    "ConversationHistory",
    "ConversationRepository",
    "Download",
    "ErasureResult",
    "EventKind",
    "EventState",
    "Identity",
    "InboxAdmin",
    "InboxEvent",
    "InboxStore",
    "KeywordCount",
    "KeywordStats",
    "LifecycleEntry",
    "MediaRef",
    "MediaRepository",
    "MediaSource",
    "MediaState",
    "MessageRecord",
    "Operator",
    "OperatorRepository",
    "OperatorRole",
    "OutboundChannel",
    "OutboxItem",
    "OutboxStore",
    "Presence",
    "PrivacyStore",
    "RetentionMode",
    "SendLimiter",
    "Transaction",
    "TransactionFactory",
    "conversation_key",
    "event_conversation_key",
]


def conversation_key(channel: str, account: str, sender_id: str) -> str:
    """The key that orders events: one citizen on one account of one channel."""
    return f"{channel}:{account}:{sender_id}"


def event_conversation_key(event: InboundMessage | StatusUpdate) -> str:
    """The ordering key of an inbound event: a message waits for earlier ones of its citizen;
    the statuses of one outbound message are ordered among themselves, never behind a message."""
    if isinstance(event, StatusUpdate):
        return f"status:{event.channel}:{event.account}:{event.provider_message_id}"
    return conversation_key(event.channel, event.account, event.sender.id)


# --------------------------------------------------------------------------- inbox


class EventKind(enum.StrEnum):
    MESSAGE = "message"  # an InboundMessage: goes to the handler
    STATUS = "status"  # a StatusUpdate: updates the stored outbound message


class EventState(enum.StrEnum):
    """Processing state of an inbox event."""

    PENDING = "pending"
    PROCESSING = "processing"  # claimed by a worker whose lease has not expired
    DONE = "done"
    FAILED = "failed"  # the handler raised; retried at ``next_attempt_at``
    PARKED = "parked"  # failed too often; waits for an admin (or a re-delivery)


@dataclass(frozen=True, slots=True)
class InboxEvent:
    """One accepted webhook event.

    ``key`` is the provider message id for a message, ``"<message id>:<status>"`` for a status.
    ``(account, key)`` is unique. ``conversation_key`` orders processing: events with the same
    key are processed one at a time, in the order they were accepted.
    """

    id: int
    kind: EventKind
    channel: str
    account: str
    key: str
    conversation_key: str
    payload: InboundMessage | StatusUpdate
    state: EventState
    attempts: int
    received_at: datetime
    next_attempt_at: datetime
    last_error: str | None = None
    conversation_id: int | None = None


@dataclass(frozen=True, slots=True)
class AcceptResult:
    """What :meth:`InboxStore.accept` did with a batch."""

    accepted: int  # new events
    duplicates: int  # re-deliveries ignored
    revived: int  # re-deliveries of failed/parked events, pending again


@runtime_checkable
class InboxStore(Protocol):
    """The durable inbox, used by webhooks and by inbox workers."""

    async def accept(self, events: Sequence[InboundMessage | StatusUpdate]) -> AcceptResult:
        """Commit ``events`` in one transaction; re-deliveries are no-ops (see the module doc)."""
        ...

    async def claim_event(self, worker_id: str, *, lease_seconds: float) -> InboxEvent | None:
        """Claim the oldest due event of a conversation that has nothing in progress or earlier."""
        ...

    async def fail_event(
        self, event_id: int, worker_id: str, error: str, *, retry_at: datetime | None
    ) -> EventState:
        """Record a failed attempt: retried at ``retry_at``, or parked when it is ``None``."""
        ...


@runtime_checkable
class InboxAdmin(Protocol):
    """What an administrator sees and does about stuck events."""

    async def parked_events(self, account: str | None = None, limit: int = 100) -> list[InboxEvent]:
        """Events that failed too often, oldest first."""
        ...

    async def requeue(self, event_id: int) -> bool:
        """Make a parked or failed event pending again, with its attempts reset."""
        ...

    async def state_counts(self) -> Mapping[EventState, int]:
        """How many events are in each state (for metrics)."""
        ...


# --------------------------------------------------------------------------- outbox


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One outbound message, from the outbox to its final delivery status.

    ``key`` is unique: ``"in:<event id>:<n>"`` for the n-th reply to an inbound event, or a key
    the caller chooses (an operator reply's request id), which makes writing it idempotent.
    """

    id: int
    key: str
    message: OutboundMessage
    status: DeliveryStatus
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None = None  # None once sent or permanently failed
    provider_message_id: str | None = None
    last_error: str | None = None
    inbound_event_id: int | None = None
    conversation_id: int | None = None
    sent_at: datetime | None = None
    status_at: datetime | None = None
    last_inbound_at: datetime | None = None  # the citizen's last message, for 24-hour windows


@runtime_checkable
class OutboxStore(Protocol):
    """Used by outbox senders."""

    async def claim_outbound(
        self, worker_id: str, *, limit: int, lease_seconds: float
    ) -> list[OutboxItem]:
        """Claim up to ``limit`` due messages, oldest first, at most one per recipient."""
        ...

    async def mark_sent(self, item_id: int, worker_id: str, provider_message_id: str) -> bool:
        """Record a successful send (status ``sent`` unless a later status already arrived)."""
        ...

    async def mark_retry(
        self, item_id: int, worker_id: str, error: str, retry_at: datetime
    ) -> bool:
        """Record a transient failure; the message is sent again at ``retry_at``."""
        ...

    async def mark_failed(self, item_id: int, worker_id: str, error: str) -> bool:
        """Record a permanent failure on the message."""
        ...

    async def apply_status(self, update: StatusUpdate) -> bool:
        """Merge a delivery status (highest rank wins, failed always wins); False if unknown."""
        ...


@runtime_checkable
class OutboundChannel(Protocol):
    """The part of a channel the outbox sender needs (``civicchat.channels`` implements it)."""

    async def send(self, message: OutboundMessage, *, last_inbound_at: datetime | None) -> str:
        """Send; return the provider message id or raise :class:`~civicchat.exceptions.SendError`."""
        ...


@runtime_checkable
class SendLimiter(Protocol):
    """A per-account rate limiter (``civicchat.channels.ratelimit`` implements it)."""

    async def acquire(self, recipient: str) -> None:
        """Wait until one more message to ``recipient`` may be sent."""
        ...


# --------------------------------------------------------------------------- contacts


@dataclass(frozen=True, slots=True)
class Contact:
    """A citizen, possibly reachable on several channels."""

    id: int
    name: str | None
    language: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Identity:
    """How a contact is known on one account of one channel (phone number, Telegram chat id...)."""

    contact_id: int
    channel: str
    account: str
    external_id: str


@runtime_checkable
class ContactRepository(Protocol):
    async def identify(
        self,
        channel: str,
        account: str,
        external_id: str,
        *,
        name: str | None = None,
        language: str | None = None,
    ) -> Contact:
        """The contact with this identity, created if new (``name`` fills an empty name)."""
        ...

    async def get(self, contact_id: int) -> Contact | None: ...

    async def update(self, contact: Contact) -> None:
        """Store a changed name or language."""
        ...

    async def identities(self, contact_id: int) -> list[Identity]: ...


# --------------------------------------------------------------------------- conversations


@dataclass(frozen=True, slots=True)
class Conversation:
    """A conversation and the routing fields of ``civicchat.routing.ConversationView``.

    ``state`` is routing's state name (stored as text); ``data`` is free JSON for extensions.
    Change it with :func:`dataclasses.replace` and :meth:`ConversationRepository.save`.
    """

    id: int
    account: str
    channel: str
    contact_id: int
    recipient_id: str  # the citizen's id on the channel, where replies go
    state: str
    created_at: datetime
    language: str | None = None
    assigned_operator: int | None = None
    queued_at: datetime | None = None
    last_inbound_at: datetime | None = None
    last_operator_reply_at: datetime | None = None
    last_ack_period: str | None = None
    last_out_of_hours_period: str | None = None
    priority: int = 0
    team: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    assigned_at: datetime | None = None
    last_operator: int | None = None  # who helped this citizen last (sticky assignment)
    topic: str | None = None


@dataclass(frozen=True, slots=True)
class LifecycleEntry:
    """One state change of a conversation."""

    conversation_id: int
    at: datetime
    actor: str  # "bot", "system", or "operator:<id>"
    from_state: str | None
    to_state: str
    note: str | None = None


@runtime_checkable
class ConversationRepository(Protocol):
    async def get(self, conversation_id: int) -> Conversation | None: ...

    async def latest_for(self, channel: str, account: str, contact_id: int) -> Conversation | None:
        """The most recent conversation of this contact on this account (closed ones included)."""
        ...

    async def create(
        self, *, channel: str, account: str, contact_id: int, recipient_id: str, state: str
    ) -> Conversation: ...

    async def save(self, conversation: Conversation) -> None:
        """Store every field of ``conversation`` (matched by id)."""
        ...

    async def list(
        self, account: str, *, states: Sequence[str] | None = None, limit: int = 100
    ) -> list[Conversation]:
        """Conversations of an account, most recently active first."""
        ...

    async def queue_position(self, conversation: Conversation) -> int | None:
        """1 when ``conversation`` is the next of its account's queue to be served (by time
        queued), 2 after one other...; None when it is not waiting unassigned in the queue."""
        ...


@runtime_checkable
class ConversationHistory(Protocol):
    async def record(self, entry: LifecycleEntry) -> None: ...

    async def entries(self, conversation_id: int) -> list[LifecycleEntry]: ...


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """One message of a conversation as an operator sees it, either direction."""

    direction: str  # "in" or "out"
    at: datetime
    channel: str
    account: str
    provider_message_id: str | None
    content_json: str  # ``content.model_dump_json()``; read with ``content_from_json``
    status: DeliveryStatus | None = None  # outbound only


# --------------------------------------------------------------------------- media


class MediaState(enum.StrEnum):
    PENDING = "pending"
    STORED = "stored"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class MediaRef:
    """Inbound media, and where its bytes are once downloaded."""

    id: int
    channel: str
    account: str
    media_id: str
    state: MediaState
    attempts: int
    created_at: datetime
    event_id: int | None = None
    mime_type: str | None = None
    blob_key: str | None = None
    size: int | None = None
    sha256: str | None = None
    last_error: str | None = None


@runtime_checkable
class MediaRepository(Protocol):
    async def add_media(
        self,
        channel: str,
        account: str,
        media_id: str,
        *,
        mime_type: str | None,
        event_id: int | None,
    ) -> MediaRef:
        """Remember media to download (idempotent per channel, account and media id)."""
        ...

    async def claim_media(
        self, worker_id: str, *, limit: int, lease_seconds: float
    ) -> list[MediaRef]:
        """Due pending downloads."""
        ...

    async def hold_blob(self, blob_key: str) -> None:
        """Until this transaction ends, no other transaction holding ``blob_key`` runs: storing
        a file's bytes and naming them, and deleting bytes that no row names, never interleave
        (identical files share one blob)."""
        ...

    async def media_stored(
        self, media_ref_id: int, *, blob_key: str, size: int, sha256: str, mime_type: str | None
    ) -> None: ...

    async def media_failed(
        self, media_ref_id: int, error: str, *, retry_at: datetime | None
    ) -> None:
        """Record a failed download, retried at ``retry_at`` or given up when ``None``."""
        ...

    async def get_media(self, channel: str, account: str, media_id: str) -> MediaRef | None:
        """The media with this provider id, or None when it was never recorded."""
        ...


class Download(Protocol):
    """A media download in progress (``civicchat.channels.base.MediaDownload`` is one)."""

    mime_type: str

    async def read(self) -> bytes:
        """All the bytes (the size cap given to ``fetch_media`` applies)."""
        ...


@runtime_checkable
class MediaSource(Protocol):
    """The part of a channel the media downloader needs."""

    async def fetch_media(self, account: str, media_id: str, *, max_bytes: int) -> Download: ...


@runtime_checkable
class BlobStore(Protocol):
    """Where media bytes live (a local directory by default; S3-compatible possible)."""

    async def put(self, key: str, data: bytes, *, content_type: str | None = None) -> None: ...

    async def get(self, key: str) -> bytes:
        """The bytes, or :class:`KeyError` when there is no such blob."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the blob; a missing blob is not an error."""
        ...

    async def exists(self, key: str) -> bool:
        """True when a blob is stored under ``key`` (its bytes are not read)."""
        ...


# --------------------------------------------------------------------------- operators


class OperatorRole(enum.StrEnum):
    OPERATOR = "operator"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


class Presence(enum.StrEnum):
    OFFLINE = "offline"
    AVAILABLE = "available"
    AWAY = "away"


@dataclass(frozen=True, slots=True)
class Operator:
    """A person of the citizen-service office."""

    id: int
    account: str
    name: str
    login: str  # unique; an email address or a user name
    password_hash: str  # argon2, never the password
    role: OperatorRole = OperatorRole.OPERATOR
    languages: tuple[str, ...] = ("ca", "es")
    teams: tuple[str, ...] = ()
    capacity: int = 5
    presence: Presence = Presence.OFFLINE
    email: str | None = None


@runtime_checkable
class OperatorRepository(Protocol):
    async def add_operator(
        self,
        *,
        account: str,
        name: str,
        login: str,
        password_hash: str,
        role: OperatorRole = OperatorRole.OPERATOR,
        languages: Sequence[str] = ("ca", "es"),
        teams: Sequence[str] = (),
        capacity: int = 5,
        email: str | None = None,
    ) -> Operator: ...

    async def get_operator(self, operator_id: int) -> Operator | None: ...

    async def by_login(self, login: str) -> Operator | None: ...

    async def operators(self, account: str) -> list[Operator]: ...

    async def save_operator(self, operator: Operator) -> None:
        """Store every field (presence, capacity, teams...)."""
        ...


@dataclass(frozen=True, slots=True)
class Assignment:
    conversation_id: int
    operator_id: int
    assigned_at: datetime
    released_at: datetime | None = None


@runtime_checkable
class AssignmentRepository(Protocol):
    async def assign(self, conversation_id: int, operator_id: int, at: datetime) -> Assignment:
        """Assign (releasing the previous assignment of the conversation, if any)."""
        ...

    async def release(self, conversation_id: int, at: datetime) -> None: ...

    async def open_assignments(self, operator_id: int) -> list[Assignment]: ...


# --------------------------------------------------------------------------- audit and stats


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    account: str | None
    details: Mapping[str, Any] = field(default_factory=dict)
    id: int | None = None


@runtime_checkable
class AuditLog(Protocol):
    async def audit(self, entry: AuditEntry) -> None: ...

    async def audit_entries(
        self, account: str | None = None, *, since: datetime | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        """Most recent first."""
        ...


@dataclass(frozen=True, slots=True)
class KeywordCount:
    account: str
    keyword_id: str
    day: date
    count: int


@runtime_checkable
class KeywordStats(Protocol):
    async def count_keyword(
        self, account: str, keyword_id: str, day: date, by: int = 1
    ) -> None: ...

    async def keyword_counts(self, account: str, since: date, until: date) -> list[KeywordCount]:
        """Counts of days ``since`` to ``until`` inclusive."""
        ...


# --------------------------------------------------------------------------- transactions


@runtime_checkable
class Transaction(Protocol):
    """One database transaction: everything done through it commits or rolls back together.

    The repositories are attributes; the inbox processor passes the transaction to the handler.
    """

    contacts: ContactRepository
    conversations: ConversationRepository
    history: ConversationHistory
    operators: OperatorRepository
    assignments: AssignmentRepository
    audit: AuditLog
    keywords: KeywordStats
    media: MediaRepository

    async def enqueue(
        self,
        messages: Sequence[OutboundMessage],
        *,
        key_prefix: str,
        conversation_id: int | None = None,
        inbound_event_id: int | None = None,
    ) -> list[int]:
        """Write ``messages`` to the outbox as ``<key_prefix>:<n>``; an existing key is kept as is."""
        ...

    async def complete_event(
        self, event_id: int, worker_id: str, *, conversation_id: int | None = None
    ) -> None:
        """Mark a claimed event done; raises StorageError if the worker no longer holds it."""
        ...

    async def conversation_messages(
        self, conversation_id: int, limit: int = 200
    ) -> list[MessageRecord]:
        """Inbound and outbound messages of a conversation, oldest first."""
        ...


@runtime_checkable
class TransactionFactory(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """``async with store.transaction() as tx:`` commits on success, rolls back on error."""
        ...


# --------------------------------------------------------------------------- privacy


class RetentionMode(enum.StrEnum):
    DELETE = "delete"
    ANONYMISE = "anonymise"


@dataclass(frozen=True, slots=True)
class ErasureResult:
    contacts: int
    conversations: int
    messages: int
    media: int
    blob_keys: tuple[str, ...] = ()  # media bytes to delete from the blob store


@runtime_checkable
class PrivacyStore(Protocol):
    async def erase_citizen(self, channel: str, account: str, external_id: str) -> ErasureResult:
        """Delete everything about one citizen (contact, identities, conversations, messages)."""
        ...

    async def export_citizen(self, channel: str, account: str, external_id: str) -> dict[str, Any]:
        """Everything stored about one citizen, as JSON-ready data."""
        ...

    async def apply_retention(
        self, account: str, *, older_than: datetime, mode: RetentionMode
    ) -> int:
        """Delete or anonymise conversations inactive since ``older_than``; returns how many."""
        ...
