"""The configuration file (YAML), `MIS_<SECTION>__<KEY>` overrides, and its validation.

Invalid configuration stops start-up with a message that names each bad key.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from mis_core.model import MapSpec, Resources
from mis_core.quantity import CpuQuantity, MemoryQuantity

ENV_PREFIX = "MIS_"
CONFIG_ENV = "MIS_CONFIG"
_ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"  # what Kubernetes accepts as a variable name
GiB = 1024**3


class SettingsError(Exception):
    """Configuration that cannot be used, with one line per problem."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AuthSettings(_Section):
    tokens_file: Path | None = None  # one bearer token per line; none: no authentication
    protect_metrics: bool = True  # /metrics needs a token too (healthz and readyz never do)

    @model_validator(mode="after")
    def _tokens_readable(self) -> AuthSettings:
        if self.tokens_file is not None and not self.tokens_file.is_file():
            raise ValueError(f"tokens_file: {self.tokens_file} is not a readable file")
        return self


class TlsSettings(_Section):
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("set both cert_file and key_file to serve HTTPS, or neither")
        for path in (self.cert_file, self.key_file):
            if path is not None and not path.is_file():
                raise ValueError(f"{path} is not a readable file")
        return self


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    payload_dir: Path = Path("/var/lib/mis/payload")
    max_concurrent: int = Field(1, ge=1)
    max_upload_bytes: ByteSize = ByteSize(10 * GiB)
    max_extracted_bytes: ByteSize = ByteSize(20 * GiB)
    max_entries: int = Field(100_000, ge=1)
    max_compression_ratio: float = Field(200.0, ge=1)
    # What the MAP's output files may add up to (st_size: a sparse file counts whole, as the
    # zip would send it); more is 500 map_failed before anything is sent.
    max_output_bytes: ByteSize = Field(ByteSize(64 * GiB), ge=1)
    # What the output zip may list, checked before anything is sent too (more is 500
    # map_failed naming the setting): files and empty folders, one path's UTF-8 bytes (the
    # zip format holds 65,535), and the central directory (a record and a name per entry).
    # A tree of long names is all headers: these bound what it costs.
    max_output_entries: int = Field(1_000_000, ge=1)
    max_output_path_bytes: int = Field(4096, ge=1, le=65535)
    max_output_directory_bytes: ByteSize = Field(ByteSize(256 * 1024**2), ge=1)
    output_compression: Literal["adaptive", "deflate", "stored"] = "adaptive"
    output_compression_level: int = Field(1, ge=1, le=9)
    # Threads that unpack the input and deflate the output, per request; 0: the CPUs MIS may
    # use (affinity, cgroup quota), up to 4; 1: none besides the request's own.
    workers: int = Field(0, ge=0)
    log_level: Literal["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    # A client that sends nothing for this long, or takes longer than the total, gets 408;
    # so does one that, once the idle timeout has passed, sent fewer bytes in the last idle
    # timeout than the minimum rate asks for (every body byte counts, whatever part of a form
    # it is in; 0: no minimum).
    upload_idle_timeout_seconds: float = Field(30.0, gt=0)
    upload_timeout_seconds: float = Field(3600.0, gt=0)
    min_upload_bytes_per_second: float = Field(16384, ge=0)
    # A client that reads too little of the result for the send buffer to drain in the idle
    # time, or still reads it the total time after it first fell behind, is cut off (the slot
    # is freed, the job's files deleted).
    download_idle_timeout_seconds: float = Field(30.0, gt=0)
    download_timeout_seconds: float = Field(3600.0, gt=0)
    # The request line and headers: bigger, or slower to arrive, is refused (431, 408) before
    # anything else runs.
    max_header_bytes: ByteSize = Field(ByteSize(64 * 1024), ge=1024)
    header_timeout_seconds: float = Field(10.0, gt=0)
    # On SIGTERM/SIGINT, requests in flight get this long to finish before they are stopped;
    # None: map.timeout_seconds + 30.
    shutdown_grace_seconds: float | None = Field(None, ge=0)
    auth: AuthSettings = AuthSettings()
    tls: TlsSettings = TlsSettings()


class ResourceSettings(_Section):
    """Kubernetes quantities, checked by the one parser the backends read them with."""

    cpu: str = "1"
    memory: str = "8Gi"
    gpu: int = Field(0, ge=0)

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, value: str) -> str:
        return str(CpuQuantity.parse(value))

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        return str(MemoryQuantity.parse(value))


class MapSettings(_Section):
    image: str = ""
    command: list[str] = []
    args: list[str] = []
    env: dict[str, str] = {}
    input_path: str = "/var/monai/input"
    output_path: str = "/var/monai/output"
    resources: ResourceSettings = ResourceSettings()
    timeout_seconds: float = Field(50.0, gt=0)
    # Take command, folders, resources and timeout from the image's MAP manifest where this
    # configuration leaves them unset (needs the image in the engine docker.url names).
    from_manifest: bool = False

    def spec(self) -> MapSpec:
        return MapSpec(
            image=self.image,
            command=tuple(self.command),
            args=tuple(self.args),
            env=dict(self.env),
            input_path=self.input_path,
            output_path=self.output_path,
            resources=Resources(**self.resources.model_dump()),
            timeout_seconds=self.timeout_seconds,
        )


class ProcessSettings(_Section):
    kill_grace_seconds: float = Field(5.0, ge=0)
    # processes and threads the MAP may add to those of MIS's user (RLIMIT_NPROC)
    pids_limit: int = Field(4096, ge=16)
    # bubblewrap: always (start-up fails where it does not work); auto: where it works
    sandbox: Literal["auto", "bubblewrap", "none"] = "auto"


class PayloadVolumeSettings(_Section):
    """The volume that holds server.payload_dir, as a Job must mount it."""

    claim_name: str = ""
    host_path: str = ""
    # Pin Jobs to MIS's node? None: yes for a hostPath, and for a claim that is ReadWriteOnce.
    node_local: bool | None = None


DEFAULT_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}
# With these two, a Job's pod passes the `restricted` Pod Security Standard (given a claim:
# a hostPath payload volume passes only `privileged`).
DEFAULT_POD_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


class SecretKeyRef(_Section):
    """One key of a Secret in MIS's namespace; the kubelet reads it, MIS never does."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
    key: str = Field(pattern=r"^[-._a-zA-Z0-9]{1,253}$")


class KubernetesSettings(_Section):
    namespace: str = ""  # default: the namespace MIS runs in, else the kubeconfig's
    instance: str = Field("mis", pattern=r"^[a-z0-9]([-a-z0-9]{0,24}[a-z0-9])?$")
    node_name: str = ""  # default: the NODE_NAME environment variable (downward API)
    payload_volume: PayloadVolumeSettings = PayloadVolumeSettings()
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    image_pull_secrets: list[str] = []
    service_account_name: str = ""
    node_selector: dict[str, str] = {}
    tolerations: list[dict[str, Any]] = []
    affinity: dict[str, Any] = {}
    runtime_class_name: str = ""
    priority_class_name: str = ""
    extra_volumes: list[dict[str, Any]] = []
    extra_volume_mounts: list[dict[str, Any]] = []
    security_context: dict[str, Any] = DEFAULT_SECURITY_CONTEXT
    pod_security_context: dict[str, Any] = DEFAULT_POD_SECURITY_CONTEXT
    # The container's scratch space (its writable layer, logs), requested and limited.
    ephemeral_storage: str = "4Gi"
    # MAP environment variables taken from Secrets: {VARIABLE: {name: SECRET, key: KEY}}.
    secret_env: dict[Annotated[str, StringConstraints(pattern=_ENV_NAME)], SecretKeyRef] = {}
    deadline_margin_seconds: int = Field(30, ge=0)
    ttl_seconds_after_finished: int = Field(300, ge=0)
    delete_wait_seconds: float = Field(30, ge=0)
    warm_up: bool = False  # pre-pull the MAP image at start-up; readiness waits for it

    @field_validator("ephemeral_storage")
    @classmethod
    def _ephemeral_storage(cls, value: str) -> str:
        return str(MemoryQuantity.parse(value))


class DockerSettings(_Section):
    """The Docker Engine API (Docker, or Podman's Docker-compatible service)."""

    url: str = Field("unix:///var/run/docker.sock", pattern=r"^(unix|tcp|http|https)://")
    instance: str = Field("mis", pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
    pull: Literal["missing", "always", "never"] = "missing"  # at start-up and when missing
    # Where server.payload_dir is on the engine's host, when MIS itself runs in a container.
    payload_host_dir: str = ""
    user: str = ""  # user[:group] inside the container; empty: the image's own
    network: str = "none"  # a MAP reads and writes files; it needs no network
    cap_drop: list[str] = ["ALL"]
    gpu_driver: str = "nvidia"
    shm_size: str = ""
    pids_limit: int = Field(4096, ge=16)  # processes and threads: a fork bomb stops here

    @field_validator("shm_size")
    @classmethod
    def _shm_size(cls, value: str) -> str:
        return value and str(MemoryQuantity.parse(value))

    stop_grace_seconds: float = Field(5.0, ge=0)  # SIGTERM, then SIGKILL after this


class Settings(_Section):
    backend: Literal["process", "kubernetes", "docker"] = "process"
    server: ServerSettings = ServerSettings()
    map: MapSettings = MapSettings()
    process: ProcessSettings = ProcessSettings()
    kubernetes: KubernetesSettings = KubernetesSettings()
    docker: DockerSettings = DockerSettings()
    _source: Path | None = PrivateAttr(None)  # the file read, which a MAP must not see

    @property
    def source(self) -> Path | None:
        return self._source

    @model_validator(mode="after")
    def _backend_needs(self) -> Settings:
        if self.backend == "process" and not self.map.command and not self.map.from_manifest:
            raise ValueError(
                "map.command: the process backend needs the MAP's command, as a list "
                'such as ["python3", "app.py", "-i", "{input_path}", "-o", "{output_path}"]'
            )
        if not self.map.image:
            if self.backend != "process":
                raise ValueError(f"map.image: the {self.backend} backend needs the MAP's image")
            if self.map.from_manifest:
                raise ValueError("map.image: map.from_manifest reads the manifest of map.image")
        if self.backend == "kubernetes":
            volume = self.kubernetes.payload_volume
            if bool(volume.claim_name) == bool(volume.host_path):
                raise ValueError(
                    "kubernetes.payload_volume: set exactly one of claim_name (a "
                    "PersistentVolumeClaim) or host_path (a folder on the node)"
                )
        return self


def with_map_defaults(settings: Settings, defaults: Mapping[str, Any]) -> Settings:
    """`settings` with `defaults` (map keys, as a MAP manifest declares them) in the keys that
    neither the file nor the environment set."""
    data = settings.model_dump()
    current = settings.map
    for key, value in defaults.items():
        if key == "resources":
            unset = value.keys() - current.resources.model_fields_set
            data["map"]["resources"].update({name: value[name] for name in unset})
        elif key not in current.model_fields_set:
            data["map"][key] = value
    try:
        result = Settings.model_validate(data)
    except ValidationError as exc:
        described = _describe(exc, None)
        raise SettingsError(described.replace(":", " with the MAP manifest's values:", 1)) from None
    result._source = settings.source
    return result


def load_settings(path: Path | None, environ: Mapping[str, str]) -> Settings:
    """Read `path` (or the file `MIS_CONFIG` names; none means the defaults) and apply overrides."""
    if path is None and environ.get(CONFIG_ENV):
        path = Path(environ[CONFIG_ENV])
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise SettingsError(
                f"cannot read the configuration file {path}: {exc.strerror}"
            ) from None
        except yaml.YAMLError as exc:
            raise SettingsError(f"{path} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise SettingsError(f"{path}: the configuration must be a mapping of sections")
        data = loaded
    overrides = _apply_overrides(data, environ)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(_describe(exc, path, overrides)) from None
    settings._source = path
    return settings


def _apply_overrides(
    data: dict[str, Any], environ: Mapping[str, str]
) -> dict[tuple[str, ...], str]:
    """`MIS_MAP__TIMEOUT_SECONDS=5` sets map.timeout_seconds; `MIS_BACKEND` sets backend.

    A value that starts with `[` or `{` is read as YAML (a list or mapping); anything else
    stays a string for validation to convert. Returns which variable set which key, so that a
    bad value is reported as coming from the variable, not from the file.
    """
    overrides: dict[tuple[str, ...], str] = {}
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        keys = name[len(ENV_PREFIX) :].lower().split("__")
        if len(keys) == 1 and keys[0] not in Settings.model_fields:
            continue  # MIS_REQUIRE_ALL and friends are not configuration
        target = data
        for key in keys[:-1]:
            target = target.setdefault(key, {})
            if not isinstance(target, dict):
                raise SettingsError(f"{name}: {'.'.join(keys[:-1])} is not a section")
        try:
            parsed = yaml.safe_load(value) if value.lstrip()[:1] in ("[", "{") else value
        except yaml.YAMLError as exc:
            raise SettingsError(f"{name}: not valid YAML: {exc}") from None
        target[keys[-1]] = parsed
        overrides[tuple(keys)] = name
    return overrides


def _describe(
    exc: ValidationError,
    path: Path | None,
    overrides: Mapping[tuple[str, ...], str] | None = None,
) -> str:
    lines = []
    from_file = False
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        key = ".".join(loc)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key (check its spelling and section)"
        variable = _source(loc, overrides or {})
        if variable:
            message += f" (the value comes from the environment variable {variable})"
        from_file = from_file or not variable
        lines.append(f"  {key}: {message}" if key else f"  {message}")
    where = f" in {path}" if path and from_file else ""
    return "\n".join([f"invalid configuration{where}:", *lines])


def _source(loc: tuple[str, ...], overrides: Mapping[tuple[str, ...], str]) -> str:
    """The variable that set `loc`, or a section above it."""
    for length in range(len(loc), 0, -1):
        if loc[:length] in overrides:
            return overrides[loc[:length]]
    return ""
