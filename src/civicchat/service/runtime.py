"""The service's moving parts: accounts built from the configuration, and the background workers.

Workers (inside the web process by default, or alone with ``civicchat worker CONFIG``):

- inbox processors run :meth:`civicchat.bot.Bot.handle` on accepted webhook events;
- outbox senders send through each account's channel, turning free-form content into the
  account's re-engagement template when WhatsApp's 24-hour window has closed (the content is
  held on the conversation and sent when the citizen answers) and degrading rich content;
- media downloaders fetch inbound photos, videos, audio and documents into the blob store;
- a live listener reloads a keyword catalog when the console changed it (in any process) and
  hands outbound web chat messages to the process holding the visitor's page.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import logging
import random
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx

from civicchat.bot import (
    HELD_KEY,
    Bot,
    BotAccount,
    HandledMessage,
    RecordingResponder,
    load_account_texts,
)
from civicchat.channels.base import Channel, MediaDownload
from civicchat.channels.degrade import degrade
from civicchat.channels.telegram import TelegramAccount, TelegramChannel
from civicchat.channels.webchat import UploadReader, WebChatChannel, WebChatHub
from civicchat.channels.whatsapp import WhatsAppAccount, WhatsAppChannel
from civicchat.clock import Clock
from civicchat.exceptions import (
    ConfigError,
    MediaError,
    SendError,
    UnsupportedContentError,
    WindowClosedError,
)
from civicchat.keywords import KeywordEngine, load_catalog
from civicchat.messages import MarkRead, OutboundMessage, StatusUpdate, Template
from civicchat.routing import DEFAULT_TEXTS, Pipeline, load_office_hours, window_closes_at
from civicchat.service.cases_worker import CaseServices, case_workers
from civicchat.service.config import AccountConfig, ServiceConfig
from civicchat.service.dispatch import Dispatcher
from civicchat.service.live import LiveBus, LiveEvent
from civicchat.service.metrics import ServiceMetrics
from civicchat.service.reload import on_office_hours_changed
from civicchat.storage.base import InboxEvent, OutboxItem, SendLimiter
from civicchat.storage.media import LocalBlobStore, MediaDownloader
from civicchat.storage.sql import SqlStore
from civicchat.storage.workers import InboxProcessor, OutboxSender, Pacer

__all__ = [
    "AccountMediaSource",
    "ChannelSender",
    "HeldForWindow",
    "LiveInboxProcessor",
    "LiveOutboxSender",
    "RelayHub",
    "ServiceRuntime",
    "build_accounts",
    "build_channel",
]

logger = logging.getLogger("civicchat.service")

WEBCHAT_EVENT = "webchat"  # LiveEvent.data key of an outbound web chat message
INBOX_BATCH = 16  # events (of as many conversations) an inbox processor handles per transaction


class RelayHub(WebChatHub):
    """The hub the web chat *sender* publishes to: it forwards every event over the live bus.

    Every process's :class:`ServiceRuntime` hands such events to its own local hub, so the
    process holding the visitor's server-sent-events stream delivers the message.
    """

    def __init__(self, live: LiveBus) -> None:
        super().__init__(backlog=1, max_visitors=1)
        self._live = live
        self._tasks: set[asyncio.Task[None]] = set()

    def publish(self, account: str, visitor: str, event: Mapping[str, Any]) -> dict[str, Any]:
        payload = {WEBCHAT_EVENT: {"visitor": visitor, "event": dict(event)}}
        task = asyncio.get_running_loop().create_task(
            self._live.publish(LiveEvent(account=account, kind="message_out", data=payload))
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return dict(event)


def build_accounts(
    config: ServiceConfig,
    *,
    client: httpx.AsyncClient,
    clock: Clock,
    relay_hub: WebChatHub,
    uploads: UploadReader | None = None,
) -> dict[str, BotAccount]:
    """One :class:`BotAccount` per enabled account of ``config``."""
    accounts: dict[str, BotAccount] = {}
    for acfg in config.enabled_accounts:
        accounts[acfg.name] = _build_account(
            acfg, client=client, clock=clock, hub=relay_hub, uploads=uploads
        )
    return accounts


def build_channel(
    acfg: AccountConfig,
    *,
    client: httpx.AsyncClient,
    clock: Clock,
    hub: WebChatHub | None = None,
    uploads: UploadReader | None = None,
) -> Channel:
    """The channel adapter of one configured account (``hub``: the web chat's, required for a
    web chat account; ``uploads``: the blob store its photos are read back from). Used by the
    service and by ``civicchat telegram-webhook``."""
    channel: Channel
    if acfg.channel == "whatsapp":
        wa = acfg.whatsapp
        assert wa is not None  # checked by the configuration
        channel = WhatsAppChannel(
            [
                WhatsAppAccount(
                    name=acfg.name,
                    phone_number_id=wa.phone_number_id,
                    access_token=wa.access_token,
                    app_secret=wa.app_secret,
                    verify_token=wa.verify_token,
                    api_base_url=wa.api_base_url,
                    graph_version=wa.graph_version,
                    messages_per_second=wa.messages_per_second,
                )
            ],
            client=client,
            clock=clock,
        )
    elif acfg.channel == "telegram":
        tg = acfg.telegram
        assert tg is not None
        channel = TelegramChannel(
            TelegramAccount(
                name=acfg.name,
                bot_token=tg.bot_token,
                secret_token=tg.secret_token,
                api_base_url=tg.api_base_url,
            ),
            client=client,
            clock=clock,
        )
    else:
        if hub is None:
            raise ConfigError(f"account {acfg.name}: a web chat channel needs the web chat hub")
        # A long reply is one bubble: the channel publishes it in parts small enough for one
        # PostgreSQL NOTIFY each, and the page joins them.
        channel = WebChatChannel(hub, account=acfg.name, clock=clock, uploads=uploads)
    return channel


def _build_account(
    acfg: AccountConfig,
    *,
    client: httpx.AsyncClient,
    clock: Clock,
    hub: WebChatHub,
    uploads: UploadReader | None = None,
) -> BotAccount:
    catalog = load_catalog(acfg.catalog)
    hours = load_office_hours(acfg.office_hours)
    engine = KeywordEngine(catalog, clock=clock, timezone=hours.timezone)
    texts = load_account_texts(acfg.templates)
    reengagement = acfg.reengagement_template or texts.whatsapp_templates.get("reengagement")
    pipeline = Pipeline(
        account=acfg.name,
        office_hours=hours,
        responder=RecordingResponder(engine),
        texts=texts.routing or DEFAULT_TEXTS,
        reengagement_template=reengagement if acfg.channel == "whatsapp" else None,
        languages=acfg.languages,
    )
    channel = build_channel(acfg, client=client, clock=clock, hub=hub, uploads=uploads)
    return BotAccount(
        name=acfg.name,
        channel_name=acfg.channel,
        channel=channel,
        engine=engine,
        pipeline=pipeline,
        texts=texts,
        display_name=acfg.display_name or acfg.name,
        catalog_path=acfg.catalog,
        first_contact_notice=acfg.first_contact_notice,
    )


def _limiter(account: BotAccount) -> SendLimiter | None:
    limiters = getattr(account.channel, "limiters", None)
    if isinstance(limiters, Mapping):
        found = limiters.get(account.name)
        return found if found is not None else None
    single = getattr(account.channel, "limiter", None)
    return single if single is not None and hasattr(single, "acquire") else None


class ChannelSender:
    """The outbox's view of one account's channel: degrade, window, template fallback.

    Implements :class:`~civicchat.storage.base.OutboundChannel`.
    """

    def __init__(
        self,
        account: BotAccount,
        store: SqlStore,
        clock: Clock,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.account = account
        self.store = store
        self.clock = clock
        self.metrics = metrics

    async def send(self, message: OutboundMessage, *, last_inbound_at: datetime | None) -> str:
        try:
            provider_id = await self._send(message, last_inbound_at)
        except SendError as exc:
            self._count("retryable_error" if exc.retryable else "failed")
            raise
        except Exception:
            self._count("retryable_error")
            raise
        self._count("sent")
        return provider_id

    def _count(self, status: str) -> None:
        if self.metrics is not None:
            self.metrics.outbound.labels(self.account.channel_name, status).inc()

    async def _send(self, message: OutboundMessage, last_inbound_at: datetime | None) -> str:
        content = message.content
        channel = self.account.channel
        if self.account.channel_name == "whatsapp" and not isinstance(content, Template | MarkRead):
            closes = window_closes_at(last_inbound_at)
            if closes is None or self.clock.now() >= closes:
                return await self._reengage(message)
        pieces = degrade(content, channel.capabilities, self.account.default_language)
        if not pieces:
            raise UnsupportedContentError(
                f"{self.account.channel_name} cannot carry {content.kind}",
                channel=self.account.channel_name,
                account=self.account.name,
            )
        provider_id = ""
        for piece in pieces:
            one = message.model_copy(update={"content": piece})
            provider_id = await channel.send(one, last_inbound_at=last_inbound_at)
        return provider_id

    async def _reengage(self, message: OutboundMessage) -> str:
        """Hold ``message`` on the conversation and queue the re-engagement template.

        The template goes out as its own outbox message (the first time the window is found
        closed); this message is recorded as failed with :class:`HeldForWindow`, and the
        handler sends its content again when the citizen answers (the window is open then).
        """
        template = self.account.pipeline.reengagement_template
        if not template:
            raise WindowClosedError(
                "the 24-hour window is closed and the account has no re-engagement template",
                channel=self.account.channel_name,
                account=self.account.name,
            )
        async with self.store.transaction() as tx:
            contact = await tx.contacts.identify(
                message.channel, message.account, message.recipient_id
            )
            conv = await tx.conversations.latest_for(message.channel, message.account, contact.id)
            if conv is None:
                raise WindowClosedError(
                    "the 24-hour window is closed and there is no conversation to hold it on",
                    channel=self.account.channel_name,
                    account=self.account.name,
                )
            data = dict(conv.data or {})
            held = list(data.get(HELD_KEY) or [])
            first = not held
            held.append(message.content.model_dump_json())
            data[HELD_KEY] = held
            await tx.conversations.save(dataclasses.replace(conv, data=data))
            if first:
                # One template per closed window: later messages wait with the first.
                language = conv.language or self.account.default_language
                fallback = getattr(message.content, "body", None)
                content = Template(name=template, language=language, fallback_text=fallback)
                await tx.enqueue(
                    [message.model_copy(update={"content": content})],
                    key_prefix=f"reengage:{conv.id}:{uuid.uuid4().hex}",
                    conversation_id=conv.id,
                )
        raise HeldForWindow(
            "held: the 24-hour window is closed; sent when the citizen answers the "
            f"{template} template",
            channel=self.account.channel_name,
            account=self.account.name,
        )


class HeldForWindow(WindowClosedError):
    """A free-form message waits for the citizen's answer to the re-engagement template."""


_pending_live: contextvars.ContextVar[list[LiveEvent] | None] = contextvars.ContextVar(
    "civicchat_pending_live", default=None
)


class LiveInboxProcessor(InboxProcessor):
    """An :class:`InboxProcessor` that publishes live events after each commit, with metrics."""

    def __init__(
        self, store: SqlStore, bot: Bot, live: LiveBus, metrics: ServiceMetrics, **kwargs: Any
    ) -> None:
        super().__init__(store, bot.handle, **kwargs)
        self.live = live
        self.metrics = metrics
        self._pending: list[LiveEvent] = []
        self._handled = 0

    async def run_once(self) -> bool:
        # The bot's callback queues live events here; they are published only after a commit.
        token = _pending_live.set(self._pending)
        started = time.perf_counter()
        self._handled = 0
        try:
            busy = await super().run_once()
        finally:
            _pending_live.reset(token)
            self._pending.clear()
        if busy and self._handled:
            per_event = (time.perf_counter() - started) / self._handled
            for _ in range(self._handled):
                self.metrics.processing.labels("event").observe(per_event)
        return busy

    async def after_commit(self, events: Sequence[InboxEvent]) -> None:
        self._handled += len(events)
        for event in events:
            update = event.payload
            if isinstance(update, StatusUpdate):
                self._pending.append(
                    LiveEvent(
                        account=event.account,
                        kind="status",
                        data={
                            "provider_message_id": update.provider_message_id,
                            "status": update.status,
                        },
                    )
                )
        pending, self._pending[:] = list(self._pending), []
        for live_event in pending:
            await self.live.publish(live_event)

    def after_rollback(self, events: Sequence[InboxEvent]) -> None:
        self._pending.clear()


def on_handled(metrics: ServiceMetrics) -> Any:
    """The :class:`Bot` callback: metrics now, live events queued until the commit."""

    def callback(handled: HandledMessage) -> None:
        if handled.keyword is not None:
            metrics.keywords.labels(handled.account, handled.keyword).inc()
        pending = _pending_live.get()
        if pending is None:
            return
        data = {"state": handled.state_after, "replies": handled.replies}
        pending.append(LiveEvent(handled.account, "message_in", handled.conversation_id, data))
        if handled.state_before != handled.state_after:
            pending.append(
                LiveEvent(handled.account, "conversation", handled.conversation_id, data)
            )

    return callback


class LiveOutboxSender(OutboxSender):
    """An :class:`OutboxSender` that counts sends and publishes ``message_out`` live events."""

    def __init__(
        self,
        store: SqlStore,
        channels: Mapping[tuple[str, str], ChannelSender],
        live: LiveBus,
        metrics: ServiceMetrics,
        **kwargs: Any,
    ) -> None:
        super().__init__(store, channels, **kwargs)
        self.live = live
        self.metrics = metrics

    async def after_send(self, item: OutboxItem, provider_message_id: str) -> None:
        if item.conversation_id is None:
            return
        await self.live.publish(
            LiveEvent(
                account=item.message.account,
                kind="message_out",
                conversation_id=item.conversation_id,
                data={"outbox_id": item.id},
            )
        )


class AccountMediaSource:
    """The media downloader's source for one channel name, dispatching on the account."""

    def __init__(self, channels: Mapping[str, Channel]) -> None:
        self.channels = dict(channels)

    async def fetch_media(self, account: str, media_id: str, *, max_bytes: int) -> MediaDownload:
        channel = self.channels.get(account)
        if channel is None:
            raise MediaError(f"no channel for account {account}", account=account)
        return await channel.fetch_media(account, media_id, max_bytes=max_bytes)


class ServiceRuntime:
    """Everything that runs beside the web routes: workers and the live listener."""

    def __init__(
        self,
        config: ServiceConfig,
        *,
        store: SqlStore,
        accounts: Mapping[str, BotAccount],
        live: LiveBus,
        hub: WebChatHub,
        blobs: LocalBlobStore,
        metrics: ServiceMetrics,
        clock: Clock,
        pacer: Pacer | None = None,
    ) -> None:
        self.config = config
        self.pacer = pacer  # the inbox and outbox workers wait for its turns
        self.store = store
        self.accounts = accounts
        self.live = live
        self.hub = hub
        self.blobs = blobs
        self.metrics = metrics
        self.clock = clock
        self.cases = CaseServices.from_config(
            config, store=store, accounts=accounts, blobs=blobs, clock=clock
        )
        chat = None if self.cases is None else self.cases.chat
        self.bot = Bot(accounts, clock=clock, on_handled=on_handled(metrics), cases=chat)
        self._workers: list[Any] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._listener: asyncio.Task[None] | None = None
        self._work_listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    def senders(self) -> dict[tuple[str, str], ChannelSender]:
        return {
            (a.channel_name, a.name): ChannelSender(a, self.store, self.clock, self.metrics)
            for a in self.accounts.values()
        }

    async def start(self, *, workers: bool) -> None:
        """Start the live listener and, when ``workers``, the configured workers."""
        self._listener = asyncio.create_task(self._listen(), name="civicchat-live")
        await asyncio.wait_for(self._listening.wait(), 5)
        if not workers:
            return
        wc = self.config.workers
        inbox, outbox = wc.for_database(postgres=self.store.is_postgres)
        rng = random.Random()
        for n in range(inbox):
            self._workers.append(
                LiveInboxProcessor(
                    self.store,
                    self.bot,
                    self.live,
                    self.metrics,
                    clock=self.clock,
                    idle_seconds=wc.idle_seconds,
                    # SQLite too: its single writer is held a few milliseconds longer a round,
                    # but a message a transaction answered at most ~50 a second (reply p99 1.3 s
                    # at 100/s, benchmarks/pipeline.py; docs/service.md, seventh round).
                    batch_size=INBOX_BATCH,
                    rng=rng,
                    poll=n == 0,  # one poller per kind; the others wait for the store's signal
                    pacer=self.pacer,
                )
            )
        senders = self.senders()
        limiters = {}
        for key, sender in senders.items():
            found = _limiter(sender.account)
            if found is not None:
                limiters[key] = found
        for n in range(outbox):
            self._workers.append(
                LiveOutboxSender(
                    self.store,
                    senders,
                    self.live,
                    self.metrics,
                    clock=self.clock,
                    limiters=limiters,
                    idle_seconds=wc.idle_seconds,
                    rng=rng,
                    poll=n == 0,
                    pacer=self.pacer,
                )
            )
        by_channel: dict[str, dict[str, Channel]] = {}
        for name, account in self.accounts.items():
            by_channel.setdefault(account.channel_name, {})[name] = account.channel
        sources = {ch: AccountMediaSource(chans) for ch, chans in by_channel.items()}
        for _ in range(wc.media):
            self._workers.append(
                MediaDownloader(
                    self.store,
                    sources,
                    self.blobs,
                    self.clock,
                    max_bytes=self.config.media.max_bytes,
                    idle_seconds=max(wc.idle_seconds, 0.2),
                    rng=rng,
                )
            )
        self._workers.append(Dispatcher.from_config(self.config, self.store, self.live, self.clock))
        self._workers.extend(case_workers(self.cases, self.config))  # cases: Open311, retention
        for worker in self._workers:
            self._tasks.append(
                asyncio.create_task(worker.run_forever(), name=type(worker).__name__)
            )
        if self.store.is_postgres:
            # Work written by other processes (a web-only process, another worker) wakes ours.
            self._work_listener = asyncio.create_task(
                self.store.listen_for_work(), name="civicchat-work"
            )
        logger.info("started %d worker(s)", len(self._workers))

    async def stop(self) -> None:
        """Stop the workers (each finishes its current item) and the listener."""
        for worker in self._workers:
            worker.stop()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=10)
            for task in pending:
                task.cancel()
        self._tasks.clear()
        self._workers.clear()
        if self._work_listener is not None:
            self._work_listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._work_listener
            self._work_listener = None
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener

    async def _listen(self) -> None:
        async with self.live.subscribe("*") as events:
            self._listening.set()
            async for event in events:
                try:
                    self._on_live(event)
                except Exception:
                    logger.exception("live event %s of %s failed", event.kind, event.account)

    def _on_live(self, event: LiveEvent) -> None:
        account = self.accounts.get(event.account)
        if account is None:
            return
        if on_office_hours_changed(event, account, self.config):
            return
        if event.kind == "catalog_changed" and account.catalog_path is not None:
            try:
                account.engine.reload(load_catalog(account.catalog_path))
            except ConfigError as exc:
                logger.error("catalog of %s not reloaded: %s", account.name, exc)
        elif event.kind == "message_out" and WEBCHAT_EVENT in event.data:
            relay = event.data[WEBCHAT_EVENT]
            if isinstance(relay, Mapping):
                visitor, payload = relay.get("visitor"), relay.get("event")
                if isinstance(visitor, str) and isinstance(payload, Mapping):
                    self.hub.publish(account.name, visitor, payload)
