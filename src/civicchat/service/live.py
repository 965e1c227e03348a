"""Live events for the console and the web chat, fanned out across processes.

A :class:`LiveBus` carries small :class:`LiveEvent` values ("a message arrived in conversation
42 of account mataro-wa") from whoever changes something to every open console page or web chat
stream, in this process and, with :class:`PostgresLiveBus`, in every other process on the same
PostgreSQL database (``LISTEN``/``NOTIFY``).

Events are notifications, not the data itself: subscribers reload what they show from the store.
A slow subscriber loses the oldest events rather than slowing the publisher down.

Example::

    bus = InProcessLiveBus()
    async with bus.subscribe("mataro-wa") as events:
        await bus.publish(LiveEvent(account="mataro-wa", kind="message_in", conversation_id=42))
        event = await anext(events)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, runtime_checkable

__all__ = [
    "LIVE_KINDS",
    "InProcessLiveBus",
    "LiveBus",
    "LiveEvent",
    "PostgresLiveBus",
    "asyncpg_dsn",
]

logger = logging.getLogger("civicchat.service")

LIVE_KINDS: Final = frozenset(
    {"message_in", "message_out", "status", "conversation", "catalog_changed"}
)
"""The kinds of event the service publishes."""

_QUEUE_SIZE: Final = 256
_NOTIFY_CHANNEL: Final = "civicchat_live"
# PostgreSQL refuses NOTIFY payloads of 8000 bytes or more.
_NOTIFY_MAX: Final = 7900


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """Something changed for one account.

    ``data`` must be JSON-serialisable and hold no secrets (it may cross processes through the
    database).
    """

    account: str
    kind: str  # "message_in" | "message_out" | "status" | "conversation" | "catalog_changed"
    conversation_id: int | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """The event as one JSON object (the wire format between processes)."""
        return json.dumps(
            {
                "account": self.account,
                "kind": self.kind,
                "conversation_id": self.conversation_id,
                "data": dict(self.data),
            },
            ensure_ascii=False,
            separators=(",", ":"),
            default=str,
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> LiveEvent:
        """Parse :meth:`to_json` output; raises ``ValueError`` on anything else."""
        obj = json.loads(raw)
        if not isinstance(obj, dict):
            raise ValueError("a live event is a JSON object")
        account, kind = obj.get("account"), obj.get("kind")
        conversation_id, data = obj.get("conversation_id"), obj.get("data") or {}
        if not isinstance(account, str) or not isinstance(kind, str):
            raise ValueError("a live event needs string 'account' and 'kind'")
        if conversation_id is not None and not isinstance(conversation_id, int):
            raise ValueError("'conversation_id' must be an integer or null")
        if not isinstance(data, dict):
            raise ValueError("'data' must be an object")
        return cls(account=account, kind=kind, conversation_id=conversation_id, data=data)


@runtime_checkable
class LiveBus(Protocol):
    """Publish/subscribe of :class:`LiveEvent` per account."""

    async def publish(self, event: LiveEvent) -> None:
        """Deliver ``event`` to every current subscriber of ``event.account`` (best effort)."""
        ...

    def subscribe(self, account: str) -> AbstractAsyncContextManager[AsyncIterator[LiveEvent]]:
        """``async with bus.subscribe(account) as events: async for event in events: ...``.

        ``account="*"`` receives the events of every account.
        """
        ...


class InProcessLiveBus:
    """A :class:`LiveBus` within one process (the default for a single process on SQLite)."""

    def __init__(self, *, queue_size: int = _QUEUE_SIZE) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self._queue_size = queue_size
        self._subscribers: dict[str, set[asyncio.Queue[LiveEvent]]] = {}

    @property
    def subscriber_count(self) -> int:
        """How many subscriptions are open (for tests and metrics)."""
        return sum(len(qs) for qs in self._subscribers.values())

    async def publish(self, event: LiveEvent) -> None:
        self.deliver(event)

    def deliver(self, event: LiveEvent) -> None:
        """Hand ``event`` to local subscribers without awaiting (never blocks)."""
        for key in (event.account, "*"):
            for queue in tuple(self._subscribers.get(key, ())):
                if queue.full():
                    # A stalled reader loses its oldest event, never blocks the publisher.
                    with contextlib.suppress(asyncio.QueueEmpty):
                        queue.get_nowait()
                queue.put_nowait(event)

    def subscribe(self, account: str) -> AbstractAsyncContextManager[AsyncIterator[LiveEvent]]:
        return self._subscription(account)

    @asynccontextmanager
    async def _subscription(self, account: str) -> AsyncIterator[AsyncIterator[LiveEvent]]:
        queue: asyncio.Queue[LiveEvent] = asyncio.Queue(maxsize=self._queue_size)
        self._subscribers.setdefault(account, set()).add(queue)
        try:
            yield _drain(queue)
        finally:
            subs = self._subscribers.get(account)
            if subs is not None:
                subs.discard(queue)
                if not subs:
                    del self._subscribers[account]


async def _drain(queue: asyncio.Queue[LiveEvent]) -> AsyncIterator[LiveEvent]:
    while True:
        yield await queue.get()


def asyncpg_dsn(url: str) -> str:
    """Turn a SQLAlchemy URL (``postgresql+asyncpg://...``) into a plain asyncpg DSN."""
    for prefix in ("postgresql+asyncpg://", "postgres+asyncpg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    if url.startswith("postgresql://"):
        return url
    raise ValueError(f"not a PostgreSQL URL: {url.split('://', 1)[0]}://...")


class PostgresLiveBus:
    """A :class:`LiveBus` across processes through PostgreSQL ``LISTEN``/``NOTIFY``.

    Every process holds one dedicated connection that listens on one channel; :meth:`publish`
    sends ``NOTIFY`` and the event comes back to every listening process, this one included,
    which hands it to its local subscribers. If the connection drops it is re-opened (events
    published meanwhile are lost: subscribers reload from the store on reconnect anyway).

    Call :meth:`start` before use and :meth:`close` at shutdown::

        bus = PostgresLiveBus("postgresql://civicchat@db/civicchat")
        await bus.start()
    """

    def __init__(self, dsn: str, *, channel: str = _NOTIFY_CHANNEL, retry_delay: float = 1.0):
        self._dsn = asyncpg_dsn(dsn)
        self._channel = channel
        self._retry_delay = retry_delay
        self._local = InProcessLiveBus()
        self._conn: Any = None
        self._lock = asyncio.Lock()
        self._closed = False
        self._watch: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._pending = asyncio.Event()
        self._queue: list[tuple[LiveEvent, str]] = []

    async def start(self) -> None:
        """Open the listening connection (raises if the database cannot be reached)."""
        await self._connect()
        self._watch = asyncio.create_task(self._keep_connected(), name="civicchat-live-listen")
        self._flusher = asyncio.create_task(self._flush_forever(), name="civicchat-live-notify")

    async def close(self) -> None:
        """Stop listening and close the connection."""
        self._closed = True
        for task in (self._flusher, self._watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await conn.close()

    async def publish(self, event: LiveEvent) -> None:
        """Queue ``event`` for the next ``NOTIFY`` batch and return at once.

        Events queued while a batch is being sent go out together in the next one (one
        statement), so publishing never waits for the database.
        """
        payload = event.to_json()
        if len(payload.encode()) > _NOTIFY_MAX:
            # Too big for NOTIFY: send the notification without its data; readers reload.
            payload = LiveEvent(event.account, event.kind, event.conversation_id).to_json()
        self._queue.append((event, payload))
        self._pending.set()

    async def _flush_forever(self) -> None:
        while True:
            await self._pending.wait()
            self._pending.clear()
            batch, self._queue = self._queue, []
            if not batch:
                continue
            try:
                async with self._lock:
                    if self._conn is None or self._conn.is_closed():
                        raise ConnectionError("live bus connection is down")
                    await self._conn.execute(
                        "SELECT pg_notify($1, p) FROM unnest($2::text[]) WITH ORDINALITY AS t(p, n)"
                        " ORDER BY n",
                        self._channel,
                        [payload for _, payload in batch],
                    )
            except Exception as exc:
                # Live updates are best effort; at least this process's subscribers get them.
                logger.warning("live events not sent across processes: %s", type(exc).__name__)
                self._lost.set()
                for event, _ in batch:
                    self._local.deliver(event)

    def subscribe(self, account: str) -> AbstractAsyncContextManager[AsyncIterator[LiveEvent]]:
        return self._local.subscribe(account)

    async def _connect(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self._dsn)
        await conn.add_listener(self._channel, self._on_notify)
        conn.add_termination_listener(lambda _c: self._lost.set())
        self._conn = conn

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            event = LiveEvent.from_json(payload)
        except ValueError:
            logger.warning("ignored a malformed live event on channel %s", self._channel)
            return
        self._local.deliver(event)

    async def _keep_connected(self) -> None:
        while not self._closed:
            await self._lost.wait()
            self._lost.clear()
            while not self._closed:
                try:
                    async with self._lock:
                        old, self._conn = self._conn, None
                        if old is not None and not old.is_closed():
                            with contextlib.suppress(Exception):
                                await old.close()
                        await self._connect()
                    logger.info("live bus reconnected")
                    break
                except Exception as exc:
                    logger.warning("live bus reconnect failed: %s", type(exc).__name__)
                    await asyncio.sleep(self._retry_delay)
