"""Webhook routes: ``/webhooks/{channel}/{account}`` for WhatsApp, Telegram and the web chat.

The body is read up to the configured size (413 beyond), handed to the account's channel as
raw bytes (signature checked there: 401/403 with nothing stored; malformed: 400), the events are
committed to the durable inbox, and only then does the provider get the channel's answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from civicchat.bot import BotAccount
from civicchat.channels.base import Event, WebhookRequest
from civicchat.exceptions import StorageError, WebhookError
from civicchat.service.metrics import ServiceMetrics
from civicchat.storage.sql import SqlStore

__all__ = [
    "BodyTooLarge",
    "InboxBatcher",
    "WebhookContext",
    "WindowLimiter",
    "read_body",
    "webhook_routes",
]

logger = logging.getLogger("civicchat.service")


class BodyTooLarge(Exception):
    """The request body is over the limit."""


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


class InboxBatcher:
    """Group commit: webhooks arriving while a commit is running share the next one.

    Each caller still gets its answer only after the transaction holding its events committed;
    under load one ``BEGIN ... COMMIT`` serves many webhooks instead of one each.
    """

    def __init__(self, store: SqlStore, metrics: ServiceMetrics, *, max_batch: int = 500) -> None:
        self.store = store
        self.metrics = metrics
        self.max_batch = max_batch
        self._pending: list[tuple[Sequence[Event], asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def accept(self, events: Sequence[Event]) -> None:
        """Return once ``events`` are committed; raises what the commit raised."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((events, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        await asyncio.shield(future)

    async def _drain(self) -> None:
        while self._pending:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            events = [event for chunk, _ in batch for event in chunk]
            try:
                result = await self.store.accept(events)
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for _, future in batch:
                if not future.done():
                    future.set_result(None)
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


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or :class:`BodyTooLarge` as soon as it passes ``limit`` bytes."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def webhook_routes(ctx: WebhookContext) -> list[Route]:
    """The webhook routes (GET for WhatsApp's verification handshake, POST for events)."""
    batcher = ctx.batcher or InboxBatcher(ctx.store, ctx.metrics)

    async def webhook(request: Request) -> Response:
        started = time.perf_counter()
        channel_name = request.path_params["channel"]
        name = request.path_params["account"]
        account = ctx.accounts.get(name)
        if account is None or account.channel_name != channel_name:
            if ctx.disabled.get(name) == channel_name:
                return PlainTextResponse("account disabled: its secrets are not configured", 503)
            return PlainTextResponse("no such account", 404)
        limiter = ctx.webchat_limiter
        if channel_name == "webchat" and limiter is not None:
            client = request.client.host if request.client else "unknown"
            if not limiter.allow(client):
                ctx.metrics.inbound.labels(channel_name, "rate_limited").inc()
                return PlainTextResponse("too many messages, wait a minute", 429)
        try:
            body = await read_body(request, ctx.max_body_bytes)
        except BodyTooLarge:
            ctx.metrics.inbound.labels(channel_name, "too_large").inc()
            return PlainTextResponse("body too large", 413)
        except ClientDisconnect:
            return PlainTextResponse("client disconnected", 400)
        hook = WebhookRequest(
            method=request.method,
            headers=dict(request.headers),
            query=dict(request.query_params),
            body=body,
        )
        try:
            result = account.channel.handle_webhook(hook)
        except WebhookError as exc:
            ctx.metrics.inbound.labels(channel_name, f"refused_{exc.status_code}").inc()
            logger.info("webhook %s/%s refused: %s", channel_name, name, exc.status_code)
            # The adapter's own words (no personal data: signatures, envelope shapes), so a
            # developer setting up a provider sees what is wrong.
            return PlainTextResponse(f"{type(exc).__name__}: {exc}", exc.status_code)
        # Only this account's events: a signed body may mention another number of the same app.
        events = [e for e in result.events if e.account == name]
        if events:
            try:
                await batcher.accept(events)
            except (StorageError, SQLAlchemyError):
                logger.exception("webhook %s/%s: inbox commit failed", channel_name, name)
                return PlainTextResponse("try again", 503)
        ctx.metrics.webhook.labels(channel_name).observe(time.perf_counter() - started)
        return Response(result.body, result.status_code, media_type=result.content_type)

    return [
        Route("/webhooks/{channel}/{account}", webhook, methods=["GET", "POST"]),
    ]
