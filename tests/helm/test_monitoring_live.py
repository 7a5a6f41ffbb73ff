"""The chart's monitoring against the real thing: Prometheus, configured from the rendered
ServiceMonitor and PrometheusRule, scrapes a running MIS with the metrics token and fires the
alerts when studies fail and when MIS goes away."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from tests.harness.servers import Server, ServerFactory
from tests.helm.chart import find, mount_secret_as_the_kubelet_would
from tests.helm.monitoring import (
    FOREIGN_METRICS,
    PENDING_METRICS,
    dashboard,
    dashboard_queries,
    metric_names,
    mis_config,
    render_monitoring,
    rules_file,
)
from tests.helm.prometheus import STEP, Prometheus, running_prometheus
from tests.zips import make_zip

FAILING_STUDIES = 6
# Rules tuned to a test's time scale: a short window, no waiting period
QUICK_RULES = (
    "metrics.prometheusRule.failureRatio.window=20s",
    "metrics.prometheusRule.failureRatio.for=0s",
    "metrics.prometheusRule.failureRatio.minRequests=3",
    "metrics.prometheusRule.failureRatio.threshold=0.5",
    "metrics.prometheusRule.down.for=0s",
)


def scrape_config(
    docs: list[dict[str, Any]], target: str, secret: dict[str, str], workdir: Path
) -> dict[str, Any]:
    """What the Prometheus Operator makes of the ServiceMonitor, for a target outside a cluster:
    the job named after the Service, the namespace label, the endpoint's path, scheme and token
    (scraped every STEP instead of the endpoint's interval)."""
    monitor, service = find(docs, "ServiceMonitor"), find(docs, "Service")
    [endpoint] = monitor["spec"]["endpoints"]
    config: dict[str, Any] = {
        "job_name": service["metadata"]["name"],
        "metrics_path": endpoint["path"],
        "scheme": endpoint["scheme"],
        "scrape_interval": STEP,
        "static_configs": [
            {
                "targets": [target],
                "labels": {"namespace": monitor["spec"]["namespaceSelector"]["matchNames"][0]},
            }
        ],
    }
    if "authorization" in endpoint:
        credentials = endpoint["authorization"]["credentials"]
        token = workdir / "scrape-token"
        token.write_text(secret[credentials["key"]])
        config["authorization"] = {
            "type": endpoint["authorization"]["type"],
            "credentials_file": str(token),
        }
    return config


def fail_a_study(server: Server, workdir: Path) -> None:
    archive = make_zip(workdir / "input.zip", {"study/image.dcm": b"DICM", "_mode": b"fail"})
    with open(archive, "rb") as file:
        response = httpx.post(
            f"{server.url}/v1/inference",
            files={"file": ("in.zip", file)},
            headers={"Authorization": "Bearer user-token"},
            timeout=30,
        )
    assert response.status_code == 500, response.text
    assert response.json()["error"]["code"] == "map_failed"


def check_dashboard_queries(prometheus: Prometheus, docs: list[dict[str, Any]]) -> None:
    """Every panel's query is valid PromQL, and every MIS series it reads is scraped."""
    scraped = set(prometheus.api("label/__name__/values"))
    for expr in dashboard_queries(dashboard(docs)[1], rate_interval="20s"):
        prometheus.query(expr)  # fails on a query Prometheus refuses
        missing = metric_names(expr) - scraped - FOREIGN_METRICS - PENDING_METRICS
        assert not missing, f"{expr} reads {missing}, which MIS does not export"


def test_prometheus_fires_the_failure_ratio_alert_then_down(
    tmp_path: Path, mis_server: ServerFactory
) -> None:
    auth = tmp_path / "auth"
    docs = render_monitoring(
        "auth.existingSecret=mis-tokens", f"auth.mountPath={auth}", *QUICK_RULES
    )
    tokens = "# people\nuser-token\n# Prometheus\nprometheus-token\n"
    mount_secret_as_the_kubelet_would(docs, "mis-tokens", tokens)
    secret = {"tokens": tokens, "metrics-token": "prometheus-token\n"}
    chart_auth = {"server": {"auth": mis_config(docs)["server"]["auth"]}}  # its tokens file
    rules = rules_file(docs, tmp_path / "rules.yaml")
    release = {"job": "mis-monai-inference-service", "namespace": "radiology"}
    up = 'up{job="mis-monai-inference-service", namespace="radiology"}'
    requests = "mis_inference_requests_total"

    with ExitStack() as outlives_mis:
        with mis_server(tmp_path, chart_auth) as server:
            assert httpx.get(f"{server.url}/metrics").status_code == 401  # the token is needed
            target = server.url.removeprefix("http://")
            scrape = scrape_config(docs, target, secret, tmp_path)
            prometheus = outlives_mis.enter_context(running_prometheus(tmp_path, [scrape], rules))
            prometheus.wait_for(
                "a scrape with the token",
                lambda: [r["value"][1] for r in prometheus.query(up)] == ["1"],
            )
            prometheus.wait_for("MISDown to clear", lambda: not prometheus.firing("MISDown"))
            assert not prometheus.firing("MISFailureRatioHigh")

            # Prometheus counts a counter's rise from its first sample: the series of the code
            # must be scraped before the run of failures, or a fast run is seen as no rise
            fail_a_study(server, tmp_path)
            prometheus.wait_for(
                "the failure to be scraped",
                lambda: prometheus.query(f'{requests}{{code="map_failed"}}'),
            )
            for _ in range(FAILING_STUDIES):
                fail_a_study(server, tmp_path)
            prometheus.wait_for(
                "MISFailureRatioHigh to fire", lambda: prometheus.firing("MISFailureRatioHigh")
            )
            [alert] = prometheus.firing("MISFailureRatioHigh")
            assert alert["labels"] == {
                "alertname": "MISFailureRatioHigh",
                "severity": "warning",
                **release,
            }
            assert (
                alert["annotations"]["runbook_url"] == "docs/operating.md#alert-misfailureratiohigh"
            )
            assert "radiology/mis-monai-inference-service" in alert["annotations"]["description"]
            check_dashboard_queries(prometheus, docs)

        # MIS has stopped; Prometheus goes on scraping its address
        prometheus.wait_for("MISDown to fire", lambda: prometheus.firing("MISDown"))
        [down] = prometheus.firing("MISDown")
        assert down["labels"] == {
            "alertname": "MISDown",
            "severity": "critical",
            "instance": target,
            **release,
        }
