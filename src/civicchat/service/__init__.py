"""The reference ASGI service: webhooks, workers, health, metrics, the web chat and the console.

Build it with :func:`civicchat.service.app.create_app` from a :class:`ServiceConfig`, or run
``civicchat serve CONFIG``.
"""

from __future__ import annotations

from civicchat.service.live import InProcessLiveBus, LiveBus, LiveEvent, PostgresLiveBus

__all__ = ["InProcessLiveBus", "LiveBus", "LiveEvent", "PostgresLiveBus"]
