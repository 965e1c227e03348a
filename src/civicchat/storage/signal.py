"""A wake-up signal for a pool of workers that wakes one idle worker per :meth:`WorkSignal.set`.

An :class:`asyncio.Event` wakes every waiter: with eight idle inbox workers, each webhook commit
started eight claims of which seven found nothing (a transaction and two or three statements
each). A worker woken by this signal that finds a full batch wakes the next one itself, so a
backlog still gets every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

__all__ = ["WorkSignal"]


class WorkSignal:
    """``set()`` wakes exactly one waiter, or, when nobody waits, is remembered (``is_set()``)
    until the next ``wait()`` or ``clear()``."""

    def __init__(self) -> None:
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._pending = False

    def is_set(self) -> bool:
        """True when a ``set()`` found no waiter and nobody has taken it since."""
        return self._pending

    def clear(self) -> None:
        """Forget a remembered ``set()`` (a worker about to look for work calls this first)."""
        self._pending = False

    def set(self) -> None:
        """Wake one waiter; remember the wake-up if there is none."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._pending = True

    async def wait(self) -> bool:
        """Return once woken (at once if a ``set()`` is remembered)."""
        if self._pending:
            self._pending = False
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.set()  # woken, but this waiter will not work: pass the wake-up on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise
        return True
