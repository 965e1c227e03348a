"""The database schema (SQLAlchemy 2.0 declarative), shared by SQLite and PostgreSQL.

The tables are changed only through Alembic migrations in ``civicchat/storage/migrations``;
:data:`SCHEMA_REVISION` is the revision this code needs.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "SCHEMA_REVISION",
    "AssignmentRow",
    "AuditRow",
    "Base",
    "ContactRow",
    "ConversationRow",
    "HistoryRow",
    "IdentityRow",
    "InboxRow",
    "KeywordCountRow",
    "MediaRow",
    "OperatorRow",
    "OperatorStatusRow",
    "OutboxRow",
    "UTCDateTime",
]

SCHEMA_REVISION = "0007"

# SQLite only autoincrements INTEGER PRIMARY KEY, PostgreSQL ids outgrow 32 bits.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Zone-aware datetimes, stored as UTC (naive UTC on SQLite, ``timestamptz`` on PostgreSQL)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("storage needs zone-aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


_NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_OPEN_EVENT = "state IN ('pending', 'processing', 'failed')"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=_NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class InboxRow(Base):
    """Accepted webhook events (inbound messages and delivery statuses)."""

    __tablename__ = "inbox_events"
    __table_args__ = (
        UniqueConstraint("channel", "account", "key", name="uq_inbox_events_key"),
        Index(
            "ix_inbox_events_due",
            "id",
            postgresql_where=text(_OPEN_EVENT),
            sqlite_where=text(_OPEN_EVENT),
        ),
        Index(
            "ix_inbox_events_open",
            "conversation_key",
            "id",
            postgresql_where=text(_OPEN_EVENT),
            sqlite_where=text(_OPEN_EVENT),
        ),
        Index("ix_inbox_events_conversation", "conversation_id"),
        Index("ix_inbox_events_sender", "channel", "account", "sender_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(32))
    account: Mapped[str] = mapped_column(String(128))
    key: Mapped[str] = mapped_column(String(255))
    sender_id: Mapped[str] = mapped_column(String(255))
    conversation_key: Mapped[str] = mapped_column(String(512))
    payload: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    received_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    worker_id: Mapped[str | None] = mapped_column(String(128))
    last_error: Mapped[str | None] = mapped_column(Text)
    conversation_id: Mapped[int | None] = mapped_column(Id)
    processed_at: Mapped[datetime | None]


class OutboxRow(Base):
    """Outbound messages, from the outbox to their final delivery status."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("key", name="uq_outbox_key"),
        Index(
            "ix_outbox_queued",
            "channel",
            "account",
            "recipient_id",
            "id",
            postgresql_where=text("status = 'queued'"),
            sqlite_where=text("status = 'queued'"),
        ),
        Index(
            "ix_outbox_due",
            "id",
            postgresql_where=text("status = 'queued'"),
            sqlite_where=text("status = 'queued'"),
        ),
        Index("ix_outbox_provider_id", "channel", "account", "provider_message_id"),
        Index("ix_outbox_conversation", "conversation_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(255))
    inbound_event_id: Mapped[int | None] = mapped_column(Id)
    conversation_id: Mapped[int | None] = mapped_column(Id)
    channel: Mapped[str] = mapped_column(String(32))
    account: Mapped[str] = mapped_column(String(128))
    recipient_id: Mapped[str] = mapped_column(String(255))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    worker_id: Mapped[str | None] = mapped_column(String(128))
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None]
    status_at: Mapped[datetime | None]


class ContactRow(Base):
    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    name: Mapped[str | None] = mapped_column(String(255))
    language: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime]


class IdentityRow(Base):
    __tablename__ = "identities"
    __table_args__ = (
        UniqueConstraint("channel", "account", "external_id", name="uq_identities_external"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    contact_id: Mapped[int] = mapped_column(Id, ForeignKey("contacts.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(32))
    account: Mapped[str] = mapped_column(String(128))
    external_id: Mapped[str] = mapped_column(String(255))


class ConversationRow(Base):
    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_contact", "channel", "account", "contact_id", "id"),
        Index("ix_conversations_account_state", "account", "state"),
        Index("ix_conversations_activity", "last_inbound_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(String(128))
    channel: Mapped[str] = mapped_column(String(32))
    contact_id: Mapped[int | None] = mapped_column(
        Id, ForeignKey("contacts.id", ondelete="SET NULL")
    )
    recipient_id: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime]
    language: Mapped[str | None] = mapped_column(String(16))
    assigned_operator: Mapped[int | None] = mapped_column(Id)
    queued_at: Mapped[datetime | None]
    last_inbound_at: Mapped[datetime | None]
    last_operator_reply_at: Mapped[datetime | None]
    last_ack_period: Mapped[str | None] = mapped_column(String(64))
    last_out_of_hours_period: Mapped[str | None] = mapped_column(String(64))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    team: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # 0002: the rest of routing's ConversationView
    assigned_at: Mapped[datetime | None]
    last_operator: Mapped[int | None] = mapped_column(Id)
    topic: Mapped[str | None] = mapped_column(String(128))


class HistoryRow(Base):
    __tablename__ = "conversation_history"
    __table_args__ = (Index("ix_conversation_history_conversation", "conversation_id", "id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(
        Id, ForeignKey("conversations.id", ondelete="CASCADE")
    )
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(128))
    from_state: Mapped[str | None] = mapped_column(String(32))
    to_state: Mapped[str] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)


class MediaRow(Base):
    __tablename__ = "media_refs"
    __table_args__ = (
        UniqueConstraint("channel", "account", "media_id", name="uq_media_refs_media"),
        Index("ix_media_refs_due", "state", "next_attempt_at"),
        Index("ix_media_refs_event", "event_id"),
        # Erasure and retention ask whether a file is still named; retention's leftovers by age
        # (migration 0007).
        Index("ix_media_refs_blob_key", "blob_key"),
        Index("ix_media_refs_account_created", "account", "created_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(32))
    account: Mapped[str] = mapped_column(String(128))
    media_id: Mapped[str] = mapped_column(String(512))
    event_id: Mapped[int | None] = mapped_column(Id)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    worker_id: Mapped[str | None] = mapped_column(String(128))
    mime_type: Mapped[str | None] = mapped_column(String(255))
    blob_key: Mapped[str | None] = mapped_column(String(512))
    size: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)


class OperatorRow(Base):
    __tablename__ = "operators"
    __table_args__ = (
        UniqueConstraint("login", name="uq_operators_login"),
        Index("ix_operators_account", "account"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(255))
    login: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(255))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    languages: Mapped[str] = mapped_column(String(255))  # comma-separated language codes
    teams: Mapped[str] = mapped_column(Text)  # comma-separated team names
    capacity: Mapped[int] = mapped_column(Integer)
    presence: Mapped[str] = mapped_column(String(16))


class AssignmentRow(Base):
    __tablename__ = "assignments"
    __table_args__ = (
        Index("ix_assignments_conversation", "conversation_id", "released_at"),
        Index("ix_assignments_operator", "operator_id", "released_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(
        Id, ForeignKey("conversations.id", ondelete="CASCADE")
    )
    operator_id: Mapped[int] = mapped_column(Id, ForeignKey("operators.id", ondelete="CASCADE"))
    assigned_at: Mapped[datetime]
    released_at: Mapped[datetime | None]


class AuditRow(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_account_at", "account", "at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    account: Mapped[str | None] = mapped_column(String(128))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class KeywordCountRow(Base):
    __tablename__ = "keyword_counts"

    account: Mapped[str] = mapped_column(String(128), primary_key=True)
    keyword_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    # A count is the sum over its shards: concurrent transactions write different rows
    # (migration 0006) instead of queueing on one.
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True, server_default="0")
    count: Mapped[int] = mapped_column(Integer, default=0)


# -- cases (complaints and street incidents, ``civicchat.cases``; migration 0003) -------------


class CaseSequenceRow(Base):
    """The last reference number handed out per (prefix, year): never reused, even after delete."""

    __tablename__ = "case_sequences"

    prefix: Mapped[str] = mapped_column(String(8), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    last: Mapped[int] = mapped_column(Integer)


class CaseRow(Base):
    """A case; ``data`` holds the whole :class:`civicchat.cases.Case` as JSON text."""

    __tablename__ = "cases"
    __table_args__ = (
        UniqueConstraint("reference", name="uq_cases_reference"),
        Index("ix_cases_account_created", "account", "created_at"),
        Index("ix_cases_status", "status", "updated_at"),
        Index("ix_cases_open311_due", "open311_next_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    reference: Mapped[str] = mapped_column(String(32))
    account: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(64))
    department: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    anonymised_at: Mapped[datetime | None]
    open311_next_at: Mapped[datetime | None]
    data: Mapped[str] = mapped_column(Text)


# -- console login failures, shared by every process (migration 0004) -----------------------


class LoginFailureRow(Base):
    """One failed console login, counted per login name and per client address.

    ``key`` is a digest of ``login:<name>`` or ``address:<ip>``, never the name or address
    itself; rows older than the limiter's window are deleted as new failures arrive.
    """

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_key_at", "key", "at"),
        Index("ix_login_failures_at", "at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]


# -- operators: last sign of life and disabling (migration 0005) -----------------------------


class OperatorStatusRow(Base):
    """What the console knows of an operator beyond the ``operators`` row.

    ``seen_at`` is the last sign of life from their console (a page, the live stream): the
    dispatcher stops assigning to an operator shown available who has not been seen for a
    while. ``disabled_at`` is set when an admin disabled them (cannot log in, never assigned;
    the history keeps their id). No row: never seen since this table exists.
    """

    __tablename__ = "operator_status"

    operator_id: Mapped[int] = mapped_column(
        Id, ForeignKey("operators.id", ondelete="CASCADE"), primary_key=True
    )
    seen_at: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]
