"""The workers that move events through the inbox and messages through the outbox.

:class:`InboxProcessor` claims inbox events and runs the application's handler; the handler's
replies are written to the outbox in the same transaction that marks the event done, so a crash
and retry can never produce two different replies to one inbound message. :class:`OutboxSender`
claims outbox rows and sends them through the channels.

Both have ``run_once()`` (for tests and cron-style use) and ``run_forever()``, which returns
soon after ``stop()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from civicchat.clock import Clock, SystemClock
from civicchat.exceptions import SendError, StorageError, ThrottledError
from civicchat.messages import InboundMessage, Media, OutboundMessage, StatusUpdate
from civicchat.storage.base import (
    EventKind,
    InboxEvent,
    OutboundChannel,
    OutboxItem,
    SendLimiter,
    Transaction,
)
from civicchat.storage.repositories import PendingReply, SqlTransaction
from civicchat.storage.signal import WorkSignal
from civicchat.storage.sql import LeaseLostError, SqlStore

__all__ = [
    "Handler",
    "InboxProcessor",
    "OutboxSender",
    "Pacer",
    "Reply",
    "backoff",
    "worker_name",
]

_log = logging.getLogger("civicchat.storage")


@dataclass(frozen=True, slots=True)
class Reply:
    """What a handler returns when it also knows the conversation the event belongs to."""

    messages: Sequence[OutboundMessage] = ()
    conversation_id: int | None = None


Handler = Callable[[InboxEvent, Transaction], Awaitable[Reply | Sequence[OutboundMessage]]]
"""``async handler(event, tx)``: read and write state through ``tx``, return the replies.

Only message events (``event.kind is EventKind.MESSAGE``) reach the handler. It runs inside the
transaction: keep slow I/O out of it (on SQLite it holds the single write lock).
"""


class Pacer(Protocol):
    """Decides when a worker may start its next round: ``await pacer.turn()`` returns when it may.

    The service's :class:`~civicchat.service.webhooks.IngressGate` makes the workers of a
    process step aside while its webhooks queue up. A pacer must return within a bounded time:
    a worker waiting for its turn does no work.
    """

    async def turn(self) -> None: ...


def worker_name(prefix: str) -> str:
    """A worker id unique across hosts, processes and restarts."""
    return f"{prefix}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def backoff(
    attempt: int, *, base: float = 2.0, cap: float = 600.0, rng: random.Random | None = None
) -> float:
    """Seconds to wait before attempt ``attempt + 1``: exponential, capped, with jitter.

    The jitter is "equal jitter" (between half and all of the exponential delay), so retries of
    many messages that failed together spread out without ever retrying immediately.
    """
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    jitter = rng.random() if rng is not None else random.random()
    return float(delay * (0.5 + jitter / 2))


class _Loop:
    def __init__(
        self,
        idle_seconds: float,
        signal: WorkSignal | None = None,
        *,
        poll: bool = True,
        pacer: Pacer | None = None,
    ) -> None:
        self._stop = asyncio.Event()
        self._idle = idle_seconds
        self._signal = signal
        self._pacer = pacer
        # Without a signal a worker can only poll. With one, a pool needs a single poller (for
        # work no signal announces: retries coming due, a lost notification); the others sleep
        # until woken, instead of every idle worker claiming nothing ``1 / idle_seconds`` times a
        # second.
        self._poll = poll or signal is None

    def stop(self) -> None:
        """Ask ``run_forever`` to return after the current item."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def run_once(self) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    async def run_forever(self) -> None:
        """Work until :meth:`stop` is called; when there is nothing to do, sleeps
        ``idle_seconds`` or until the store signals new work written by this process. With a
        ``pacer``, each round first waits for :meth:`Pacer.turn`."""
        while not self._stop.is_set():
            if self._pacer is not None:
                await self._pacer.turn()
                if self._stop.is_set():
                    break
            if self._signal is not None:
                self._signal.clear()  # before looking: work written from now on wakes us
            try:
                busy = await self.run_once()
            except Exception:  # a database hiccup must not kill the worker
                _log.exception("%s: unexpected error, pausing", type(self).__name__)
                await self._idle_wait(None)
                continue
            if not busy:
                await self._idle_wait(self._signal)

    def _more(self, claimed: int, limit: int) -> None:
        """A full batch suggests more work: wake another idle worker to look for it."""
        if claimed >= limit and self._signal is not None:
            self._signal.set()

    async def _idle_wait(self, signal: WorkSignal | None) -> None:
        waits: list[asyncio.Future[bool]] = [asyncio.ensure_future(self._stop.wait())]
        if signal is not None:
            waits.append(asyncio.ensure_future(signal.wait()))
        timeout = self._idle if self._poll or signal is None else None
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()


class InboxProcessor(_Loop):
    """Processes inbox events one at a time per conversation, in the order they were accepted.

    Each round claims up to ``batch_size`` events (the heads of as many conversations; the
    service uses 16) and handles their messages in one transaction; when one of them fails, the batch is rolled back
    and each event is handled again in its own transaction, so a failing event delays the others
    but never blocks them (a handler may thus run twice for one event: it must keep its
    effects inside the transaction). A handler error is retried with :func:`backoff`; after
    ``max_attempts`` the event is parked (see :meth:`SqlStore.parked_events`). A delivery status
    updates the stored outbound message; a status for a message not yet recorded as sent is
    retried a few times, then dropped.

    Subclasses observe commits through :meth:`after_commit` and rollbacks through
    :meth:`after_rollback` (public hooks: override them, not the private methods).
    """

    def __init__(
        self,
        store: SqlStore,
        handler: Handler,
        clock: Clock | None = None,
        *,
        worker_id: str | None = None,
        lease_seconds: float = 120.0,
        max_attempts: int = 5,
        backoff_base: float = 2.0,
        backoff_cap: float = 600.0,
        status_attempts: int = 5,
        idle_seconds: float = 0.2,
        batch_size: int = 1,
        rng: random.Random | None = None,
        poll: bool = True,
        pacer: Pacer | None = None,
    ) -> None:
        super().__init__(idle_seconds, getattr(store, "inbox_signal", None), poll=poll, pacer=pacer)
        self.store = store
        self.handler = handler
        self.clock: Clock = clock or store.clock or SystemClock()
        self.worker_id = worker_id or worker_name("inbox")
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.status_attempts = status_attempts
        self.batch_size = max(1, batch_size)
        self._rng = rng or random.Random()

    async def after_commit(self, events: Sequence[InboxEvent]) -> None:
        """Called after a transaction that completed ``events`` committed (messages handled,
        or delivery statuses applied). The default does nothing."""

    def after_rollback(self, events: Sequence[InboxEvent]) -> None:
        """Called when handling ``events`` was rolled back (they will be retried or handled
        again one by one): forget anything gathered for them. The default does nothing."""

    async def run_once(self) -> bool:
        """Claim and process a batch of events; False when nothing was due."""
        events = await self.store.claim_events(
            self.worker_id, limit=self.batch_size, lease_seconds=self.lease_seconds
        )
        if not events:
            return False
        self._more(len(events), self.batch_size)
        messages = [e for e in events if e.kind is not EventKind.STATUS]
        try:
            for event in events:
                if event.kind is EventKind.STATUS:
                    await self._status(event)
            if len(messages) == 1:
                await self._message(messages[0])
            elif messages and not await self._batch(messages):
                for event in messages:
                    await self._message(event)
        except asyncio.CancelledError:
            # Shut down mid-batch: hand back what is still ours now, not after the lease.
            for event in events:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.store.release_event(event.id, self.worker_id))
            raise
        return True

    async def _handle(self, event: InboxEvent, tx: Transaction) -> Reply:
        assert isinstance(event.payload, InboundMessage)
        message = event.payload
        content = message.content
        if isinstance(content, Media) and content.media_id:
            await tx.media.add_media(
                message.channel,
                message.account,
                content.media_id,
                mime_type=content.mime_type,
                event_id=event.id,
            )
        result = await self.handler(event, tx)
        return result if isinstance(result, Reply) else Reply(tuple(result))

    async def _handle_all(self, events: Sequence[InboxEvent], tx: SqlTransaction) -> list[Reply]:
        """Run the handler on each event, then write all their replies and mark them all done
        (one statement each on PostgreSQL, whatever the number of events).

        The handlers run in a unit of work (:meth:`SqlTransaction.unit_of_work`): the senders'
        contacts and latest conversations are read first for the whole batch, and the
        conversation saves written together at the end (PostgreSQL: one statement each)."""
        senders = [
            (e.payload.channel, e.payload.account, e.payload.sender.id)
            for e in events
            if isinstance(e.payload, InboundMessage)
        ]
        async with tx.unit_of_work(senders):
            replies = [await self._handle(event, tx) for event in events]
        await tx.enqueue_many(
            [
                PendingReply(r.messages, f"in:{e.id}", r.conversation_id, e.id)
                for e, r in zip(events, replies, strict=True)
            ]
        )
        await tx.complete_events(
            self.worker_id,
            [(e.id, r.conversation_id) for e, r in zip(events, replies, strict=True)],
        )
        return replies

    async def _batch(self, events: Sequence[InboxEvent]) -> bool:
        """Handle ``events`` in one transaction; False (rolled back) when any of them failed."""
        try:
            async with self.store.transaction() as tx:
                await self._handle_all(events, tx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.after_rollback(events)
            _log.debug("batch of %d rolled back (%s)", len(events), type(exc).__name__)
            return False
        _log.debug("events %d..%d done", events[0].id, events[-1].id)
        await self.after_commit(events)
        return True

    async def _message(self, event: InboxEvent) -> None:
        try:
            async with self.store.transaction() as tx:
                (reply,) = await self._handle_all([event], tx)
        except LeaseLostError:
            self.after_rollback([event])
            _log.warning("event %d was taken over by another worker; dropped our result", event.id)
        except asyncio.CancelledError:
            self.after_rollback([event])
            raise
        except Exception as exc:
            self.after_rollback([event])
            await self._failed(event, exc)
        else:
            _log.debug("event %d done, %d reply(ies)", event.id, len(reply.messages))
            await self.after_commit([event])

    async def _failed(self, event: InboxEvent, exc: Exception) -> None:
        park = event.attempts >= self.max_attempts
        retry_at = None
        if not park:
            delay = backoff(
                event.attempts, base=self.backoff_base, cap=self.backoff_cap, rng=self._rng
            )
            retry_at = self.clock.now() + timedelta(seconds=delay)
        try:
            state = await self.store.fail_event(
                event.id, self.worker_id, f"{type(exc).__name__}: {exc}", retry_at=retry_at
            )
        except LeaseLostError:
            return
        # The exception text may quote the citizen: only its type goes to the log.
        _log.warning(
            "event %d failed (attempt %d, %s): %s",
            event.id,
            event.attempts,
            state.value,
            type(exc).__name__,
            exc_info=_log.isEnabledFor(logging.DEBUG),
        )

    async def _status(self, event: InboxEvent) -> None:
        assert isinstance(event.payload, StatusUpdate)
        found = await self.store.apply_status(event.payload)
        if not found and event.attempts < self.status_attempts:
            # The send may not be recorded yet (the status webhook raced the send's response).
            retry_at = self.clock.now() + timedelta(seconds=backoff(event.attempts, base=1.0))
            with contextlib.suppress(LeaseLostError):
                await self.store.fail_event(
                    event.id, self.worker_id, "unknown message id", retry_at=retry_at
                )
            return
        try:
            async with self.store.transaction() as tx:
                await tx.complete_event(event.id, self.worker_id)
        except LeaseLostError:
            return
        await self.after_commit([event])


class _SentRecorder:
    """Group commit of successful sends: each is recorded as soon as it completes, together
    with the others that completed while the previous commit was running."""

    def __init__(self, store: SqlStore, worker_id: str) -> None:
        self._store = store
        self._worker_id = worker_id
        self._pending: list[tuple[int, str, asyncio.Future[bool]]] = []
        self._lock = asyncio.Lock()

    async def record(self, item_id: int, provider_id: str) -> bool:
        """True once the send is committed; False when the claim was lost meanwhile."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((item_id, provider_id, future))
        async with self._lock:
            if not future.done():
                batch, self._pending = self._pending, []
                try:
                    kept = await self._store.mark_sent_many(
                        self._worker_id, [(i, p) for i, p, _ in batch]
                    )
                except BaseException as exc:
                    for _, _, f in batch:
                        if f is not future and not f.done():
                            f.set_exception(exc if isinstance(exc, Exception) else StorageError())
                    raise
                for i, _, f in batch:
                    if not f.done():
                        f.set_result(i in kept)
        return await future


class OutboxSender(_Loop):
    """Sends outbox messages through ``channels[(channel, account)]``.

    Each send first waits for the account's limiter (``limiters[(channel, account)]``, if any).
    A retryable :class:`~civicchat.exceptions.SendError` is retried after ``retry_after`` or
    :func:`backoff`, up to ``max_attempts``; any other failure is recorded on the message.

    Each round claims up to ``batch_size`` messages (one per recipient), sends them
    concurrently and records the successful sends in one transaction; :meth:`after_send` is
    called for each of those after that commit (a public hook for subclasses).
    """

    def __init__(
        self,
        store: SqlStore,
        channels: Mapping[tuple[str, str], OutboundChannel],
        clock: Clock | None = None,
        *,
        limiters: Mapping[tuple[str, str], SendLimiter] | None = None,
        worker_id: str | None = None,
        batch_size: int = 20,
        lease_seconds: float = 120.0,
        max_attempts: int = 8,
        backoff_base: float = 2.0,
        backoff_cap: float = 900.0,
        idle_seconds: float = 0.2,
        rng: random.Random | None = None,
        poll: bool = True,
        pacer: Pacer | None = None,
    ) -> None:
        super().__init__(
            idle_seconds, getattr(store, "outbox_signal", None), poll=poll, pacer=pacer
        )
        self.store = store
        self.channels = channels
        self.limiters = limiters or {}
        self.clock: Clock = clock or store.clock or SystemClock()
        self.worker_id = worker_id or worker_name("outbox")
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._rng = rng or random.Random()
        self._recorder = _SentRecorder(store, self.worker_id)

    async def after_send(self, item: OutboxItem, provider_message_id: str) -> None:
        """Called once ``item`` is recorded as sent. The default does nothing."""

    async def run_once(self) -> bool:
        """Claim a batch (one message per recipient) and send it; False when nothing was due."""
        items = await self.store.claim_outbound(
            self.worker_id, limit=self.batch_size, lease_seconds=self.lease_seconds
        )
        if not items:
            return False
        self._more(len(items), self.batch_size)
        await asyncio.gather(*(self._send_and_record(item) for item in items))
        return True

    async def _send_and_record(self, item: OutboxItem) -> None:
        provider_id = await self._send(item)
        if provider_id is None:
            return
        if not await self._recorder.record(item.id, provider_id):
            _log.warning("outbox %d: sent, but our claim had expired", item.id)
            return
        try:
            await self.after_send(item, provider_id)
        except Exception:
            _log.exception("outbox %d: after_send failed", item.id)

    async def _send(self, item: OutboxItem) -> str | None:
        """Send one message; its provider id, or None when the failure was recorded."""
        message = item.message
        route = (message.channel, message.account)
        channel = self.channels.get(route)
        if channel is None:
            await self.store.mark_failed(
                item.id, self.worker_id, f"no channel configured for {route[0]}/{route[1]}"
            )
            _log.error("outbox %d: no channel for %s/%s", item.id, *route)
            return None
        limiter = self.limiters.get(route)
        try:
            if limiter is not None:
                await limiter.acquire(message.recipient_id)
            return await channel.send(message, last_inbound_at=item.last_inbound_at)
        except SendError as exc:
            pause = getattr(limiter, "pause", None)
            if isinstance(exc, ThrottledError) and callable(pause):
                pause(exc.retry_after or 1.0)  # the provider says the whole account must wait
            await self._send_failed(item, exc, exc.retryable, exc.retry_after)
        except Exception as exc:  # an unwrapped network error: assume it is transient
            await self._send_failed(item, exc, True, None)
        return None

    async def _send_failed(
        self, item: OutboxItem, exc: Exception, retryable: bool, retry_after: float | None
    ) -> None:
        error = f"{type(exc).__name__}: {exc}"
        if retryable and item.attempts < self.max_attempts:
            delay = retry_after if retry_after is not None else self._delay(item.attempts)
            retry_at: datetime = self.clock.now() + timedelta(seconds=max(0.0, delay))
            await self.store.mark_retry(item.id, self.worker_id, error, retry_at)
            _log.info("outbox %d: %s, retry in %.1fs", item.id, type(exc).__name__, max(0.0, delay))
        else:
            await self.store.mark_failed(item.id, self.worker_id, error)
            _log.warning("outbox %d failed for good: %s", item.id, type(exc).__name__)

    def _delay(self, attempt: int) -> float:
        return backoff(attempt, base=self.backoff_base, cap=self.backoff_cap, rng=self._rng)
