"""Simulated kubelets for the API double: each moves a Job's pod through a story."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.k8s import podman_pod
from tests.k8s.double import Behaviour, KubeDouble
from tests.k8s.podman_pod import PodError
from tools.images import Podman


def _container(job: dict[str, Any], **state: Any) -> dict[str, Any]:
    image = job["spec"]["template"]["spec"]["containers"][0]["image"]
    ran = "running" in state or "terminated" in state  # the node then knows the digest
    digest = hashlib.sha256(image.encode()).hexdigest()
    return {
        "name": "map",
        "image": image,
        "imageID": f"{image}@sha256:{digest}" if ran else "",
        "ready": "running" in state,
        "restartCount": 0,
        "state": state,
    }


def _scheduled(double: KubeDouble, ns: str, job: dict[str, Any], pod: str) -> None:
    double.update_status(
        "pods",
        ns,
        pod,
        phase="Pending",
        conditions=[{"type": "PodScheduled", "status": "True"}],
        containerStatuses=[_container(job, waiting={"reason": "ContainerCreating"})],
    )


def _running(double: KubeDouble, ns: str, job: dict[str, Any], pod: str) -> None:
    started = {"startedAt": "2026-01-01T00:00:00Z"}
    double.update_status(
        "pods", ns, pod, phase="Running", containerStatuses=[_container(job, running=started)]
    )


def _finish(
    double: KubeDouble, ns: str, job: dict[str, Any], pod: str, code: int, reason: str
) -> None:
    double.close_log(pod)
    terminated = {"exitCode": code, "reason": reason, "finishedAt": "2026-01-01T00:00:00Z"}
    double.update_status(
        "pods",
        ns,
        pod,
        phase="Succeeded" if code == 0 else "Failed",
        containerStatuses=[_container(job, terminated=terminated)],
    )
    name = job["metadata"]["name"]
    if code == 0:
        conditions = [
            {"type": "SuccessCriteriaMet", "status": "True"},
            {"type": "Complete", "status": "True"},
        ]
        double.update_status("jobs", ns, name, succeeded=1, conditions=conditions)
    else:
        condition = {
            "type": "Failed",
            "status": "True",
            "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit",
        }
        double.update_status("jobs", ns, name, failed=1, conditions=[condition])


def finishes(
    code: int = 0,
    reason: str = "Completed",
    lines: Sequence[str] = ("MAP says hello",),
) -> Behaviour:
    """Scheduled, running (printing `lines`), then terminated with `code`."""

    async def story(double: KubeDouble, ns: str, job: dict[str, Any], pod: str) -> None:
        _scheduled(double, ns, job, pod)
        await asyncio.sleep(0.01)
        _running(double, ns, job, pod)
        for line in lines:
            double.log(pod, line)
        await asyncio.sleep(0.01)
        _finish(double, ns, job, pod, code, reason)

    return story


def hangs(lines: Sequence[str] = ("working...",)) -> Behaviour:
    async def story(double: KubeDouble, ns: str, job: dict[str, Any], pod: str) -> None:
        _scheduled(double, ns, job, pod)
        _running(double, ns, job, pod)
        for line in lines:
            double.log(pod, line)
        await asyncio.Event().wait()

    return story


def image_pull_fails() -> Behaviour:
    async def story(double: KubeDouble, ns: str, job: dict[str, Any], pod: str) -> None:
        _scheduled(double, ns, job, pod)
        await asyncio.sleep(0.01)
        image = job["spec"]["template"]["spec"]["containers"][0]["image"]
        message = f'Back-off pulling image "{image}": not found'
        double.update_status(
            "pods",
            ns,
            pod,
            containerStatuses=[
                _container(job, waiting={"reason": "ErrImagePull", "message": message})
            ],
        )

    return story


def unschedulable(
    message: str = "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
) -> Behaviour:
    async def story(double: KubeDouble, ns: str, job: dict[str, Any], pod: str) -> None:
        double.update_status(
            "pods",
            ns,
            pod,
            phase="Pending",
            conditions=[
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": message,
                }
            ],
        )
        await asyncio.Event().wait()

    return story


def runs_locally() -> Behaviour:
    """Runs the container's command as a local process, with its volume mounts mapped onto the
    hostPath folders they name: every mountPath in the command, args and env becomes the host
    folder (hostPath + subPath), so the process reads and writes where the Job's mounts would.
    """

    async def story(double: KubeDouble, ns: str, job: dict[str, Any], pod: str) -> None:
        spec = job["spec"]["template"]["spec"]
        container = spec["containers"][0]
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {}
        for mount in container["volumeMounts"]:
            base = volumes[mount["name"]]["hostPath"]["path"]
            mounts[mount["mountPath"]] = os.path.join(base, mount.get("subPath", ""))

        def mapped(text: str) -> str:
            for mount_path in sorted(mounts, key=len, reverse=True):
                text = text.replace(mount_path, mounts[mount_path])
            return text

        argv = [mapped(a) for a in [*container.get("command", []), *container.get("args", [])]]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        env.update({e["name"]: mapped(e["value"]) for e in container.get("env", [])})
        _scheduled(double, ns, job, pod)
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        _running(double, ns, job, pod)
        try:
            assert process.stdout is not None
            async for line in process.stdout:
                double.log(pod, line.decode(errors="replace").rstrip("\n"))
            code = await process.wait()
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            raise
        _finish(double, ns, job, pod, code, "Completed" if code == 0 else "Error")

    return story


def after(gate: threading.Event, then: Behaviour) -> Behaviour:
    """Scheduled and running, then `then`'s story once the test sets `gate`."""

    async def story(double: KubeDouble, ns: str, job: dict[str, Any], pod: str) -> None:
        _scheduled(double, ns, job, pod)
        _running(double, ns, job, pod)
        await asyncio.to_thread(gate.wait)
        await then(double, ns, job, pod)

    return story


def runs_in_podman(podman: Podman, scratch: Path, node_name: str = "node-1") -> Behaviour:
    """Runs the pod's container with Podman, as a kubelet would (see tests/k8s/podman_pod.py).

    The story a real kubelet tells: ErrImagePull for an image the node does not have (no
    registry is reachable from this node; one it has is used whatever imagePullPolicy says),
    CreateContainerConfigError for a securityContext it refuses (runAsNonRoot with a root
    image), CreateContainerError or RunContainerError with the runtime's message, else running
    with the container's output as the pod's log, then terminated with its exit code. A pod
    asking for a GPU stays unschedulable: this node has none.

    OOMKilled: Podman 4.3 with runc on this host's cgroup v1 does not report OOMKilled; a
    container under a memory limit that ends with 137 (SIGKILL), which only the kernel's OOM
    killer sends here (this kubelet kills only pods being deleted, and then reports nothing),
    is reported as OOMKilled, as a kubelet on cgroup v2 would.
    """

    async def story(double: KubeDouble, ns: str, job: dict[str, Any], pod_name: str) -> None:
        pod = double.objects[("pods", ns, pod_name)]
        container = pod["spec"]["containers"][0]
        limits = (container.get("resources") or {}).get("limits") or {}
        if int(limits.get("nvidia.com/gpu", 0)) > 0:
            await unschedulable()(double, ns, job, pod_name)
            return
        _scheduled(double, ns, job, pod_name)
        try:
            await _run_container(double, podman, ns, job, pod, scratch / pod_name, node_name)
        except PodError as failure:
            _waiting(double, ns, job, pod_name, failure)
        finally:
            await asyncio.shield(_remove(podman, pod_name))

    return story


async def _run_container(
    double: KubeDouble,
    podman: Podman,
    ns: str,
    job: dict[str, Any],
    pod: dict[str, Any],
    scratch: Path,
    node_name: str,
) -> None:
    name = pod["metadata"]["name"]
    container = pod["spec"]["containers"][0]
    image = container["image"]
    code, user, _ = await _podman(podman, "image", "inspect", "--format", "{{.Config.User}}", image)
    if code != 0:
        reason = (
            "ErrImageNeverPull" if container.get("imagePullPolicy") == "Never" else "ErrImagePull"
        )
        raise PodError(reason, f'Failed to pull image "{image}": not found, and no registry here')
    scratch.mkdir(parents=True, exist_ok=True)
    folders = podman_pod.volume_folders(pod["spec"], scratch)
    args = podman_pod.create_args(pod, folders, user.strip(), node_name)
    code, _, error = await _podman(podman, "create", *args)
    if code != 0:
        raise PodError("CreateContainerError", error.strip())
    code, _, error = await _podman(podman, "start", name)
    if code != 0:
        raise PodError("RunContainerError", error.strip())
    _running(double, ns, job, name)
    logs = await asyncio.create_subprocess_exec(
        *podman.argv, "logs", "--follow", name,
        env=dict(podman.env), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert logs.stdout is not None
        async for line in logs.stdout:
            double.log(name, line.decode(errors="replace").rstrip("\n"))
    finally:
        if logs.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                logs.kill()
        await logs.wait()
    _, waited, _ = await _podman(podman, "wait", name)
    code = int(waited.strip())
    _, oom, _ = await _podman(podman, "inspect", "--format", "{{.State.OOMKilled}}", name)
    killed = oom.strip() == "true" or (
        code == 128 + signal.SIGKILL
        and "memory" in ((container.get("resources") or {}).get("limits") or {})
    )
    reason = "OOMKilled" if killed else "Completed" if code == 0 else "Error"
    _finish(double, ns, job, name, code, reason)


def _waiting(double: KubeDouble, ns: str, job: dict[str, Any], pod: str, failure: PodError) -> None:
    waiting = {"reason": failure.reason, "message": failure.message}
    double.update_status(
        "pods", ns, pod, phase="Pending", containerStatuses=[_container(job, waiting=waiting)]
    )


async def _podman(podman: Podman, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *podman.argv, *args,
        env=dict(podman.env), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def _remove(podman: Podman, name: str) -> None:
    """Stop (SIGTERM, then SIGKILL after a second) and remove the pod's container, if any."""
    await _podman(podman, "rm", "--force", "--time", "1", "--ignore", name)
