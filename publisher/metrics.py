"""Prometheus metrics: `--metrics 127.0.0.1:9464` or `[daemon] metrics = "…"`.

Counts by state and account are read from the database at scrape time (so they are the truth,
across several daemons too); latencies, lateness, retries, rate-limit waits and adapter errors
are observed by this daemon as it sends.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from publisher.db import Database
from publisher.dispatch import DispatchEvent
from publisher.states import State
from publisher.store import D

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
LATENESS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 60, 300, 900, 3600)


class _DeliveryCounts:
    """`siar_deliveries{state, account}` straight from the database at each scrape."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("siar_deliveries", "Deliveries by state and account", labels=["state", "account"])
        with self.db.read() as conn:
            rows = conn.execute(select(D.c.state, D.c.account, func.count()).group_by(D.c.state, D.c.account)).all()
        for state, account, count in rows:
            family.add_metric([state, account], count)
        yield family


class Metrics:
    def __init__(self, db: Database) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_DeliveryCounts(db))
        labels = ["account", "platform"]
        self.publish_latency = Histogram(
            "siar_publish_latency_seconds", "From the request leaving to the platform's answer recorded",
            ["platform"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.lateness = Histogram(
            "siar_lateness_seconds", "Published time minus due time", ["platform"], buckets=LATENESS_BUCKETS,
            registry=self.registry)
        self.published = Counter("siar_published_total", "Deliveries published by this daemon", labels,
                                 registry=self.registry)
        self.retries = Counter("siar_retries_total", "Attempts that will be retried", labels, registry=self.registry)
        self.rate_limited = Counter("siar_rate_limit_waits_total", "Rate limits met", labels, registry=self.registry)
        self.rate_limit_seconds = Counter("siar_rate_limit_wait_seconds_total", "Seconds the platforms asked to wait",
                                          labels, registry=self.registry)
        self.errors = Counter("siar_adapter_errors_total", "Errors adapters raised, by class",
                              ["platform", "error_class"], registry=self.registry)
        self.last_sync = Gauge("siar_last_sync_timestamp_seconds", "When this daemon last synced the posts folder",
                               registry=self.registry)

    def observe(self, event: DispatchEvent) -> None:
        row: Any = event.row
        account, platform = row["account"], row["platform"]
        if event.kind == "error":
            self.errors.labels(platform, event.error_class or "unknown").inc()
            if event.error_class == "RateLimited":
                self.rate_limited.labels(account, platform).inc()
                if event.wait:
                    self.rate_limit_seconds.labels(account, platform).inc(event.wait)
            return
        if event.latency is not None and event.event not in ("held", "released"):
            self.publish_latency.labels(platform).observe(event.latency)
        if event.state is State.PUBLISHED and event.at is not None:
            self.published.labels(account, platform).inc()
            self.lateness.labels(platform).observe(max(0.0, (event.at - row["due_at"]).total_seconds()))
        elif event.state is State.RETRYING:
            self.retries.labels(account, platform).inc()

    def synced(self) -> None:
        self.last_sync.set(time.time())

    def serve(self, address: str) -> Any:
        host, _, port = address.rpartition(":")
        server, _thread = start_http_server(int(port), addr=host.strip("[]"), registry=self.registry)
        return server
