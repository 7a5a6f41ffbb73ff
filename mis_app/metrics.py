"""Prometheus metrics: what happened to requests, how long the stages took, bytes moved."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mis_app.http import ConnectionBudget
from mis_core.errors import Busy
from mis_core.model import StageTimes
from mis_core.service import InferenceService

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 50, 75, 120, 300, 600)


class Metrics:
    """The service's metrics; `watch` adds the gauges that read the service's own state."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # open fds, RSS, CPU time
        PlatformCollector(registry=self.registry)
        r = self.registry
        self.requests = Counter(
            "mis_inference_requests", "Inference requests by outcome code (ok or an error code)",
            ["code"], registry=r,
        )  # fmt: skip
        self.busy = Counter("mis_busy_rejections", "Requests refused as busy", registry=r)
        self.request_seconds = Histogram(
            "mis_inference_request_duration_seconds", "Inference requests, end to end",
            buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.stage_seconds = Histogram(
            "mis_stage_duration_seconds",
            "Time in each stage: receive, extract, job, pack, and delete (after the response)",
            ["stage"], buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.bytes_in = Counter("mis_received_bytes", "Upload bytes received", registry=r)
        self.bytes_out = Counter("mis_sent_bytes", "Output zip bytes sent", registry=r)
        Gauge("mis_asyncio_tasks", "Tasks on the event loop", registry=r).set_function(_task_count)

    def watch(self, service: InferenceService) -> None:
        r = self.registry
        Gauge("mis_in_flight_requests", "Requests being fulfilled", registry=r).set_function(
            lambda: service.status().in_flight
        )
        Gauge(
            "mis_deleting_workspaces", "Workspaces of finished requests being deleted", registry=r
        ).set_function(lambda: service.status().deleting)
        Gauge(
            "mis_cleanup_failures", "Workspace deletions that failed (each retry counts)",
            registry=r,
        ).set_function(lambda: service.status().cleanup_failures)  # fmt: skip
        Gauge(
            "mis_failed_deletions_retrying",
            "Workspaces whose deletion failed and is retried in the background", registry=r,
        ).set_function(lambda: service.status().retrying_deletions)  # fmt: skip

    def add(self, collectors: Iterable[Collector]) -> None:
        """Collectors a backend offers besides (the Kubernetes backend's API and watch counts)."""
        for collector in collectors:
            self.registry.register(collector)

    def watch_connections(self, budget: ConnectionBudget) -> None:
        self.registry.register(_Connections(budget))

    def observe_deletion(self, seconds: float) -> None:
        self.stage_seconds.labels("delete").observe(seconds)

    def observe(
        self, code: str, seconds: float, times: StageTimes | None, got: int, sent: int
    ) -> None:
        self.requests.labels(code).inc()
        if code == Busy.code:
            self.busy.inc()
            return
        self.request_seconds.observe(seconds)
        self.bytes_in.inc(got)
        self.bytes_out.inc(sent)
        if times is not None:
            for stage in ("receive", "extract", "job", "pack"):
                value = getattr(times, stage)
                if value:
                    self.stage_seconds.labels(stage).observe(value)


class _Connections(Collector):
    """Open connections, their bound, and those closed at once beyond it."""

    def __init__(self, budget: ConnectionBudget) -> None:
        self.budget = budget

    def collect(self) -> Iterator[Metric]:
        budget = self.budget
        yield GaugeMetricFamily("mis_open_connections", "Open HTTP connections", budget.open)
        yield GaugeMetricFamily(
            "mis_max_connections", "Open connections accepted at most (server.max_connections)",
            budget.most,
        )  # fmt: skip
        yield CounterMetricFamily(
            "mis_refused_connections",
            "New connections closed at once: server.max_connections were open", budget.refused,
        )  # fmt: skip


def _task_count() -> float:
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:  # scraped outside the loop
        return 0.0
