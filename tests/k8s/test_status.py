"""Every verdict on a Job and its pod, as tables of the objects the API sends."""

from __future__ import annotations

from typing import Any

import pytest

from mis_adapters.kubernetes.status import (
    Verdict,
    judge_deleted_pod,
    judge_job,
    judge_pod,
    judge_present_pod,
    pod_has_stopped,
    pull_state,
    waiting_reason,
)

IMAGE = "registry.example/map:1"


def pod(phase: str = "Pending", reason: str = "", message: str = "", **state: Any) -> dict:
    status: dict[str, Any] = {"phase": phase}
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    if state:
        status["containerStatuses"] = [{"name": "map", "image": IMAGE, "state": state}]
    return {"metadata": {"name": "p"}, "status": status}


def waiting(reason: str, message: str = "") -> dict:
    return pod(waiting={"reason": reason, **({"message": message} if message else {})})


def exited(code: int, reason: str = "") -> dict:
    phase = "Succeeded" if code == 0 else "Failed"
    return pod(phase, terminated={"exitCode": code, **({"reason": reason} if reason else {})})


OOM = "was OOMKilled: it used more memory than its limit (map.resources.memory)"
POD_VERDICTS = [
    ("pending", pod(), None),
    ("creating", waiting("ContainerCreating"), None),
    ("running", pod("Running", running={"startedAt": "now"}), None),
    ("exit-0", exited(0), Verdict(True, "", 0)),
    ("exit-3", exited(3, "Error"), Verdict(False, "exited with code 3", 3)),
    ("exit-1-no-reason", exited(1), Verdict(False, "exited with code 1", 1)),
    (
        "exit-139-signal",
        exited(139, "ContainerStatusUnknown"),
        Verdict(False, "exited with code 139 (ContainerStatusUnknown)", 139),
    ),
    ("oom", exited(137, "OOMKilled"), Verdict(False, OOM, 137)),
    ("phase-succeeded", pod("Succeeded"), Verdict(True, "", 0)),
    (
        "phase-failed-evicted",
        pod("Failed", "Evicted", "The node was low on memory."),
        Verdict(
            False,
            "ran in a pod that was evicted by its node's kubelet (Evicted: The node was low on "
            "memory.)",
        ),
    ),
    (
        "phase-failed-deadline",
        pod("Failed", "DeadlineExceeded"),
        Verdict(False, "ran in a pod that failed (DeadlineExceeded)"),
    ),
    (
        "phase-failed-silent",
        pod("Failed"),
        Verdict(False, "ran in a pod that failed (no reason given)"),
    ),
    *(
        (
            reason,
            waiting(reason, "not found"),
            Verdict(False, f"could not get its image {IMAGE} ({reason}: not found)"),
        )
        for reason in (
            "ErrImagePull",
            "ImagePullBackOff",
            "InvalidImageName",
            "ErrImageNeverPull",
            "RegistryUnavailable",
            "SignatureValidationFailed",
        )
    ),
    *(
        (
            reason,
            waiting(reason, 'exec: "app": not found'),
            Verdict(False, f'could not start its container ({reason}: exec: "app": not found)'),
        )
        for reason in (
            "CreateContainerConfigError",
            "CreateContainerError",
            "RunContainerError",
            "ContainerCannotRun",
            "PreStartHookError",
        )
    ),
    (
        "image-error-without-message",
        waiting("ErrImagePull"),
        Verdict(False, f"could not get its image {IMAGE} (ErrImagePull)"),
    ),
]


@pytest.mark.parametrize(
    ("obj", "verdict"), [c[1:] for c in POD_VERDICTS], ids=[c[0] for c in POD_VERDICTS]
)
def test_pod_verdicts(obj: dict, verdict: Verdict | None) -> None:
    assert judge_pod(obj) == verdict


def job(*conditions: tuple[str, str, str, str]) -> dict:
    keys = ("type", "status", "reason", "message")
    return {"status": {"conditions": [dict(zip(keys, c, strict=True)) for c in conditions]}}


JOB_VERDICTS = [
    ("no-status", {}, None),
    ("running", job(), None),
    ("complete", job(("Complete", "True", "", "")), Verdict(True, "", 0)),
    ("success-criteria-met", job(("SuccessCriteriaMet", "True", "", "")), Verdict(True, "", 0)),
    (
        "failed-backoff",
        job(
            (
                "Failed",
                "True",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            )
        ),
        Verdict(
            False,
            "ran in a Job that failed (BackoffLimitExceeded: Job has reached the specified backoff limit)",
        ),
    ),
    (
        "failed-deadline",
        job(("Failed", "True", "DeadlineExceeded", "")),
        Verdict(False, "ran in a Job that failed (DeadlineExceeded)"),
    ),
    (
        "failure-target",
        job(("FailureTarget", "True", "", "")),
        Verdict(False, "ran in a Job that failed (no reason given)"),
    ),
    ("condition-false", job(("Failed", "False", "", ""), ("Complete", "False", "", "")), None),
    ("suspended", job(("Suspended", "True", "", "")), None),
]


@pytest.mark.parametrize(
    ("obj", "verdict"), [c[1:] for c in JOB_VERDICTS], ids=[c[0] for c in JOB_VERDICTS]
)
def test_job_verdicts(obj: dict, verdict: Verdict | None) -> None:
    assert judge_job(obj) == verdict


def test_a_deleted_pod_is_judged_by_its_last_state() -> None:
    assert judge_deleted_pod(pod("Running", running={})) == Verdict(
        False, "ran in a pod that was deleted outside MIS before it finished"
    )
    assert judge_deleted_pod(exited(2, "Error")) == Verdict(False, "exited with code 2", 2)


def unschedulable(message: str) -> dict:
    obj = pod()
    obj["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
    ]
    return obj


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        (
            unschedulable("0/1 nodes are available: 1 Insufficient nvidia.com/gpu."),
            "the pod could not be scheduled: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
        ),
        (waiting("ContainerCreating"), "the container was ContainerCreating"),
        (pod(), "the pod was pending"),
        (pod("Running", running={}), ""),
    ],
    ids=["unschedulable", "creating", "pending", "running"],
)
def test_what_a_pod_waits_for(obj: dict, reason: str) -> None:
    assert waiting_reason(obj) == reason


@pytest.mark.parametrize(
    ("obj", "state"),
    [
        (pod(), ""),
        (waiting("ContainerCreating"), ""),
        (pod("Running", running={}), "done"),
        (exited(0), "done"),
        (waiting("CreateContainerConfigError"), "done"),  # pulled; the command is at fault
        (
            waiting("ImagePullBackOff", "unauthorized"),
            f"could not get its image {IMAGE} (ImagePullBackOff: unauthorized)",
        ),
        (pod("Failed", "Evicted"), "ran in a pod that was evicted by its node's kubelet (Evicted)"),
    ],
    ids=["pending", "creating", "running", "exited", "config-error", "pull-error", "evicted"],
)
def test_the_warm_up_pull_state(obj: dict, state: str) -> None:
    assert pull_state(obj) == state


@pytest.mark.parametrize(
    ("phase", "stopped"),
    [
        ("Pending", False),
        ("Running", False),
        ("Succeeded", True),
        ("Failed", True),
        ("Unknown", False),
    ],
)
def test_whether_a_pod_has_stopped(phase: str, stopped: bool) -> None:
    assert pod_has_stopped(pod(phase)) is stopped


def disrupted(reason: str, message: str, phase: str = "Running", **state: Any) -> dict:
    obj = pod(phase, **state)
    target = {"type": "DisruptionTarget", "status": "True", "reason": reason, "message": message}
    obj["status"]["conditions"] = [{"type": "Ready", "status": "False"}, target]
    return obj


@pytest.mark.parametrize(
    ("reason", "message", "what"),
    [
        (
            "EvictionByEvictionAPI",
            "Eviction API: evicting",
            "was evicted through the Eviction API (a node drain, or another client)",
        ),
        (
            "PreemptionByScheduler",
            "default-scheduler: preempting",
            "was preempted by the scheduler for a pod of higher priority",
        ),
        (
            "DeletionByTaintManager",
            "Taint manager: deleting due to NoExecute taint",
            "was deleted because its node is tainted NoExecute (unreachable or not ready)",
        ),
        ("DeletionByPodGC", "PodGC: node no longer exists", "was deleted because its node is gone"),
        ("TerminationByKubelet", "Pod was terminated", "was stopped by its node's kubelet"),
        ("SomethingNew", "a controller of the future", "was disrupted (SomethingNew)"),
    ],
)
def test_a_disruption_target_is_a_verdict_naming_who_and_why(
    reason: str, message: str, what: str
) -> None:
    """At once, while the container still stops (MIS then waits for the pod to go)."""
    running = disrupted(reason, message, running={})
    assert judge_pod(running) == Verdict(
        False, f"ran in a pod that {what} ({message})", pod_may_run=True
    )


def test_an_eviction_outranks_the_exit_code_it_caused_but_not_a_success() -> None:
    evicted = disrupted(
        "TerminationByKubelet", "memory", "Failed", terminated={"exitCode": 137, "reason": "Error"}
    )
    evicted["status"].update(reason="Evicted", message="The node was low on resource: memory.")
    assert judge_pod(evicted) == Verdict(
        False,
        "ran in a pod that was evicted by its node's kubelet (Evicted: The node was low on "
        "resource: memory.)",
        137,
    )
    finished = disrupted("EvictionByEvictionAPI", "x", "Succeeded", terminated={"exitCode": 0})
    assert judge_pod(finished) == Verdict(True, "", 0)


def test_a_pod_being_deleted_by_someone_else_is_a_verdict_unless_it_finished() -> None:
    going = pod("Running", running={})
    going["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert judge_present_pod(going) == Verdict(
        False, "ran in a pod that was deleted outside MIS before it finished", pod_may_run=True
    )
    done = exited(0)
    done["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert judge_present_pod(done) == Verdict(True, "", 0)
    assert judge_present_pod(pod("Running", running={})) is None


def test_a_job_being_deleted_in_the_foreground_is_deleted() -> None:
    obj = job()
    obj["metadata"] = {"name": "j", "deletionTimestamp": "2026-01-01T00:00:00Z"}
    verdict = judge_job(obj)
    assert verdict is not None
    assert verdict.reason == "ran in a Job that was deleted outside MIS before it finished"
    done = job(("Complete", "True", "", ""))
    done["metadata"] = {"name": "j", "deletionTimestamp": "2026-01-01T00:00:00Z"}
    assert judge_job(done) == Verdict(True, "", 0)
