"""Values the domain passes around: the registered MAP, one job to run, and how it ended."""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Mapping, Sequence
from typing import ClassVar

import attrs

from mis_core.quantity import CpuQuantity, MemoryQuantity

HOST_NAME = "monai-inference-service"
HOST_VERSION = "0.1.0"

_HEX32 = re.compile(r"[0-9a-f]{32}")
THREAD_COUNT_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def _cpu(value: str | CpuQuantity) -> CpuQuantity:
    return value if isinstance(value, CpuQuantity) else CpuQuantity.parse(value)


def _memory(value: str | MemoryQuantity) -> MemoryQuantity:
    return value if isinstance(value, MemoryQuantity) else MemoryQuantity.parse(value)


@attrs.frozen
class Resources:
    """What the MAP's job may use; `cpu` and `memory` are Kubernetes quantities (parsed here
    when given as text)."""

    cpu: CpuQuantity = attrs.field(default=CpuQuantity.parse("1"), converter=_cpu)
    memory: MemoryQuantity = attrs.field(default=MemoryQuantity.parse("8Gi"), converter=_memory)
    gpu: int = 0

    def thread_environment(self) -> dict[str, str]:
        """The usual thread-count variables, so numeric libraries use the CPUs the MAP got."""
        return dict.fromkeys(THREAD_COUNT_VARIABLES, str(self.cpu.threads))


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
    """One request's folder on the payload volume: the one place that knows its layout.

        <payload_dir>/<name>/input/    what the MAP reads
        <payload_dir>/<name>/output/   what the MAP writes
        <payload_dir>/<name>/work/     the MAP's working folder and HOME  } process backend
        <payload_dir>/<name>/tmp/      its TMPDIR (and /tmp in the sandbox) } (its job makes them)
        <payload_dir>/<name>/<file>    MIS's own files beside them (the upload, records)

    Backends ask it: a Kubernetes Job mounts its `sub_path`s, a container engine on another
    host binds the same layout under that host's folder (`on`).
    """

    payload_dir: str  # absolute: bind mounts and subPaths need absolute folders
    name: str  # the job id of the request it serves

    INPUT: ClassVar[str] = "input"
    OUTPUT: ClassVar[str] = "output"
    WORK: ClassVar[str] = "work"
    TMP: ClassVar[str] = "tmp"

    @property
    def root(self) -> str:
        return posixpath.join(self.payload_dir, self.name)

    @property
    def input_dir(self) -> str:
        return self.file(self.INPUT)

    @property
    def output_dir(self) -> str:
        return self.file(self.OUTPUT)

    @property
    def work_dir(self) -> str:
        return posixpath.join(self.root, self.WORK)

    @property
    def tmp_dir(self) -> str:
        return posixpath.join(self.root, self.TMP)

    def file(self, name: str) -> str:
        """A file of MIS's own in the workspace (never in the folders the MAP sees)."""
        return posixpath.join(self.root, name)

    def sub_path(self, folder: str) -> str:
        """`folder` (INPUT or OUTPUT) relative to the payload volume's root."""
        return posixpath.join(self.name, folder)

    def on(self, payload_dir: str) -> Workspace:
        """The same workspace where another host mounts the payload volume at `payload_dir`."""
        return attrs.evolve(self, payload_dir=payload_dir)

    @staticmethod
    def pattern(file: str) -> str:
        """A glob, relative to the payload folder, matching `file` in every workspace."""
        return posixpath.join("*", file)


@attrs.frozen
class MapFolders:
    """The input and output folders as the MAP sees them (on the host, or in its container)."""

    input: str
    output: str

    def substitute(self, argv: Sequence[str]) -> list[str]:
        """Replace `{input_path}` and `{output_path}` so apps that take `-i/-o` work."""
        return [
            arg.replace("{input_path}", self.input).replace("{output_path}", self.output)
            for arg in argv
        ]


def _same_as_job_id(request: JobRequest) -> str:
    return request.job_id


@attrs.frozen
class JobRequest:
    """Everything a job backend needs to run the MAP once.

    `job_id` is MIS's own id of the request (32 hex characters, MONAI_JOBID): it names and
    finds the job. `request_id` is the client's X-Request-ID (the job id when it sent none),
    which two clients may share: only for labels and log lines.
    """

    job_id: str
    map: MapSpec
    workspace: Workspace
    request_id: str = attrs.field(default=attrs.Factory(_same_as_job_id, takes_self=True))

    @property
    def host_folders(self) -> MapFolders:
        """The folders of a MAP run on MIS's own host: the workspace's."""
        return MapFolders(self.workspace.input_dir, self.workspace.output_dir)

    @property
    def container_folders(self) -> MapFolders:
        """The folders of a MAP run in a container: where the workspace's are mounted."""
        return MapFolders(self.map.input_path, self.map.output_path)

    def environment(self, folders: MapFolders) -> dict[str, str]:
        """The environment every MAP gets, following the MONAI Application Package conventions.

        Thread counts from the CPUs it was given, then the MONAI variables and
        `PYTHONUNBUFFERED=1` (a Python MAP's log lines reach MIS as they are printed, not
        when its buffer fills or it exits: the live log and a timed-out MAP's last lines),
        then `map.env` last, so an administrator can override anything.
        """
        spec = self.map
        env = spec.resources.thread_environment()
        env["PYTHONUNBUFFERED"] = "1"
        env.update(
            {
                "MONAI_INPUTPATH": folders.input,
                "MONAI_OUTPUTPATH": folders.output,
                "HOLOSCAN_INPUT_PATH": folders.input,
                "HOLOSCAN_OUTPUT_PATH": folders.output,
                "MONAI_JOBID": self.job_id,
                "MONAI_TIMEOUT": f"{spec.timeout_seconds:g}",
                "MONAI_HOSTNAME": HOST_NAME,
                "MONAI_HOSTVERSION": HOST_VERSION,
            }
        )
        env.update(spec.env)
        return env


@attrs.frozen
class JobOutcome:
    """How a job ended. `reason` is a short phrase such as "exited with code 3"; `image_id`
    the image as it ran (its digest), where the backend knows it, for the audit record."""

    succeeded: bool
    reason: str = ""
    exit_code: int | None = None
    log_tail: tuple[str, ...] = ()
    image_id: str = ""


@attrs.define
class JobProgress:
    """What a backend last knew about a job that is still waiting, for the timeout message.

    A Kubernetes backend puts the scheduler's complaint here ("0/1 nodes available: ...").
    """

    waiting_reason: str = ""


@attrs.define
class StageTimes:
    """Seconds spent in each stage of one request, for logs, metrics and benchmarks."""

    receive: float = 0.0
    extract: float = 0.0
    job: float = 0.0
    pack: float = 0.0


def job_id_for(name: str) -> str:
    """A job id (32 hex characters, as MONAI_JOBID is) for a job MIS starts by itself, such as
    the warm-up: `name` when it is one, else derived from it."""
    lowered = name.lower()
    if _HEX32.fullmatch(lowered):
        return lowered
    return hashlib.sha256(name.encode()).hexdigest()[:32]
