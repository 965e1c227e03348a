"""Per-account send rate limits: an overall rate, a per-recipient rate, and provider pauses.

Every sender calls, for each message::

    await limiter.acquire(recipient_id)        # waits for a free slot
    try:
        await channel.send(message, last_inbound_at=...)
    except ThrottledError as exc:
        limiter.pause(exc.retry_after or 1.0)  # the provider's retry-after always wins
        raise

The overall rate is a token bucket (``rate`` per second, ``burst`` tokens); the per-recipient
limit spaces messages to one chat (Telegram: one a second per chat). One limiter serves one
account; create it with :func:`whatsapp_limiter` or :func:`telegram_limiter` for the providers'
published figures.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

__all__ = ["RateLimiter", "telegram_limiter", "whatsapp_limiter"]

logger = logging.getLogger("civicchat.channels")

_PRUNE_AT = 10_000


class RateLimiter:
    """An async token bucket for one account, with optional per-recipient spacing.

    ``rate``: messages per second overall; ``burst``: how many may go at once after a quiet spell
    (default: one second's worth); ``per_recipient_interval``: minimum seconds between two messages
    to the same recipient (None: no limit). ``monotonic`` and ``sleep`` are seams for tests.
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: int | None = None,
        per_recipient_interval: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"RateLimiter rate must be positive, got {rate!r}")
        if burst is not None and burst < 1:
            raise ValueError(f"RateLimiter burst must be at least 1, got {burst!r}")
        if per_recipient_interval is not None and per_recipient_interval < 0:
            raise ValueError("RateLimiter per_recipient_interval cannot be negative")
        self.rate = rate
        self.burst = burst if burst is not None else max(1, int(rate))
        self.per_recipient_interval = per_recipient_interval
        self._interval = 1.0 / rate
        self._monotonic = monotonic
        self._sleep = sleep
        self._tat = monotonic()  # GCRA "theoretical arrival time" of the next message
        self._paused_until = 0.0
        self._recipient_next: dict[str, float] = {}

    @property
    def paused_until(self) -> float:
        """The monotonic time before which nothing is sent (0 when never paused)."""
        return self._paused_until

    async def acquire(self, recipient: str | None = None) -> None:
        """Wait until one message to ``recipient`` may be sent, and take that slot."""
        while True:
            now = self._monotonic()
            slot = max(
                now,
                self._paused_until,
                self._tat - (self.burst - 1) * self._interval,
            )
            if recipient is not None and self.per_recipient_interval is not None:
                slot = max(slot, self._recipient_next.get(recipient, 0.0))
            # Reserve before sleeping so that concurrent callers queue behind each other.
            self._tat = max(self._tat, slot) + self._interval
            if recipient is not None and self.per_recipient_interval is not None:
                self._recipient_next[recipient] = slot + self.per_recipient_interval
                if len(self._recipient_next) > _PRUNE_AT:
                    self._prune(now)
            pause_seen = self._paused_until
            if slot > now:
                await self._sleep(slot - now)
            # A pause that arrived while we slept moves us behind it.
            if self._paused_until == pause_seen or self._paused_until <= slot:
                return

    def pause(self, seconds: float) -> None:
        """Send nothing on this account for ``seconds`` (a provider's retry-after)."""
        if seconds <= 0:
            return
        until = self._monotonic() + seconds
        if until > self._paused_until:
            logger.info("rate limiter paused for %.1f s", seconds)
            self._paused_until = until
            self._tat = max(self._tat, until)

    def _prune(self, now: float) -> None:
        self._recipient_next = {r: t for r, t in self._recipient_next.items() if t > now}


def whatsapp_limiter(
    messages_per_second: float = 80,
    *,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> RateLimiter:
    """WhatsApp Cloud API: 80 messages a second per number by default, up to 1,000."""
    if not 0 < messages_per_second <= 1000:
        raise ValueError(
            "WhatsApp throughput is between 1 and 1,000 messages a second per number "
            f"(80 by default), got {messages_per_second!r}"
        )
    return RateLimiter(messages_per_second, monotonic=monotonic, sleep=sleep)


def telegram_limiter(
    *,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> RateLimiter:
    """Telegram Bot API: about 30 messages a second overall and one a second per chat."""
    return RateLimiter(30, per_recipient_interval=1.0, monotonic=monotonic, sleep=sleep)
