"""Prometheus metrics, one registry per app so several apps can live in one process."""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _PoolCollector(Collector):
    def __init__(self, read_pool: Callable[[], dict[str, int]]) -> None:
        self._read_pool = read_pool

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "dispatch_db_pool_connections",
            "Database pool connections by state",
            labels=["state"],
        )
        for state, value in self._read_pool().items():
            family.add_metric([state], value)
        yield family


class Metrics:
    """Every metric Dispatch exports."""

    def __init__(self) -> None:
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "dispatch_http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "dispatch_http_request_duration_seconds",
            "HTTP request latency by method and route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.build_info = Gauge(
            "dispatch_build_info",
            "Build information; the value is always 1",
            ["version", "python", "database"],
            registry=self.registry,
        )
        self.telemetry_events = Counter(
            "dispatch_telemetry_events",
            "Telemetry events by outcome (queued, sent, dropped, failed)",
            ["outcome"],
            registry=self.registry,
        )
        self.queue_jobs = Gauge(
            "dispatch_queue_jobs",
            "Jobs in the queue by state and kind, read at scrape time",
            ["state", "kind"],
            registry=self.registry,
        )
        self.queue_oldest_available = Gauge(
            "dispatch_queue_oldest_available_seconds",
            "How long the oldest available job has been due (0 when none waits)",
            registry=self.registry,
        )
        self.queue_claim_wait = Histogram(
            "dispatch_queue_claim_wait_seconds",
            "From a job being due to a worker claiming it (this process's workers)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=self.registry,
        )
        self.queue_attempts = Counter(
            "dispatch_queue_attempts",
            "Finished job attempts by kind and outcome (this process's workers)",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.queue_nodes = Gauge(
            "dispatch_queue_nodes",
            "Remote nodes by status, read at scrape time",
            ["status"],
            registry=self.registry,
        )
        self.queue_node_capacity = Gauge(
            "dispatch_queue_node_capacity",
            "Capacity of active remote nodes: offered in total, and in use by their leases",
            ["use"],
            registry=self.registry,
        )
        self.gateway_tasks = Gauge(
            "dispatch_gateway_tasks",
            "Gateway tasks by status, read at scrape time",
            ["status"],
            registry=self.registry,
        )
        self.gateway_breaker = Gauge(
            "dispatch_gateway_breaker_state",
            "1 for each resource's current breaker state (closed, open, half_open), at scrape time",
            ["resource", "state"],
            registry=self.registry,
        )
        self.gateway_ingested = Counter(
            "dispatch_gateway_ingested",
            "Requests accepted on /api/{path} by this process, by result (queued, held, replayed)",
            ["result"],
            registry=self.registry,
        )
        self.gateway_requests = Counter(
            "dispatch_gateway_requests",
            "Delivery requests sent by this process, by resource and outcome",
            ["resource", "outcome"],
            registry=self.registry,
        )
        self.gateway_request_seconds = Histogram(
            "dispatch_gateway_request_seconds",
            "Duration of delivery requests sent by this process, by resource",
            ["resource"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.gateway_failovers = Counter(
            "dispatch_gateway_failovers",
            "Tasks delivered by a resource other than the first one tried",
            registry=self.registry,
        )
        self.provider_requests = Counter(
            "dispatch_provider_requests",
            "Requests this process sent to catalogue providers, by provider and status (or error)",
            ["provider", "status"],
            registry=self.registry,
        )
        self.provider_request_seconds = Histogram(
            "dispatch_provider_request_seconds",
            "Duration of requests to catalogue providers, by provider",
            ["provider"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.catalog_products_written = Counter(
            "dispatch_catalog_products_written",
            "Products written by scrapes and live searches, by provider and result",
            ["provider", "result"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "dispatch_rate_limited",
            "Requests refused by a rate limit, by route group",
            ["group"],
            registry=self.registry,
        )

    def set_queue_depth(self, counts: list[tuple[str, str, int]], oldest_age: float) -> None:
        """Replace the depth gauges with a fresh reading (kinds that drained disappear)."""
        self.queue_jobs.clear()
        for state, kind, count in counts:
            self.queue_jobs.labels(state, kind).set(count)
        self.queue_oldest_available.set(oldest_age)

    def set_nodes(self, by_status: dict[str, int], offered: int, in_use: int) -> None:
        for status in ("active", "offline"):
            self.queue_nodes.labels(status).set(by_status.get(status, 0))
        self.queue_node_capacity.labels("offered").set(offered)
        self.queue_node_capacity.labels("in_use").set(in_use)

    def set_gateway(self, tasks: dict[str, int], breakers: list[tuple[str, str]]) -> None:
        """Replace the gateway gauges with a fresh reading (deleted resources disappear)."""
        for status, count in tasks.items():
            self.gateway_tasks.labels(status).set(count)
        self.gateway_breaker.clear()
        for resource, current in breakers:
            for state in ("closed", "open", "half_open"):
                self.gateway_breaker.labels(resource, state).set(1 if state == current else 0)

    def set_build_info(self, version: str, database: str) -> None:
        self.build_info.labels(version, platform.python_version(), database).set(1)

    def watch_pool(self, read_pool: Callable[[], dict[str, int]]) -> None:
        self.registry.register(_PoolCollector(read_pool))

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:
            # labels() hashes and locks on every call; routes are few, so keep the children.
            children = (
                self.http_requests.labels(method, route, str(status)),
                self.http_latency.labels(method, route),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
