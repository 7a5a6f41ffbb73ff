"""The Kubernetes backend's own counts as Prometheus collectors, read at each scrape.

The backend offers them (`KubernetesJobBackend.metrics_collectors`); the bootstrap registers
them with the service's metrics.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from mis_adapters.kubernetes.watch import WatchCounts


class WatchCollector(Collector):
    """The watches' restarts and resyncs (`WatchCounts`)."""

    def __init__(self, counts: WatchCounts) -> None:
        self._counts = counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        restarts = CounterMetricFamily(
            "mis_kubernetes_watch_restarts",
            "Job and pod watches started again, by kind and cause: closed (by the server), "
            "expired (410 Gone: listed again), error (429, 5xx, a cut or refused connection)",
            labels=["kind", "cause"],
        )
        for (kind, cause), value in sorted(self._counts.restarts.items()):
            restarts.add_metric([kind, cause], value)
        yield restarts
        resyncs = CounterMetricFamily(
            "mis_kubernetes_watch_resyncs",
            "Job and pod watches opened again after one was silent for kubernetes.resync_seconds "
            "(from their last version; listed again the second time in a row)",
            labels=["kind"],
        )
        for kind, value in sorted(self._counts.resyncs.items()):
            resyncs.add_metric([kind], value)
        yield resyncs


class ApiRetries(Collector):
    """The backend's tally of Kubernetes API calls tried again, as a counter."""

    def __init__(self, tally: Counter[tuple[str, str]]) -> None:
        self.tally = tally

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "mis_kubernetes_api_retries",
            "Kubernetes API calls tried again, by verb and reason (a status, connection, timeout)",
            labels=["verb", "reason"],
        )
        for (verb, reason), count in sorted(self.tally.items()):
            family.add_metric([verb, reason], count)
        yield family
