"""The chart's monitoring: a ServiceMonitor, a PrometheusRule and a Grafana dashboard, off by
default; the rules checked and unit-tested by Prometheus's own `promtool`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.harness.repo import REPO
from tests.helm.chart import CHART, KUBERNETES_VERSIONS, find, helm, render, schema_refusal
from tests.helm.monitoring import (
    ALERTS,
    ALL_ON,
    FOREIGN_METRICS,
    MONITORING_KINDS,
    PENDING_METRICS,
    alerts,
    dashboard,
    dashboard_queries,
    metric_names,
    promtool,
    render_monitoring,
    rule_groups,
    rules_file,
)

JOB, NAMESPACE, INSTANCE = "mis-monai-inference-service", "radiology", "10.1.2.3:8000"
MIS = f'job="{JOB}", namespace="{NAMESPACE}", instance="{INSTANCE}"'
KSM = f'job="kube-state-metrics", namespace="{NAMESPACE}", deployment="{JOB}"'
RELEASE = {"job": JOB, "namespace": NAMESPACE}


def test_monitoring_is_off_by_default() -> None:
    docs = render()
    assert not MONITORING_KINDS & {d["kind"] for d in docs}
    assert not [d for d in docs if d["metadata"]["name"].endswith("-dashboard")]


def test_monitoring_renders_its_three_objects_and_the_rest_still_validates() -> None:
    docs = render_monitoring("auth.existingSecret=mis-tokens")
    assert find(docs, "ServiceMonitor")["apiVersion"] == "monitoring.coreos.com/v1"
    assert find(docs, "PrometheusRule")["apiVersion"] == "monitoring.coreos.com/v1"
    config_map, _ = dashboard(docs)
    assert config_map["apiVersion"] == "v1"  # a core kind: validated with the rest below
    for doc in docs:  # the core kinds (the schemas know no CRDs; their shape is tested below)
        if doc["kind"] not in MONITORING_KINDS:
            for version in KUBERNETES_VERSIONS:
                kubernetes_validate.validate(doc, version, strict=True)
    sets = [arg for item in (*ALL_ON, "auth.existingSecret=mis-tokens") for arg in ("--set", item)]
    lint = helm("lint", "--strict", str(CHART), *sets)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_the_service_monitor_scrapes_the_service_metrics() -> None:
    docs = render_monitoring("metrics.serviceMonitor.labels.release=kube-prometheus-stack")
    monitor, service = find(docs, "ServiceMonitor"), find(docs, "Service")
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    spec = monitor["spec"]
    assert set(spec) == {"selector", "namespaceSelector", "endpoints"}
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    [endpoint] = spec["endpoints"]
    assert endpoint == {
        "port": service["spec"]["ports"][0]["name"],
        "path": "/metrics",
        "scheme": "http",
        "interval": "30s",
        "scrapeTimeout": "10s",
    }  # no token: without auth /metrics is open
    # the alerts select the series of the job Prometheus names after the Service
    assert f'job="{service["metadata"]["name"]}"' in alerts(docs)["MISDown"]["expr"]


def test_with_auth_the_service_monitor_sends_a_token_from_the_auth_secret() -> None:
    docs = render_monitoring("auth.existingSecret=mis-tokens")
    [endpoint] = find(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "mis-tokens", "key": "metrics-token"},
    }
    docs = render_monitoring("auth.existingSecret=s", "metrics.serviceMonitor.tokenKey=prom")
    [endpoint] = find(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["authorization"]["credentials"] == {"name": "s", "key": "prom"}


def test_the_network_policy_lets_prometheus_in_when_told_who_it_is() -> None:
    peer = (
        "metrics.serviceMonitor.networkPolicyFrom[0].namespaceSelector.matchLabels.name=monitoring"
    )
    docs = render_monitoring("networkPolicy.enabled=true", peer)
    [policy] = [d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == JOB]
    assert policy["spec"]["ingress"][1] == {
        "from": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
        "ports": [{"port": "http", "protocol": "TCP"}],
    }


def test_the_rule_has_the_alerts_each_with_a_severity_and_a_runbook() -> None:
    docs = render_monitoring("metrics.prometheusRule.alertLabels.team=radiology-it")
    rule = find(docs, "PrometheusRule")
    assert set(rule) == {"apiVersion", "kind", "metadata", "spec"}
    [group] = rule_groups(docs)
    assert set(group) == {"name", "rules"}
    found = alerts(docs)
    assert set(found) == ALERTS
    for name, alert in found.items():
        assert set(alert) <= {"alert", "expr", "for", "labels", "annotations"}
        assert alert["labels"]["severity"] in {"critical", "warning"}
        assert alert["labels"]["team"] == "radiology-it"
        assert set(alert["annotations"]) == {"summary", "description", "runbook_url"}
        assert alert["annotations"]["runbook_url"] == f"docs/operating.md#alert-{name.lower()}"


def test_every_alert_has_its_runbook_line_in_the_operating_page() -> None:
    page = (REPO / "docs" / "operating.md").read_text()
    section = page.split("## Alerts", 1)[1].split("\n## ", 1)[0]
    base = "https://git.example.org/docs/operating.md"
    docs = render_monitoring(f"metrics.prometheusRule.runbookUrl={base}")
    for name, alert in alerts(docs).items():
        anchor = f"alert-{name.lower()}"
        assert alert["annotations"]["runbook_url"] == f"{base}#{anchor}"
        [line] = [line for line in section.splitlines() if f'id="{anchor}"' in line]
        assert f"**{name}**" in line  # the line names the alert and says what to do


@pytest.mark.parametrize(
    "sets",
    [
        (),
        ("metrics.prometheusRule.failureRatio.codes={map_failed}",),
        (
            "metrics.prometheusRule.failureRatio.threshold=0.05",
            "metrics.prometheusRule.down.for=1m",
        ),
    ],
    ids=["default", "one-code", "tuned"],
)
def test_promtool_accepts_the_rules(tmp_path: Path, sets: tuple[str, ...]) -> None:
    checked = promtool(
        "check", "rules", str(rules_file(render_monitoring(*sets), tmp_path / "r.yaml"))
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout


def alternating(count: int) -> str:
    return " ".join("1" if i % 2 == 0 else "0" for i in range(count))


# (alert, input series, minutes after the start, the alerts' labels then (none: silent))
CASES: list[tuple[str, dict[str, str], int, list[dict[str, str]]]] = [
    ("MISDown", {f"up{{{MIS}}}": "1 1 0x10"}, 8, [{"instance": INSTANCE, **RELEASE}]),
    ("MISDown", {f"up{{{MIS}}}": "1x10"}, 8, []),
    ("MISDown", {'up{job="other"}': "1x10"}, 6, [RELEASE]),  # no target at all
    (
        "MISNotReady",
        {
            f"kube_deployment_status_replicas_available{{{KSM}}}": "0x20",
            f"kube_deployment_spec_replicas{{{KSM}}}": "1x20",
        },
        11,
        [{"job": "kube-state-metrics", "namespace": NAMESPACE, "deployment": JOB}],
    ),
    (
        "MISNotReady",
        {
            f"kube_deployment_status_replicas_available{{{KSM}}}": "1x20",
            f"kube_deployment_spec_replicas{{{KSM}}}": "1x20",
        },
        11,
        [],
    ),
    (
        "MISFailureRatioHigh",
        {
            f'mis_inference_requests_total{{{MIS}, code="ok"}}': "0+3x40",
            f'mis_inference_requests_total{{{MIS}, code="map_failed"}}': "0+2x40",
        },
        25,
        [RELEASE],
    ),
    (  # the client's mistakes are not the service failing
        "MISFailureRatioHigh",
        {
            f'mis_inference_requests_total{{{MIS}, code="ok"}}': "0+1x40",
            f'mis_inference_requests_total{{{MIS}, code="invalid_input"}}': "0+5x40",
        },
        25,
        [],
    ),
    (  # below the threshold
        "MISFailureRatioHigh",
        {
            f'mis_inference_requests_total{{{MIS}, code="ok"}}': "0+9x40",
            f'mis_inference_requests_total{{{MIS}, code="timeout"}}': "0+1x40",
        },
        25,
        [],
    ),
    (  # too few studies to judge
        "MISFailureRatioHigh",
        {f'mis_inference_requests_total{{{MIS}, code="map_failed"}}': "0 1 2 2x40"},
        10,
        [],
    ),
    (
        "MISWorkspacesNotDeleted",
        {f"mis_deleting_workspaces{{{MIS}}}": "1x30"},
        20,
        [{"instance": INSTANCE, **RELEASE}],
    ),
    (
        "MISWorkspacesNotDeleted",
        {
            f"mis_deleting_workspaces{{{MIS}}}": "0x30",
            f"mis_failed_deletions_retrying{{{MIS}}}": "1x30",
        },
        20,
        [{"instance": INSTANCE, **RELEASE}],
    ),
    (  # deletions that come and go
        "MISWorkspacesNotDeleted",
        {f"mis_deleting_workspaces{{{MIS}}}": alternating(30)},
        20,
        [],
    ),
    (
        "MISCleanupFailures",
        {f"mis_cleanup_failures{{{MIS}}}": "0 0 0 0 0 1x20"},
        8,
        [{"instance": INSTANCE, **RELEASE}],
    ),
    ("MISCleanupFailures", {f"mis_cleanup_failures{{{MIS}}}": "2x30"}, 20, []),  # long ago
    ("MISCleanupFailures", {f"mis_cleanup_failures{{{MIS}}}": "3x10 0x20"}, 15, []),  # restart
    (
        "MISMapTimingOut",
        {f'mis_inference_requests_total{{{MIS}, code="timeout"}}': "0+1x40"},
        30,
        [RELEASE],
    ),
    (
        "MISMapTimingOut",
        {f'mis_inference_requests_total{{{MIS}, code="timeout"}}': "0 1x40"},
        30,
        [],
    ),
]
IDS = [
    "down",
    "down-up",
    "down-absent",
    "not-ready",
    "not-ready-ready",
    "failure-ratio",
    "failure-ratio-client-errors",
    "failure-ratio-below",
    "failure-ratio-few",
    "not-deleted-pending",
    "not-deleted-retrying",
    "not-deleted-churn",
    "cleanup-failure",
    "cleanup-failure-old",
    "cleanup-failure-restart",
    "map-timeouts",
    "map-timeout-once",
]


@pytest.mark.parametrize(("alert", "series", "minutes", "expected"), CASES, ids=IDS)
def test_each_alert_fires_when_it_should_and_only_then(
    tmp_path: Path, alert: str, series: dict[str, str], minutes: int, expected: list[dict[str, str]]
) -> None:
    docs = render_monitoring()
    severity = alerts(docs)[alert]["labels"]["severity"]
    rules_file(docs, tmp_path / "rules.yaml", annotations=False)
    test = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series.items()],
                "alert_rule_test": [
                    {
                        "eval_time": f"{minutes}m",
                        "alertname": alert,
                        "exp_alerts": [
                            {"exp_labels": {"severity": severity, **labels}} for labels in expected
                        ],
                    }
                ],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test, sort_keys=False))
    result = promtool("test", "rules", str(tmp_path / "test.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_is_a_configmap_for_grafana_sidecar_one_per_release() -> None:
    docs = render_monitoring("metrics.dashboard.annotations.grafana_folder=Radiology")
    config_map, board = dashboard(docs)
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Radiology"}
    relabelled = render_monitoring(
        "metrics.dashboard.labels.grafana_dashboard=null", "metrics.dashboard.labels.dashboards=mis"
    )
    assert "grafana_dashboard" not in dashboard(relabelled)[0]["metadata"]["labels"]
    assert dashboard(relabelled)[0]["metadata"]["labels"]["dashboards"] == "mis"
    constants = {
        v["name"]: v["query"] for v in board["templating"]["list"] if v["type"] == "constant"
    }
    assert constants == {"namespace": NAMESPACE, "job": JOB, "deployment": JOB}
    other = helm("template", "other", str(CHART), "-n", NAMESPACE, "--set", ALL_ON[2])
    assert other.returncode == 0, other.stderr
    other_board = dashboard([d for d in yaml.safe_load_all(other.stdout) if d])[1]
    assert other_board["uid"] != board["uid"]
    assert len(board["uid"]) <= 40  # Grafana's limit
    assert "radiology/mis" in board["title"]


def test_the_dashboard_shows_requests_latency_busy_readiness_and_deletions() -> None:
    _, board = dashboard(render_monitoring())
    queries = dashboard_queries(board)
    read = set().union(*(metric_names(q) for q in queries))
    assert {
        "mis_inference_requests_total",
        "mis_inference_request_duration_seconds_bucket",
        "mis_busy_rejections_total",
        "kube_deployment_status_replicas_available",
        "mis_deleting_workspaces",
        "mis_cleanup_failures",
    } <= read
    assert all(f'namespace="{NAMESPACE}"' in q for q in queries)  # this release's series only
    assert not [q for q in queries if "$" in q]
    mis_metrics_source = (REPO / "mis_app" / "metrics.py").read_text()
    for name in read - FOREIGN_METRICS - PENDING_METRICS:  # the live test checks them scraped
        base = re.sub(r"_(total|bucket|count|sum)$", "", name)
        assert f'"{base}"' in mis_metrics_source, name


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"metrics": {"prometheusRule": {"failureRatio": {"threshold": 25}}}}, "threshold"),
        ({"metrics": {"prometheusRule": {"down": {"for": "5 minutes"}}}}, "/down/for"),
        ({"metrics": {"serviceMonitor": {"enable": True}}}, "enable"),
    ],
    ids=["ratio-as-percent", "bad-duration", "misspelt-key"],
)
def test_bad_monitoring_values_are_refused(
    tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    assert message in schema_refusal(values, tmp_path)
