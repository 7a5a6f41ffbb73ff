"""The chart's monitoring objects, rendered by the real `helm`, and what they refer to."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.harness.unavailable import require_tool
from tests.helm.chart import find, render

ALL_ON = (
    "metrics.serviceMonitor.enabled=true",
    "metrics.prometheusRule.enabled=true",
    "metrics.dashboard.enabled=true",
)
MONITORING_KINDS = {"ServiceMonitor", "PrometheusRule"}
ALERTS = {
    "MISDown",
    "MISNotReady",
    "MISFailureRatioHigh",
    "MISWorkspacesNotDeleted",
    "MISCleanupFailures",
    "MISMapTimingOut",
}
# Series the rules and the dashboard read that MIS does not export itself
FOREIGN_METRICS = {
    "up",
    "kube_deployment_status_replicas_available",
    "kube_deployment_spec_replicas",
}
# Exported by MIS once background deletion retries land (the `conn` work); until then its
# absence only leaves its part of an alert and a panel empty.
PENDING_METRICS = {"mis_failed_deletions_retrying"}


def render_monitoring(*sets: str) -> list[dict[str, Any]]:
    return render(sets=(*ALL_ON, *sets))


def rule_groups(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = find(docs, "PrometheusRule")["spec"]["groups"]
    return groups


def alerts(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for group in rule_groups(docs) for rule in group["rules"]}


def mis_config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """MIS's configuration file from its ConfigMap (the dashboard has one too)."""
    [config_map] = [d for d in docs if d["kind"] == "ConfigMap" and "mis.yaml" in d["data"]]
    config: dict[str, Any] = yaml.safe_load(config_map["data"]["mis.yaml"])
    return config


def dashboard(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The dashboard's ConfigMap and its parsed JSON."""
    [config_map] = [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")
    ]
    [text] = config_map["data"].values()
    return config_map, json.loads(text)


def dashboard_queries(board: dict[str, Any], rate_interval: str = "1m") -> list[str]:
    """Every panel's PromQL, with the dashboard's constants and Grafana's interval filled in."""
    constants = {
        v["name"]: v["query"] for v in board["templating"]["list"] if v["type"] == "constant"
    }
    queries = []
    for panel in board["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", rate_interval)
            for name, value in constants.items():
                expr = expr.replace(f"${name}", value)
            queries.append(expr)
    return queries


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression reads (MIS's, kube-state-metrics' and `up`)."""
    names = set(re.findall(r"\b((?:mis|kube)_[a-z0-9_]+)\b", expr))
    if re.search(r"\bup\{", expr):
        names.add("up")
    return names


def rules_file(docs: list[dict[str, Any]], path: Path, annotations: bool = True) -> Path:
    """The PrometheusRule's spec as a Prometheus rule file."""
    groups = rule_groups(docs)
    if not annotations:  # promtool's unit tests compare every annotation; they test the exprs
        groups = [
            {**g, "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in g["rules"]]}
            for g in groups
        ]
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("promtool"), *args], capture_output=True, text=True, timeout=60
    )
