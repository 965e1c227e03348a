"""Webhooks: ``/webhooks/{channel}/{account}`` for WhatsApp, Telegram and the web chat.

The body is read up to the configured size (413 beyond), handed to the account's channel as
raw bytes (signature checked there: 401/403 with nothing stored; malformed: 400), the events are
committed to the durable inbox, and only then does the provider get the channel's answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from civicchat.bot import BotAccount
from civicchat.channels.base import Event, WebhookRequest
from civicchat.exceptions import StorageError, WebhookError
from civicchat.service.metrics import ServiceMetrics
from civicchat.storage.base import event_conversation_key
from civicchat.storage.sql import SqlStore

__all__ = [
    "BodyTooLarge",
    "InboxBatcher",
    "IngressGate",
    "WebhookContext",
    "WebhookEndpoint",
    "WindowLimiter",
    "read_body",
]

logger = logging.getLogger("civicchat.service")


class BodyTooLarge(Exception):
    """The request body is over the limit."""


class IngressGate:
    """Webhooks first: the workers of a busy process wait their turn (a :class:`Pacer`).

    The webhook endpoint counts the webhooks it is answering (:meth:`enter`, :meth:`leave`).
    While ``busy_at`` or more are in flight, a worker of the same process that asks for its next
    round (:meth:`turn`) waits until fewer are, or at most ``max_wait`` seconds. The providers
    then get their answers at the rate the process can commit them, and the inbox keeps what
    the workers have not handled yet, as it does for any backlog. A flood thus slows the
    replies without stopping them: each worker still takes a round every ``max_wait`` seconds.

    This is, inside one process, what ``nice`` does for separate worker processes
    (docs/deployment.md). ``busy_at=0`` turns it off. At 200 webhooks a second a process has
    2-6 in flight, so the default of 16 only acts when webhooks queue up.

    :class:`~civicchat.storage.workers.Pacer` is the protocol; ``deferred`` counts the rounds
    that waited.
    """

    def __init__(self, busy_at: int = 16, *, max_wait: float = 0.2) -> None:
        if busy_at < 0 or max_wait <= 0:
            raise ValueError("busy_at must be >= 0 and max_wait > 0")
        self.busy_at = busy_at
        self.max_wait = max_wait
        self.in_flight = 0
        self.deferred = 0
        self._calm = asyncio.Event()
        self._calm.set()

    @property
    def busy(self) -> bool:
        return not self._calm.is_set()

    def enter(self) -> None:
        """A webhook arrived."""
        self.in_flight += 1
        if self.in_flight >= self.busy_at > 0:
            self._calm.clear()

    def leave(self) -> None:
        """A webhook was answered (or failed)."""
        self.in_flight -= 1
        if self.in_flight < self.busy_at:
            self._calm.set()

    async def turn(self) -> None:
        if self._calm.is_set():
            return
        self.deferred += 1
        try:
            async with asyncio.timeout(self.max_wait):
                await self._calm.wait()
        except TimeoutError:
            pass


class WindowLimiter:
    """At most ``limit`` hits per ``per`` seconds for each key (a client address); never waits.

    The web chat's endpoint is public: this keeps one client from filling the inbox.
    """

    def __init__(
        self,
        limit: int,
        per: float = 60.0,
        *,
        max_keys: int = 10_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or per <= 0:
            raise ValueError("WindowLimiter needs limit >= 1 and per > 0")
        self.limit = limit
        self.per = per
        self.max_keys = max_keys
        self._monotonic = monotonic
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def allow(self, key: str) -> bool:
        """Count a hit for ``key``; False when it is over the limit."""
        now = self._monotonic()
        hits = self._hits.get(key)
        if hits is None:
            hits = self._hits[key] = deque()
            while len(self._hits) > self.max_keys:
                self._hits.popitem(last=False)
        self._hits.move_to_end(key)
        while hits and hits[0] <= now - self.per:
            hits.popleft()
        if len(hits) >= self.limit:
            return False
        hits.append(now)
        return True


class _Waiting:
    """One webhook's events waiting for a commit."""

    __slots__ = ("events", "future", "keys")

    def __init__(self, events: Sequence[Event], future: asyncio.Future[None]) -> None:
        self.events = events
        self.future = future
        self.keys = {event_conversation_key(e) for e in events}


class InboxBatcher:
    """Group commit: webhooks arriving while commits are running share the next one.

    Each caller still gets its answer only after the transaction holding its events committed;
    under load one ``BEGIN ... COMMIT`` serves many webhooks instead of one each. Up to
    ``max_commits`` commits run at once, each on its own connection: a commit waits for the
    database's flush to disk (several milliseconds on PostgreSQL), and with one at a time the
    webhooks queued behind it while the processor idled (``benchmarks/pipeline.py``). Events
    of one conversation keep their order: while a commit holding a conversation runs, later
    events of that conversation wait for the next commit after it.
    """

    def __init__(
        self,
        store: SqlStore,
        metrics: ServiceMetrics,
        *,
        max_batch: int = 500,
        max_commits: int = 1,
    ) -> None:
        if max_batch < 1 or max_commits < 1:
            raise ValueError("InboxBatcher needs max_batch >= 1 and max_commits >= 1")
        self.store = store
        self.metrics = metrics
        self.max_batch = max_batch
        self.max_commits = max_commits
        self._pending: deque[_Waiting] = deque()
        self._busy: Counter[str] = Counter()  # conversation key -> commits running with it
        self._running = 0
        self._overflow = False  # the last batch stopped at max_batch with events left
        self._tasks: set[asyncio.Task[None]] = set()

    async def accept(self, events: Sequence[Event]) -> None:
        """Return once ``events`` are committed; raises what the commit raised."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Waiting(events, future))
        self._start()
        # A caller cancelled cancels only its wait: the commit runs in the batcher's task.
        await future

    def _start(self) -> None:
        if self._pending and self._running < self.max_commits:
            self._running += 1
            task = asyncio.create_task(self._drain())
            self._tasks.add(task)  # a reference until it ends (the loop keeps only weak ones)
            task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[_Waiting]:
        """The next batch, in arrival order, without the conversations of running commits (nor
        anything after a skipped event of the same conversation)."""
        batch: list[_Waiting] = []
        skipped: deque[_Waiting] = deque()
        blocked: set[str] = set()
        pending = self._pending
        size = 0
        while pending and size < self.max_batch:
            waiting = pending.popleft()
            if self._busy.keys().isdisjoint(waiting.keys) and blocked.isdisjoint(waiting.keys):
                batch.append(waiting)
                size += len(waiting.events)
            else:
                blocked.update(waiting.keys)
                skipped.append(waiting)
        self._overflow = size >= self.max_batch and bool(pending)
        if skipped:
            skipped.extend(pending)
            self._pending = skipped
        for waiting in batch:
            self._busy.update(waiting.keys)
        return batch

    async def _drain(self) -> None:
        # Ends when nothing can go: what waits for a running commit's conversation is taken by
        # that commit's task, which loops here once its keys are released.
        busy = self._busy
        try:
            while batch := self._take():
                if self._overflow:
                    self._start()  # a backlog over max_batch: another commit may run beside it
                try:
                    await self._commit(batch)
                finally:
                    for waiting in batch:
                        for key in waiting.keys:
                            if busy[key] > 1:
                                busy[key] -= 1
                            else:
                                del busy[key]
        except BaseException:
            # Cancelled (the loop shutting down): no caller may wait forever for a task that is
            # gone. Others running take what waits; the last one tells the waiting callers.
            if self._running == 1:
                while self._pending:
                    self._pending.popleft().future.cancel()
            raise
        finally:
            self._running -= 1

    async def _commit(self, batch: list[_Waiting]) -> None:
        events = [event for waiting in batch for event in waiting.events]
        try:
            result = await self.store.accept(events)
        except Exception as exc:
            # One ERROR line for the commit, not one per webhook it held: each caller gets the
            # exception and answers "try again".
            channels = sorted({event.channel for event in events})
            logger.error(
                "inbox commit of %d event(s) (%s) failed", len(events), ", ".join(channels),
                exc_info=exc,
            )  # fmt: skip
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(exc)
            return
        except BaseException:
            for waiting in batch:  # cancelled: whether the commit happened is unknown
                waiting.future.cancel()
            raise
        for waiting in batch:
            if not waiting.future.done():
                waiting.future.set_result(None)
        # One label for the batch: batches hold one channel but for rare mixed moments.
        channel = events[0].channel if events else "unknown"
        counts = (
            ("accepted", result.accepted),
            ("duplicate", result.duplicates),
            ("revived", result.revived),
        )
        for status, n in counts:
            if n:
                self.metrics.inbound.labels(channel, status).inc(n)


@dataclass(frozen=True)
class WebhookContext:
    """What the webhook routes need."""

    store: SqlStore
    accounts: Mapping[str, BotAccount]
    disabled: Mapping[str, str]  # account name -> channel, for a clear 503
    metrics: ServiceMetrics
    max_body_bytes: int
    batcher: InboxBatcher | None = None
    webchat_limiter: WindowLimiter | None = None
    gate: IngressGate | None = None  # counts the webhooks in flight (workers step aside)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or :class:`BodyTooLarge` as soon as it passes ``limit`` bytes."""
    return await _read_asgi_body(request.receive, limit, request.headers.get("content-length"))


_TEXT = b"text/plain; charset=utf-8"
_ALLOWED = ("GET", "HEAD", "POST")


def _content_type(media_type: str) -> bytes:
    if media_type.startswith("text/") and "charset=" not in media_type:
        media_type += "; charset=utf-8"  # as Starlette's responses do
    return media_type.encode("latin-1")


async def _read_asgi_body(receive: Receive, limit: int, length: str | None) -> bytes:
    """The whole body from ASGI ``receive``: :class:`BodyTooLarge` when its announced ``length``
    (the Content-Length header) or what arrives passes ``limit`` bytes, ``ClientDisconnect`` when
    the client went away."""
    if length is not None and length.isdigit() and int(length) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        if not message.get("more_body", False):
            if not chunks:
                return chunk
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)


class WebhookEndpoint:
    """``/webhooks/{channel}/{account}`` (GET for WhatsApp's verification handshake, POST for
    events) as plain ASGI in front of the app's routes; every other request goes to ``app``.

    The providers' webhooks are the service's busiest path, and it needs only a path, a few
    headers and the body: Starlette's router, request and response objects and exception
    middleware were tens of microseconds of a webhook's 150-250 (``benchmarks/pipeline.py``,
    docs/service.md "Fifth round"). Behaviour is that of a Starlette route:
    404 for an unknown account, 405 with ``Allow`` for another method, and an unexpected error
    reaches the app's error middleware (500, logged).
    """

    def __init__(self, app: ASGIApp, ctx: WebhookContext) -> None:
        self.app = app
        self.ctx = ctx
        self.batcher = ctx.batcher or InboxBatcher(ctx.store, ctx.metrics)
        self.gate = ctx.gate or IngressGate(0)  # counts only
        self._timers: dict[str, Any] = {}  # channel -> its webhook histogram (labels() costs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            root: str = scope.get("root_path", "")
            if root and path.startswith(root) and path[len(root) : len(root) + 1] == "/":
                path = path[len(root) :]  # as Starlette's router sees it
            if path.startswith("/webhooks/"):
                parts = path.split("/")
                if len(parts) == 5 and not parts[4]:
                    parts.pop()  # a trailing slash: the same endpoint (a provider won't redirect)
                if len(parts) == 4 and parts[2] and parts[3]:
                    self.gate.enter()
                    try:
                        status, body, content_type, extra = await self._handle(
                            scope, receive, parts[2], parts[3]
                        )
                    finally:
                        self.gate.leave()
                    headers = [
                        (b"content-type", content_type),
                        (b"content-length", str(len(body)).encode()),
                        *extra,
                    ]
                    await send(
                        {"type": "http.response.start", "status": status, "headers": headers}
                    )
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)

    async def _handle(
        self, scope: Scope, receive: Receive, channel_name: str, name: str
    ) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
        """(status, body, content type, other headers) of the answer."""
        started = time.perf_counter()
        ctx = self.ctx
        method: str = scope["method"]
        if method not in _ALLOWED:
            return 405, b"Method Not Allowed", _TEXT, [(b"allow", ", ".join(_ALLOWED).encode())]
        account = ctx.accounts.get(name)
        if account is None or account.channel_name != channel_name:
            if ctx.disabled.get(name) == channel_name:
                return 503, b"account disabled: its secrets are not configured", _TEXT, []
            return 404, b"no such account", _TEXT, []
        raw_headers: list[tuple[bytes, bytes]] = scope["headers"]
        limiter = ctx.webchat_limiter
        if channel_name == "webchat" and limiter is not None:
            client = scope.get("client")
            if not limiter.allow(client[0] if client else "unknown"):
                ctx.metrics.inbound.labels(channel_name, "rate_limited").inc()
                return 429, b"too many messages, wait a minute", _TEXT, []
        # The first of repeated headers, as Starlette's request.headers[...] gives.
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(raw_headers)}
        try:
            body = await _read_asgi_body(receive, ctx.max_body_bytes, headers.get("content-length"))
        except BodyTooLarge:
            ctx.metrics.inbound.labels(channel_name, "too_large").inc()
            return 413, b"body too large", _TEXT, []
        except ClientDisconnect:
            return 400, b"client disconnected", _TEXT, []
        query_string: bytes = scope.get("query_string", b"")
        query: dict[str, str] = {}
        if query_string:
            for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
                query.setdefault(key, value)  # the first value of each, as documented
        hook = WebhookRequest(method=method, headers=headers, query=query, body=body)
        try:
            result = account.channel.handle_webhook(hook)
        except WebhookError as exc:
            ctx.metrics.inbound.labels(channel_name, f"refused_{exc.status_code}").inc()
            logger.info("webhook %s/%s refused: %s", channel_name, name, exc.status_code)
            # The adapter's own words (no personal data: signatures, envelope shapes), so a
            # developer setting up a provider sees what is wrong.
            text = f"{type(exc).__name__}: {exc}".encode()
            return exc.status_code, text, _TEXT, []
        # Only this account's events: a signed body may mention another number of the same app.
        events = [e for e in result.events if e.account == name]
        if events:
            try:
                await self.batcher.accept(events)
            except (StorageError, SQLAlchemyError):
                return 503, b"try again", _TEXT, []  # logged once for its batch (InboxBatcher)
        timer = self._timers.get(channel_name)
        if timer is None:
            timer = self._timers[channel_name] = ctx.metrics.webhook.labels(channel_name)
        timer.observe(time.perf_counter() - started)
        return result.status_code, result.body, _content_type(result.content_type), []
