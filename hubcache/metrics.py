"""Prometheus metrics of one daemon (its own registry: no process-global state)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.downloads = Counter(
            "hubcache_downloads", "Model downloads by result", ["result"], registry=r
        )
        self.fetched_bytes = Counter(
            "hubcache_fetched_bytes", "Bytes received from origins and mirrors", registry=r
        )
        self.cache_bytes = Gauge("hubcache_cache_bytes", "Bytes of published models", registry=r)
        self.cache_entries = Gauge("hubcache_cache_entries", "Published models", registry=r)
        self.jobs_in_flight = Gauge("hubcache_jobs_in_flight", "Jobs queued or running", registry=r)
        self.resolve_seconds = Histogram(
            "hubcache_resolve_seconds",
            "Time to answer /v1/resolve",
            ["source"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 5, 30, 120, 600, 3600),
            registry=r,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
