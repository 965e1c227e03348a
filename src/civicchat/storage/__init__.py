"""Storage: SQLite by default, PostgreSQL in production, a durable inbox and outbox.

::

    store = await open_store("civicchat.db")        # after `civicchat db upgrade --url civicchat.db`
    await store.accept(events)                      # in the webhook, before answering 200
    InboxProcessor(store, handler).run_forever()    # replies written with the decision
    OutboxSender(store, channels).run_forever()     # sends, retries, records failures

See ``docs/storage.md``. Protocols and records are in :mod:`civicchat.storage.base`.
"""

from __future__ import annotations

from civicchat.storage.base import (
    AcceptResult,
    Contact,
    Conversation,
    EventKind,
    EventState,
    InboxEvent,
    LifecycleEntry,
    OutboxItem,
    RetentionMode,
    Transaction,
)
from civicchat.storage.engine import check_schema, create_engine, upgrade
from civicchat.storage.media import LocalBlobStore, MediaDownloader
from civicchat.storage.privacy import Privacy, RetentionPolicy, mask_phone
from civicchat.storage.sql import LeaseLostError, SqlStore, open_store
from civicchat.storage.workers import InboxProcessor, OutboxSender, Reply, backoff

__all__ = [
    "AcceptResult",
    "Contact",
    "Conversation",
    "EventKind",
    "EventState",
    "InboxEvent",
    "InboxProcessor",
    "LeaseLostError",
    "LifecycleEntry",
    "LocalBlobStore",
    "MediaDownloader",
    "OutboxItem",
    "OutboxSender",
    "Privacy",
    "Reply",
    "RetentionMode",
    "RetentionPolicy",
    "SqlStore",
    "Transaction",
    "backoff",
    "check_schema",
    "create_engine",
    "mask_phone",
    "open_store",
    "upgrade",
]
