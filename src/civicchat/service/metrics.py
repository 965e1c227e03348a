"""Prometheus metrics of the service, on a registry of its own (one per app).

Counters: ``civicchat_inbound_total{channel,status}`` (accepted, duplicate, refused...),
``civicchat_outbound_total{channel,status}`` (sent, retry, failed),
``civicchat_keyword_total{account,result}`` (hit, miss, index, clarify). Histograms:
``civicchat_processing_seconds`` (one inbox event through the handler and commit) and
``civicchat_webhook_seconds`` (a webhook request until its answer). Gauges read from the database
when ``/metrics`` is scraped: ``civicchat_inbox_events{state}``, ``civicchat_outbox_messages{status}``.
Read from the process's :class:`~civicchat.service.webhooks.IngressGate` (:meth:`ServiceMetrics.watch_gate`):
``civicchat_webhooks_in_flight`` and ``civicchat_worker_rounds_deferred_total`` (worker rounds
that waited for the webhooks in flight: "webhooks first").
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST as PROMETHEUS_CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = ["PROMETHEUS_CONTENT_TYPE", "ServiceMetrics"]

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Gate(Protocol):
    in_flight: int
    deferred: int


class _GateCollector:
    """Reads the gate's two numbers when ``/metrics`` is scraped (nothing on the webhook path)."""

    def __init__(self, gate: _Gate) -> None:
        self.gate = gate

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "civicchat_webhooks_in_flight",
            "Webhooks this process is answering",
            value=self.gate.in_flight,
        )
        yield CounterMetricFamily(
            "civicchat_worker_rounds_deferred",
            "Worker rounds that waited for the webhooks in flight (webhooks first)",
            value=self.gate.deferred,
        )


class ServiceMetrics:
    """The service's counters, histograms and queue gauges."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.inbound = Counter(
            "civicchat_inbound",
            "Webhook events by channel and outcome",
            ["channel", "status"],
            registry=r,
        )
        self.outbound = Counter(
            "civicchat_outbound",
            "Outbound sends by channel and outcome",
            ["channel", "status"],
            registry=r,
        )
        self.keywords = Counter(
            "civicchat_keyword", "Keyword engine results", ["account", "result"], registry=r
        )
        self.processing = Histogram(
            "civicchat_processing_seconds",
            "Inbox event processing time",
            ["kind"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.webhook = Histogram(
            "civicchat_webhook_seconds",
            "Webhook request time until the answer",
            ["channel"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.inbox = Gauge("civicchat_inbox_events", "Inbox events by state", ["state"], registry=r)
        self.outbox = Gauge(
            "civicchat_outbox_messages", "Outbox messages by status", ["status"], registry=r
        )

    def set_queues(self, inbox: Mapping[str, int], outbox: Mapping[str, int]) -> None:
        """Record the queue sizes read from the database."""
        for state, n in inbox.items():
            self.inbox.labels(state).set(n)
        for status, n in outbox.items():
            self.outbox.labels(status).set(n)

    def watch_gate(self, gate: _Gate) -> None:
        """Export ``gate``'s webhooks in flight and deferred worker rounds."""
        self.registry.register(_GateCollector(gate))

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
