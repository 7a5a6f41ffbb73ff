"""A pod's container as `podman create` arguments, the way a kubelet would run it.

Covers what MIS's Jobs and the chart's pods use: image, command and args (Kubernetes
semantics: `command` replaces the entrypoint and drops the image's CMD), env (values, and the
downward API's node and pod names), volumes (hostPath, emptyDir, configMap, a claim mapped to
a folder) mounted with `subPath` and `readOnly`, the pod's and the container's
securityContext (runAsUser/runAsGroup, runAsNonRoot checked against the image's user,
fsGroup and supplementalGroups as extra groups, readOnlyRootFilesystem without the writable
/tmp Podman would add, capabilities, allowPrivilegeEscalation, seccomp), workingDir and the
memory and CPU limits (no swap beyond the memory limit, as on a node).

Not simulated: the pod network (containers get none: a MAP reads and writes files; the
tests reach a server's port through its network namespace, see tests/images/portforward.py),
probes, and init or sidecar containers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

QUANTITY = re.compile(r"^([0-9.]+)(Ki|Mi|Gi|Ti|k|K|M|G|T|m)?$")
UNITS = {
    "": 1,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
}
LABEL_POD = "io.kubernetes.pod.name"


class PodError(Exception):
    """What a kubelet reports instead of running the container: a waiting reason and a message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


def memory_bytes(quantity: str | int) -> int:
    number, unit = _split(quantity)
    if unit == "m":
        return int(number / 1000)
    return int(number * UNITS[unit])


def cpus(quantity: str | int) -> float:
    number, unit = _split(quantity)
    return number / 1000 if unit == "m" else number


def _split(quantity: str | int) -> tuple[float, str]:
    match = QUANTITY.match(str(quantity))
    if match is None:
        raise PodError("CreateContainerConfigError", f"cannot read the quantity {quantity!r}")
    return float(match[1]), match[2] or ""


def volume_folders(
    spec: Mapping[str, Any],
    scratch: Path,
    config_maps: Mapping[str, Mapping[str, str]] | None = None,
    claims: Mapping[str, Path] | None = None,
) -> dict[str, Path]:
    """Where each of the pod's volumes is on this machine; emptyDir and configMap under `scratch`."""
    folders: dict[str, Path] = {}
    for volume in spec.get("volumes") or []:
        name = volume["name"]
        if "hostPath" in volume:
            path = Path(volume["hostPath"]["path"])
            kind = volume["hostPath"].get("type", "")
            if kind == "DirectoryOrCreate":
                path.mkdir(parents=True, exist_ok=True)
            elif kind == "Directory" and not path.is_dir():
                raise PodError("CreateContainerConfigError", f"hostPath type check failed: {path}")
            folders[name] = path
        elif "emptyDir" in volume:
            folders[name] = scratch / "empty-dirs" / name
            folders[name].mkdir(parents=True, mode=0o777)
            folders[name].chmod(0o777)  # writable by the pod's user, as a kubelet's emptyDir is
        elif "configMap" in volume:
            config_map = volume["configMap"]["name"]
            data = (config_maps or {}).get(config_map)
            if data is None:
                raise PodError("CreateContainerConfigError", f'configmap "{config_map}" not found')
            folders[name] = scratch / "config-maps" / name
            folders[name].mkdir(parents=True)
            for key, text in data.items():
                (folders[name] / key).write_text(text)
                (folders[name] / key).chmod(0o644)
            folders[name].chmod(0o755)
        elif "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            if claim not in (claims or {}):
                raise PodError(
                    "CreateContainerConfigError", f'persistentvolumeclaim "{claim}" not found'
                )
            folders[name] = (claims or {})[claim]
        else:
            raise PodError("CreateContainerConfigError", f"volume {name}: kind not simulated")
    return folders


def create_args(
    pod: Mapping[str, Any],
    folders: Mapping[str, Path],
    image_user: str,
    node_name: str = "node-1",
    network: str = "none",
    extra: Sequence[str] = (),
) -> list[str]:
    """`podman create` arguments (after `create`) for the pod's first container.

    `network`: Podman's --network (another container's, to stand for a pod network); `extra`:
    more options, e.g. an /etc/hosts in place of cluster DNS.
    """
    spec = pod["spec"]
    name = pod["metadata"]["name"]
    container = spec["containers"][0]
    pod_security = spec.get("securityContext") or {}
    security = {**pod_security, **(container.get("securityContext") or {})}
    args = [
        "--name", name,
        "--hostname", name[:63],
        "--label", f"{LABEL_POD}={name}",
        "--network", network,
        "--pull", "never",
    ]  # fmt: skip
    args += _user(security, image_user)
    for group in [pod_security.get("fsGroup"), *(pod_security.get("supplementalGroups") or [])]:
        if group is not None:
            args += ["--group-add", str(group)]
    args += _security(security)
    args += _resources(container.get("resources") or {})
    for variable in container.get("env") or []:
        args += ["--env", f"{variable['name']}={_env_value(variable, pod, node_name)}"]
    for mount in container.get("volumeMounts") or []:
        args += ["--mount", _mount(mount, folders)]
    if container.get("workingDir"):
        args += ["--workdir", container["workingDir"]]
    args += extra
    if "command" in container:
        args += ["--entrypoint", _json_list(container["command"])]
    args.append(container["image"])
    args += container.get("args") or []
    return args


def _user(security: Mapping[str, Any], image_user: str) -> list[str]:
    uid = security.get("runAsUser")
    gid = security.get("runAsGroup")
    if security.get("runAsNonRoot"):
        effective = str(uid) if uid is not None else image_user.split(":")[0]
        if not effective.isdigit():
            raise PodError(
                "CreateContainerConfigError",
                f"container has runAsNonRoot and image has non-numeric user ({effective or 'root'}),"
                " cannot verify user is non-root",
            )
        if int(effective) == 0:
            raise PodError(
                "CreateContainerConfigError",
                "container has runAsNonRoot and image will run as root",
            )
    if uid is None and gid is None:
        return []
    if uid is None:
        uid = image_user.split(":")[0] or 0
    return ["--user", f"{uid}:{gid}" if gid is not None else str(uid)]


def _security(security: Mapping[str, Any]) -> list[str]:
    args: list[str] = []
    if security.get("privileged"):
        args.append("--privileged")
    if security.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    if security.get("readOnlyRootFilesystem"):
        args += ["--read-only", "--read-only-tmpfs=false"]  # Kubernetes adds no writable /tmp
    capabilities = security.get("capabilities") or {}
    for capability in capabilities.get("drop") or []:
        args += ["--cap-drop", capability]
    for capability in capabilities.get("add") or []:
        args += ["--cap-add", capability]
    seccomp = (security.get("seccompProfile") or {}).get("type", "RuntimeDefault")
    if seccomp == "Unconfined":
        args += ["--security-opt", "seccomp=unconfined"]
    elif seccomp != "RuntimeDefault":
        raise PodError("CreateContainerConfigError", f"seccompProfile {seccomp} is not simulated")
    return args


def _resources(resources: Mapping[str, Any]) -> list[str]:
    limits = resources.get("limits") or {}
    args: list[str] = []
    if "memory" in limits:
        limit = str(memory_bytes(limits["memory"]))
        args += ["--memory", limit, "--memory-swap", limit]
    if "cpu" in limits:
        args += ["--cpus", f"{cpus(limits['cpu']):g}"]
    return args


def _env_value(variable: Mapping[str, Any], pod: Mapping[str, Any], node_name: str) -> str:
    if "valueFrom" not in variable:
        return str(variable.get("value", ""))
    field = (variable["valueFrom"].get("fieldRef") or {}).get("fieldPath")
    known = {
        "spec.nodeName": node_name,
        "metadata.name": pod["metadata"]["name"],
        "metadata.namespace": pod["metadata"].get("namespace", ""),
        "metadata.uid": pod["metadata"].get("uid", ""),
    }
    if field not in known:
        raise PodError("CreateContainerConfigError", f"env {variable['name']}: not simulated")
    return str(known[field])


def _mount(mount: Mapping[str, Any], folders: Mapping[str, Path]) -> str:
    if mount["name"] not in folders:
        raise PodError("CreateContainerConfigError", f"volume {mount['name']!r} not found")
    source = folders[mount["name"]]
    if mount.get("subPath"):
        source = source / mount["subPath"]
        source.mkdir(parents=True, exist_ok=True)  # the kubelet creates a missing subPath
    options = ",ro" if mount.get("readOnly") else ""
    return f"type=bind,source={source},destination={mount['mountPath']}{options}"


def _json_list(items: list[str]) -> str:
    return json.dumps(list(items))
