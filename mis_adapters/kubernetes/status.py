"""Reading a Job's and its Pod's status: finished or not, how, and what it is waiting for.

The only module that looks into `status`: every verdict on a Job or its pod is made here.
Works on the objects as the API sends them (camelCase dicts), so the same code judges list
results and watch events.
"""

from __future__ import annotations

from typing import Any

import attrs

IMAGE_ERRORS = {
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "RegistryUnavailable",
    "SignatureValidationFailed",
}
START_ERRORS = {
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "ContainerCannotRun",
    "PreStartHookError",
}


# Why a pod is going, from its DisruptionTarget condition's reason (Kubernetes 1.26 on).
DISRUPTIONS = {
    "EvictionByEvictionAPI": "was evicted through the Eviction API (a node drain, or another "
    "client)",
    "PreemptionByScheduler": "was preempted by the scheduler for a pod of higher priority",
    "DeletionByTaintManager": "was deleted because its node is tainted NoExecute (unreachable or "
    "not ready)",
    "DeletionByPodGC": "was deleted because its node is gone",
    "TerminationByKubelet": "was stopped by its node's kubelet",
}
EVICTED = "was evicted by its node's kubelet"
POD_DELETED = "ran in a pod that was deleted outside MIS before it finished"


@attrs.frozen
class Verdict:
    """How the job ended; `pod_may_run`: its container may still be stopping (wait for it)."""

    succeeded: bool
    reason: str = ""
    exit_code: int | None = None
    pod_may_run: bool = False


SUCCEEDED = Verdict(succeeded=True, exit_code=0)
JOB_DELETED = Verdict(
    False, "ran in a Job that was deleted outside MIS before it finished", pod_may_run=True
)


def judge_pod(pod: dict[str, Any]) -> Verdict | None:
    """The pod's outcome once it has one: a finished container, an error it cannot get past,
    or an eviction (which names the kubelet's or the evicting controller's reason)."""
    verdict = _judge_containers(pod)
    if verdict is not None and verdict.succeeded:
        return verdict
    return _judge_disruption(pod, verdict) or verdict


def _judge_containers(pod: dict[str, Any]) -> Verdict | None:
    status = pod.get("status") or {}
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        waiting = state.get("waiting") or {}
        reason = waiting.get("reason", "")
        detail = f": {waiting['message']}" if waiting.get("message") else ""
        if reason in IMAGE_ERRORS:
            image = container.get("image", "")
            return Verdict(False, f"could not get its image {image} ({reason}{detail})")
        if reason in START_ERRORS:
            return Verdict(False, f"could not start its container ({reason}{detail})")
        terminated = state.get("terminated")
        if terminated:
            return _judge_exit(terminated)
    phase = status.get("phase")
    if phase == "Succeeded":
        return SUCCEEDED
    if phase == "Failed":
        why = ": ".join(filter(None, [status.get("reason"), status.get("message")]))
        return Verdict(False, f"ran in a pod that failed ({why or 'no reason given'})")
    return None


def _judge_exit(terminated: dict[str, Any]) -> Verdict:
    code = int(terminated.get("exitCode", -1))
    reason = terminated.get("reason", "")
    if code == 0:
        return SUCCEEDED
    if reason == "OOMKilled":
        return Verdict(
            False,
            "was OOMKilled: it used more memory than its limit (map.resources.memory)",
            code,
        )
    extra = f" ({reason})" if reason and reason not in ("Error", "Completed") else ""
    return Verdict(False, f"exited with code {code}{extra}", code)


def _judge_disruption(pod: dict[str, Any], verdict: Verdict | None) -> Verdict | None:
    status = pod.get("status") or {}
    target: dict[str, Any] = next(
        (
            condition
            for condition in status.get("conditions") or []
            if condition.get("type") == "DisruptionTarget" and condition.get("status") == "True"
        ),
        {},
    )
    evicted = status.get("reason") == "Evicted"
    if not target and not evicted:
        return None
    cause = target.get("reason", "")
    what = EVICTED if evicted else DISRUPTIONS.get(cause, f"was disrupted ({cause})")
    message = status.get("message") or target.get("message")
    why = ": ".join(filter(None, [status.get("reason"), message])) or "no reason given"
    code = verdict.exit_code if verdict is not None else None
    return Verdict(False, f"ran in a pod that {what} ({why})", code, not pod_has_stopped(pod))


def judge_present_pod(pod: dict[str, Any]) -> Verdict | None:
    """A pod as a listing or event shows it: its own verdict, else "deleted outside MIS" once
    it is being deleted (MIS deletes pods only after it stopped following them)."""
    verdict = judge_pod(pod)
    if verdict is None and (pod.get("metadata") or {}).get("deletionTimestamp"):
        return Verdict(False, POD_DELETED, pod_may_run=True)
    return verdict


def judge_deleted_pod(pod: dict[str, Any]) -> Verdict:
    """A pod that is gone: its last state's verdict, else "deleted outside MIS"."""
    return judge_pod(pod) or Verdict(False, POD_DELETED)


def judge_job(job: dict[str, Any]) -> Verdict | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("status") != "True":
            continue
        kind = condition.get("type")
        if kind in ("Complete", "SuccessCriteriaMet"):
            return SUCCEEDED
        if kind in ("Failed", "FailureTarget"):
            why = ": ".join(filter(None, [condition.get("reason"), condition.get("message")]))
            return Verdict(False, f"ran in a Job that failed ({why or 'no reason given'})")
    if (job.get("metadata") or {}).get("deletionTimestamp"):
        return JOB_DELETED  # a foreground deletion: the Job stays until its pods are gone
    return None


def waiting_reason(pod: dict[str, Any]) -> str:
    """Why a pod that has not finished is not running yet, for the timeout message."""
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            why = condition.get("message") or condition.get("reason")
            return f"the pod could not be scheduled: {why}"
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting")
        if waiting:
            return f"the container was {waiting.get('reason', 'waiting')}"
    if status.get("phase") == "Pending":
        return "the pod was pending"
    return ""


def container_started(pod: dict[str, Any]) -> bool:
    """Whether the MAP's container has started, so its log can be read."""
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        state = container.get("state") or {}
        if "running" in state or "terminated" in state:
            return True
    return False


def ran_image(pod: dict[str, Any] | None) -> str:
    """The image the pod's container ran, as the node resolved it (`imageID`, a digest), or
    "" while the node has not said."""
    for container in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        if container.get("imageID"):
            return str(container["imageID"])
    return ""


def pull_state(pod: dict[str, Any]) -> str:
    """For the warm-up pod: "done" once its image is on the node, the reason it cannot be
    pulled, or "" while that is not known yet.

    A container that started, or that could not start for a reason other than its image,
    had its image pulled.
    """
    if container_started(pod):
        return "done"
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        if ((container.get("state") or {}).get("waiting") or {}).get("reason") in START_ERRORS:
            return "done"
    verdict = judge_pod(pod)
    return verdict.reason if verdict is not None and not verdict.succeeded else ""


def pod_has_stopped(pod: dict[str, Any]) -> bool:
    """Whether a pod has finished for good (Succeeded or Failed): nothing runs in it anymore."""
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
