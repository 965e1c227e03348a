"""civicchat: municipal citizen-service messaging.

Channels (WhatsApp Cloud API, Telegram, a web chat), a Catalan/Spanish keyword engine, office-hours
routing with human handoff, and storage with a durable inbox and outbox.
"""

from __future__ import annotations

from civicchat.clock import Clock, ManualClock, SystemClock

__version__ = "0.1.0.dev0"

__all__ = [
    "Clock",
    "ManualClock",
    "SystemClock",
    "__version__",
]
