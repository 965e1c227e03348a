import asyncio

import pytest

from civicchat.channels.ratelimit import RateLimiter, telegram_limiter, whatsapp_limiter


class FakeTime:
    """A monotonic clock that advances only when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def limiter(rate: float, **kwargs: object) -> tuple[RateLimiter, FakeTime]:
    time = FakeTime()
    return RateLimiter(rate, monotonic=time.monotonic, sleep=time.sleep, **kwargs), time  # type: ignore[arg-type]


async def test_burst_then_steady_rate() -> None:
    rl, time = limiter(10, burst=3)
    start = time.now
    stamps = []
    for _ in range(8):
        await rl.acquire()
        stamps.append(round(time.now - start, 6))
    # Three at once, then one every 0.1 s.
    assert stamps == [0.0, 0.0, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5]


async def test_per_recipient_spacing_does_not_slow_others() -> None:
    rl, time = limiter(30, per_recipient_interval=1.0)
    start = time.now
    await rl.acquire("chat-a")
    await rl.acquire("chat-b")
    assert time.now == start
    await rl.acquire("chat-a")
    assert time.now - start == pytest.approx(1.0)


async def test_pause_holds_everything_and_a_longer_pause_wins() -> None:
    rl, time = limiter(80)
    start = time.now
    rl.pause(5)
    rl.pause(2)  # shorter: does not shorten the first
    await rl.acquire("x")
    assert time.now - start == pytest.approx(5.0)


async def test_pause_during_a_wait_moves_the_waiter_behind_it() -> None:
    time = FakeTime()
    real_sleep_calls = 0

    async def sleep(seconds: float) -> None:
        nonlocal real_sleep_calls
        real_sleep_calls += 1
        if real_sleep_calls == 1:
            rl.pause(10)  # the provider answered 429 while this caller waited
        time.now += seconds
        await asyncio.sleep(0)

    rl = RateLimiter(1, burst=1, monotonic=time.monotonic, sleep=sleep)
    start = time.now
    await rl.acquire()
    await rl.acquire()
    assert time.now - start >= 10


async def test_concurrent_callers_queue_in_order() -> None:
    rl, time = limiter(2, burst=1)
    start = time.now
    done: list[tuple[int, float]] = []

    async def worker(i: int) -> None:
        await rl.acquire()
        done.append((i, time.now - start))

    await asyncio.gather(*(worker(i) for i in range(4)))
    assert len(done) == 4
    # Four messages at two a second with no burst: the last one goes 1.5 s after the first.
    assert time.now - start == pytest.approx(1.5)
    assert sum(time.sleeps) == pytest.approx(1.5)


def test_provider_presets() -> None:
    assert whatsapp_limiter().rate == 80
    assert whatsapp_limiter(1000).rate == 1000
    with pytest.raises(ValueError, match="1,000"):
        whatsapp_limiter(2000)
    tg = telegram_limiter()
    assert (tg.rate, tg.per_recipient_interval) == (30, 1.0)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(0)
    with pytest.raises(ValueError, match="burst"):
        RateLimiter(1, burst=0)


async def test_real_clock_smoke() -> None:
    rl = RateLimiter(200, burst=1)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(5):
        await rl.acquire("a")
    assert loop.time() - start >= 4 / 200 * 0.9
