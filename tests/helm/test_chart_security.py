"""What the chart deploys passes the `restricted` Pod Security Standard, and its MAP Jobs get
no network and no credential in plain sight."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mis_adapters.kubernetes.job import build_job
from mis_adapters.kubernetes.network import job_network_policy
from mis_app.bootstrap import job_options, sample_job_request
from tests.helm.chart import CHART, find, mis_settings_from, render
from tests.k8s.pss import pod_of, violations

CLAIM_VALUES = [
    None,
    CHART / "ci" / "multi-node-rwx-values.yaml",
    CHART / "ci" / "existing-claim-values.yaml",
]


def job_from(docs: list[dict[str, Any]], tmp_path: Path) -> dict[str, Any]:
    """The Job MIS builds from the chart's ConfigMap, through its own settings loader."""
    settings = mis_settings_from(docs, tmp_path)
    return build_job(sample_job_request(settings), job_options(settings))


def pods(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in ("Deployment", "Pod")]


@pytest.mark.parametrize(
    "values", CLAIM_VALUES, ids=["default", "multi-node-rwx", "existing-claim"]
)
def test_every_pod_passes_restricted_with_a_claim(values: Path | None, tmp_path: Path) -> None:
    docs = render(*([values] if values else []))
    for doc in [*pods(docs), job_from(docs, tmp_path)]:
        assert violations(*pod_of(doc), "restricted") == [], doc["kind"]


def test_a_host_path_install_fails_restricted_by_its_host_path_alone(tmp_path: Path) -> None:
    """What the chart README says: with payload.hostPath the namespace must allow
    `privileged` pods; nothing else of the pods needs more than `restricted`."""
    docs = render(CHART / "ci" / "single-node-hostpath-values.yaml")
    for doc in [find(docs, "Deployment"), job_from(docs, tmp_path)]:
        assert violations(*pod_of(doc), "restricted") == ["HostPath Volumes", "Volume Types"]


def job_policy(docs: list[dict[str, Any]]) -> dict[str, Any]:
    [policy] = [
        d
        for d in docs
        if d["kind"] == "NetworkPolicy" and d["metadata"]["name"].endswith("-map-jobs")
    ]
    return policy


def test_map_jobs_get_no_network_by_default(tmp_path: Path) -> None:
    docs = render()
    policy = job_policy(docs)
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"] == policy["spec"]["egress"] == []
    job = job_from(docs, tmp_path)
    selected = policy["spec"]["podSelector"]["matchLabels"]
    assert selected.items() <= job["spec"]["template"]["metadata"]["labels"].items()
    mis_pod_labels = find(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert not selected.items() <= mis_pod_labels.items()  # MIS itself reaches the API
    # the same policy `mis kubernetes render-job` prints for installations without the chart
    expected = job_network_policy(
        job["metadata"]["labels"]["app.kubernetes.io/instance"], "radiology"
    )
    assert policy["spec"] == expected["spec"]


def test_egress_can_be_opened_for_a_map_that_must_reach_a_service(tmp_path: Path) -> None:
    values = tmp_path / "egress.yaml"
    values.write_text(
        "job:\n  networkPolicy:\n    egress:\n"
        "      - to: [{podSelector: {matchLabels: {app: model-server}}}]\n"
        "        ports: [{port: 8080, protocol: TCP}]\n"
    )
    policy = job_policy(render(values))
    assert policy["spec"]["egress"] == [
        {
            "to": [{"podSelector": {"matchLabels": {"app": "model-server"}}}],
            "ports": [{"port": 8080, "protocol": "TCP"}],
        }
    ]
    assert policy["spec"]["ingress"] == []


def test_secret_env_reaches_the_job_as_references_only(tmp_path: Path) -> None:
    values = tmp_path / "secrets.yaml"
    values.write_text(
        "map:\n  env: {API_TOKEN: placeholder, MODE: fast}\n"
        "  secretEnv: {API_TOKEN: {name: map-credentials, key: token}}\n"
    )
    docs = render(values)
    env = job_from(docs, tmp_path)["spec"]["template"]["spec"]["containers"][0]["env"]
    [token] = [e for e in env if e["name"] == "API_TOKEN"]  # the Secret wins over map.env
    assert token == {
        "name": "API_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "map-credentials", "key": "token"}},
    }
    assert {"name": "MODE", "value": "fast"} in env


def test_the_map_container_has_a_scratch_space_request_and_limit(tmp_path: Path) -> None:
    job = job_from(render(sets=("job.ephemeralStorage=10Gi",)), tmp_path)
    resources = job["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["requests"]["ephemeral-storage"] == "10Gi"
    assert resources["limits"]["ephemeral-storage"] == "10Gi"
