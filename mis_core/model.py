"""Values the domain passes around: the registered MAP, one job to run, and how it ended."""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Mapping, Sequence

import attrs

HOST_NAME = "monai-inference-service"
HOST_VERSION = "0.1.0"

_HEX32 = re.compile(r"[0-9a-f]{32}")
_CPU_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(m?)$")
_MEMORY_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)$")
_MEMORY_UNITS = {
    "": 1,
    "m": 1e-3,
    **{unit: 1000**power for power, unit in enumerate("kMGTPE", 1)},
    **{f"{unit}i": 1024**power for power, unit in enumerate("KMGTPE", 1)},
}
THREAD_COUNT_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


@attrs.frozen
class Resources:
    """What the MAP's job may use; `cpu` and `memory` are Kubernetes quantities."""

    cpu: str = "1"
    memory: str = "8Gi"
    gpu: int = 0


@attrs.frozen
class MapSpec:
    """The one MAP this service runs, as registered in its configuration."""

    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    image: str = ""
    env: Mapping[str, str] = attrs.field(factory=dict)
    input_path: str = "/var/monai/input"
    output_path: str = "/var/monai/output"
    resources: Resources = Resources()
    timeout_seconds: float = 50.0


@attrs.frozen
class Workspace:
    """One request's folders on the payload volume, as MIS sees them."""

    request_id: str
    root: str
    input_dir: str
    output_dir: str

    @property
    def work_dir(self) -> str:
        """The MAP's working folder and HOME on the process backend (its job creates it)."""
        return os.path.join(self.root, "work")

    @property
    def tmp_dir(self) -> str:
        """The MAP's TMPDIR (and /tmp in its sandbox) on the process backend."""
        return os.path.join(self.root, "tmp")


@attrs.frozen
class JobRequest:
    """Everything a job backend needs to run the MAP once."""

    request_id: str
    map: MapSpec
    workspace: Workspace

    @property
    def job_id(self) -> str:
        return job_id_for(self.request_id)


@attrs.frozen
class JobOutcome:
    """How a job ended. `reason` is a short phrase such as "exited with code 3"."""

    succeeded: bool
    reason: str = ""
    exit_code: int | None = None
    log_tail: tuple[str, ...] = ()


@attrs.define
class JobProgress:
    """What a backend last knew about a job that is still waiting, for the timeout message.

    A Kubernetes backend puts the scheduler's complaint here ("0/1 nodes available: ...").
    """

    waiting_reason: str = ""


@attrs.define
class StageTimes:
    """Seconds spent in each stage of one request, for logs and benchmarks."""

    receive: float = 0.0
    extract: float = 0.0
    job: float = 0.0
    pack: float = 0.0


def job_id_for(request_id: str) -> str:
    """MONAI_JOBID is 32 hex characters: the request id when it is one, else derived from it."""
    lowered = request_id.lower()
    if _HEX32.fullmatch(lowered):
        return lowered
    return hashlib.sha256(request_id.encode()).hexdigest()[:32]


def substitute_paths(argv: Sequence[str], input_path: str, output_path: str) -> list[str]:
    """Replace `{input_path}` and `{output_path}` so apps that take `-i/-o` work."""
    return [
        arg.replace("{input_path}", input_path).replace("{output_path}", output_path)
        for arg in argv
    ]


def map_environment(
    spec: MapSpec, request_id: str, input_path: str, output_path: str
) -> dict[str, str]:
    """The environment every MAP gets, following the MONAI Application Package conventions.

    The paths are the folders as the MAP sees them (inside its container, or on the host for
    the process backend). `map.env` comes last so an administrator can override anything.
    """
    env = {
        "MONAI_INPUTPATH": input_path,
        "MONAI_OUTPUTPATH": output_path,
        "HOLOSCAN_INPUT_PATH": input_path,
        "HOLOSCAN_OUTPUT_PATH": output_path,
        "MONAI_JOBID": job_id_for(request_id),
        "MONAI_TIMEOUT": f"{spec.timeout_seconds:g}",
        "MONAI_HOSTNAME": HOST_NAME,
        "MONAI_HOSTVERSION": HOST_VERSION,
    }
    env.update(spec.env)
    return env


def cpu_cores(quantity: str) -> float:
    """CPUs in a Kubernetes CPU quantity: "2" → 2.0, "1.5" → 1.5, "500m" → 0.5 (0 if unreadable)."""
    match = _CPU_QUANTITY.match(quantity.strip())
    if not match:
        return 0.0
    return float(match.group(1)) / (1000 if match.group(2) else 1)


def cpu_threads(quantity: str) -> int:
    """Threads for a Kubernetes CPU quantity: "2" → 2, "1.5" → 1, "500m" → 1 (at least one)."""
    return max(1, math.floor(cpu_cores(quantity)))


def memory_bytes(quantity: str) -> int:
    """Bytes in a Kubernetes memory quantity: "8Gi" → 8 * 2**30, "512M" → 512e6; else 0."""
    match = _MEMORY_QUANTITY.match(quantity.strip())
    if not match:
        return 0
    return int(float(match.group(1)) * _MEMORY_UNITS[match.group(2)])


def thread_environment(resources: Resources) -> dict[str, str]:
    """The usual thread-count variables, so numeric libraries use the CPUs the MAP was given."""
    threads = str(cpu_threads(resources.cpu))
    return dict.fromkeys(THREAD_COUNT_VARIABLES, threads)
