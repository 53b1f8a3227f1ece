"""Ingest counters, exposed in Prometheus format on /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from core.wire import RejectReason


class IngestMetrics:
    """All ingest metrics, registered on one registry (one per process; tests make their own)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages_received = Counter(
            "slopewatch_ingest_messages_received", "MQTT messages received", registry=registry
        )
        self.readings_received = Counter(
            "slopewatch_ingest_readings_received", "readings in received messages that could be read", registry=registry
        )
        self.readings_stored = Counter(
            "slopewatch_ingest_readings_stored", "channel values newly stored", registry=registry
        )
        self.readings_duplicate = Counter(
            "slopewatch_ingest_readings_duplicate",
            "channel values already stored (duplicate delivery), not stored again",
            registry=registry,
        )
        self.rejected = Counter(
            "slopewatch_ingest_rejected",
            "rejections by reason: whole messages, or single readings within a message",
            ["reason"],
            registry=registry,
        )
        for reason in RejectReason:
            self.rejected.labels(reason.value)
        self.dead_letters = Counter("slopewatch_ingest_dead_letters", "messages dead-lettered", registry=registry)
        self.batch_rows = Histogram(
            "slopewatch_ingest_batch_rows",
            "channel values per database batch",
            buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 10000, 20000),
            registry=registry,
        )
        self.batch_write_seconds = Histogram(
            "slopewatch_ingest_batch_write_seconds", "time to write and commit one batch", registry=registry
        )
        self.commit_latency_seconds = Histogram(
            "slopewatch_ingest_commit_latency_seconds",
            "from the oldest message of a batch being received to its commit",
            registry=registry,
        )
        self.db_errors = Counter(
            "slopewatch_ingest_db_errors", "failed batch writes (retried; nothing is acknowledged)", registry=registry
        )
        self.mqtt_connected = Gauge("slopewatch_ingest_mqtt_connected", "1 while connected", registry=registry)
        self.mqtt_connects = Counter("slopewatch_ingest_mqtt_connects", "successful connects", registry=registry)
        self.pending_messages = Gauge(
            "slopewatch_ingest_pending_messages", "messages received but not yet committed", registry=registry
        )
