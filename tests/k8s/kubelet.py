"""Simulated kubelets for the API double: each moves a Job's pod through a story."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import Sequence
from typing import Any

from tests.k8s.double import Behaviour, KubeDouble


def _container(job: dict[str, Any], **state: Any) -> dict[str, Any]:
    image = job["spec"]["template"]["spec"]["containers"][0]["image"]
    return {
        "name": "map",
        "image": image,
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
