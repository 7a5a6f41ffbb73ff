"""The MAP's Job passes the `restricted` Pod Security Standard, checked by tests/k8s/pss.py,
whose every control is first shown to catch what it must."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mis_adapters.kubernetes.job import build_job
from mis_app.bootstrap import job_options, sample_job_request
from mis_app.settings import Settings
from tests.k8s.pss import pod_of, violations

COMPLIANT: dict[str, Any] = {
    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    "containers": [
        {
            "name": "map",
            "image": "map:1",
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
            },
        }
    ],
    "volumes": [{"name": "payload", "persistentVolumeClaim": {"claimName": "payload"}}],
}


def container(spec: dict[str, Any]) -> dict[str, Any]:
    return spec["containers"][0]["securityContext"]


MUTATIONS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "host-network": (lambda s: s.update(hostNetwork=True), "Host Namespaces"),
    "host-pid": (lambda s: s.update(hostPID=True), "Host Namespaces"),
    "privileged": (lambda s: container(s).update(privileged=True), "Privileged Containers"),
    "sys-admin": (
        lambda s: container(s)["capabilities"].update(add=["SYS_ADMIN"]),
        "Capabilities",
    ),
    "host-port": (lambda s: s["containers"][0].update(ports=[{"hostPort": 80}]), "Host Ports"),
    "selinux-user": (
        lambda s: s["securityContext"].update(seLinuxOptions={"user": "root"}),
        "SELinux",
    ),
    "proc-mount": (lambda s: container(s).update(procMount="Unmasked"), "/proc Mount Type"),
    "unsafe-sysctl": (
        lambda s: s["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
        "Sysctls",
    ),
    "nfs-volume": (
        lambda s: s["volumes"].append({"name": "n", "nfs": {"server": "x", "path": "/"}}),
        "Volume Types",
    ),
    "escalation-unset": (
        lambda s: container(s).pop("allowPrivilegeEscalation"),
        "Privilege Escalation",
    ),
    "root-allowed": (lambda s: s["securityContext"].pop("runAsNonRoot"), "Running as Non-root"),
    "container-root": (lambda s: container(s).update(runAsNonRoot=False), "Running as Non-root"),
    "uid-0": (lambda s: container(s).update(runAsUser=0), "Running as Non-root user"),
    "seccomp-unset": (lambda s: s["securityContext"].pop("seccompProfile"), "Seccomp (restricted)"),
    "keeps-capabilities": (
        lambda s: container(s).pop("capabilities"),
        "Capabilities (restricted)",
    ),
    "adds-net-raw": (
        lambda s: container(s)["capabilities"].update(add=["NET_RAW"]),
        "Capabilities (restricted)",
    ),
}


def test_the_checker_passes_a_compliant_pod() -> None:
    assert violations({}, COMPLIANT, "restricted") == []


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_the_checker_names_each_control_a_pod_fails(mutation: str) -> None:
    mutate, control = MUTATIONS[mutation]
    spec = copy.deepcopy(COMPLIANT)
    mutate(spec)
    assert control in violations({}, spec, "restricted")


def test_host_path_fails_baseline_too_and_unconfined_seccomp_fails_both() -> None:
    spec = copy.deepcopy(COMPLIANT)
    spec["volumes"] = [{"name": "payload", "hostPath": {"path": "/srv"}}]
    assert violations({}, spec, "baseline") == ["HostPath Volumes"]
    spec = copy.deepcopy(COMPLIANT)
    spec["securityContext"]["seccompProfile"] = {"type": "Unconfined"}
    assert "Seccomp" in violations({}, spec, "baseline")


def settings(tmp_path: Path, **volume: str) -> Settings:
    return Settings.model_validate(
        {
            "backend": "kubernetes",
            "server": {"payload_dir": str(tmp_path)},
            "map": {"image": "map:1"},
            "kubernetes": {"payload_volume": volume},
        }
    )


def test_the_job_with_mis_defaults_passes_restricted(tmp_path: Path) -> None:
    configured = settings(tmp_path, claim_name="payload")
    job = build_job(sample_job_request(configured), job_options(configured))
    assert violations(*pod_of(job), "restricted") == []


def test_a_host_path_payload_is_the_one_thing_that_fails_restricted(tmp_path: Path) -> None:
    """Why the chart README says: hostPath needs a `privileged` namespace; a claim does not."""
    configured = settings(tmp_path, host_path="/srv/mis/payload")
    job = build_job(sample_job_request(configured), job_options(configured))
    assert violations(*pod_of(job), "restricted") == ["HostPath Volumes", "Volume Types"]
