"""A checker for the Pod Security Standards (baseline and restricted), for the tests.

It implements the controls as the Kubernetes documentation's "Pod Security Standards" page
lists them (the profiles the Pod Security admission controller enforces), for a pod spec
and its metadata; `violations` names each control a pod fails. Only what a pod spec can
express is checked (no Windows pods, no version-specific exemptions).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}  # fmt: skip
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}  # fmt: skip
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"


def pod_of(obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metadata, spec) of the pod a Pod, Job, Deployment or other workload makes."""
    if obj["kind"] == "Pod":
        return obj["metadata"], obj["spec"]
    template = obj["spec"]["template"]
    return template.get("metadata") or {}, template["spec"]


def violations(metadata: dict[str, Any], spec: dict[str, Any], level: str) -> list[str]:
    """The controls of `level` ("baseline" or "restricted") that the pod fails."""
    found = list(_baseline(metadata, spec))
    if level == "restricted":
        found += _restricted(spec)
    return found


def _containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key in ("containers", "initContainers", "ephemeralContainers"):
        yield from spec.get(key) or []


def _contexts(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The pod's security context, then each container's (empty when unset)."""
    yield spec.get("securityContext") or {}
    for container in _containers(spec):
        yield container.get("securityContext") or {}


def _baseline(metadata: dict[str, Any], spec: dict[str, Any]) -> Iterator[str]:
    contexts = list(_contexts(spec))
    if any((c.get("windowsOptions") or {}).get("hostProcess") for c in contexts):
        yield "HostProcess"
    if any(spec.get(key) for key in ("hostNetwork", "hostPID", "hostIPC")):
        yield "Host Namespaces"
    if any(c.get("privileged") for c in contexts[1:]):
        yield "Privileged Containers"
    if any(set((c.get("capabilities") or {}).get("add") or []) - BASELINE_CAPABILITIES for c in contexts[1:]):  # fmt: skip
        yield "Capabilities"
    if any("hostPath" in volume for volume in spec.get("volumes") or []):
        yield "HostPath Volumes"
    if any(port.get("hostPort") for c in _containers(spec) for port in c.get("ports") or []):
        yield "Host Ports"
    yield from _baseline_profiles(metadata, spec, contexts)


def _baseline_profiles(
    metadata: dict[str, Any], spec: dict[str, Any], contexts: list[dict[str, Any]]
) -> Iterator[str]:
    annotations = metadata.get("annotations") or {}
    apparmor = [v for k, v in annotations.items() if k.startswith(APPARMOR_ANNOTATION)]
    if any(v != "runtime/default" and not v.startswith("localhost/") for v in apparmor) or any(
        (c.get("appArmorProfile") or {}).get("type", "RuntimeDefault") == "Unconfined"
        for c in contexts
    ):
        yield "AppArmor"
    for options in (c.get("seLinuxOptions") for c in contexts):
        if options and (
            options.get("type", "") not in SELINUX_TYPES or "user" in options or "role" in options
        ):
            yield "SELinux"
            break
    if any(c.get("procMount", "Default") != "Default" for c in contexts[1:]):
        yield "/proc Mount Type"
    if any((c.get("seccompProfile") or {}).get("type") == "Unconfined" for c in contexts):
        yield "Seccomp"
    sysctls = (spec.get("securityContext") or {}).get("sysctls") or []
    if any(sysctl["name"] not in SAFE_SYSCTLS for sysctl in sysctls):
        yield "Sysctls"


def _restricted(spec: dict[str, Any]) -> Iterator[str]:
    pod = spec.get("securityContext") or {}
    containers = [c.get("securityContext") or {} for c in _containers(spec)]
    for volume in spec.get("volumes") or []:
        if not set(volume) - {"name"} <= RESTRICTED_VOLUMES:
            yield "Volume Types"
            break
    if any(c.get("allowPrivilegeEscalation") is not False for c in containers):
        yield "Privilege Escalation"
    pod_non_root = pod.get("runAsNonRoot") is True
    if any(c.get("runAsNonRoot") is False for c in containers) or not (
        pod_non_root or all(c.get("runAsNonRoot") is True for c in containers)
    ):
        yield "Running as Non-root"
    if any(c.get("runAsUser") == 0 for c in [pod, *containers]):
        yield "Running as Non-root user"
    allowed = {"RuntimeDefault", "Localhost"}
    pod_seccomp = (pod.get("seccompProfile") or {}).get("type")
    container_seccomp = [(c.get("seccompProfile") or {}).get("type") for c in containers]
    if any(t is not None and t not in allowed for t in container_seccomp) or (
        pod_seccomp not in allowed and not all(t in allowed for t in container_seccomp)
    ):
        yield "Seccomp (restricted)"
    for context in containers:
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []) or set(capabilities.get("add") or []) - {
            "NET_BIND_SERVICE"
        }:
            yield "Capabilities (restricted)"
            break
