"""The one way tests start MIS: `with mis_server(work, overrides, backend=...) as server`.

A test or fixture names only what differs from its backend's base configuration
(tests/harness/configs.py); this module writes the configuration, starts MIS in a subprocess
on a free port of 127.0.0.1 with its log in `work`, waits for /healthz and stops it cleanly."""

from __future__ import annotations

import copy
import os
import resource
import ssl
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml

from mis_adapters.storage.layout import PAYLOAD_ROOT_MARKER
from tests.harness.command import mis_argv
from tests.harness.configs import docker_config, kubernetes_config, process_config
from tests.harness.process import free_port, launched
from tests.harness.repo import REPO
from tests.harness.wait import wait_until
from tests.nonroot import NonRoot

Backend = Literal["process", "kubernetes", "docker"]


class Server:
    """A running MIS, as `mis_server` yields it: its URL, payload folder, log and process."""

    def __init__(self, url: str, payload_dir: Path, log: Path, process: subprocess.Popen[bytes]):
        self.url = url
        self.payload_dir = payload_dir
        self.log = log
        self.process = process

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def leftovers(self) -> list[str]:
        """What the payload folder holds besides its marker."""
        if not self.payload_dir.exists():
            return []
        return sorted(p.name for p in self.payload_dir.iterdir() if p.name != PAYLOAD_ROOT_MARKER)

    def wait_until_clean(self, timeout: float = 5.0) -> None:
        """Wait for the payload folder to be empty: workspaces go just after their response."""
        wait_until(lambda: self.leftovers() == [], timeout, "the workspaces to be deleted")


class ServerFactory(Protocol):
    """What the `mis_server` fixture returns; see `mis_server` below."""

    def __call__(
        self,
        work: Path,
        overrides: Mapping[str, Any] | None = None,
        *,
        backend: Backend = "process",
        config: dict[str, Any] | None = None,
        nonroot: NonRoot | None = None,
        env: Mapping[str, str] | None = None,
        kubeconfig: Path | None = None,
        engine_url: str | None = None,
        verify: ssl.SSLContext | bool = True,
        nofile: tuple[int, int] | None = None,
    ) -> AbstractContextManager[Server]: ...


@contextmanager
def mis_server(
    work: Path,
    overrides: Mapping[str, Any] | None = None,
    *,
    backend: Backend = "process",
    config: dict[str, Any] | None = None,
    nonroot: NonRoot | None = None,
    env: Mapping[str, str] | None = None,
    kubeconfig: Path | None = None,
    engine_url: str | None = None,
    verify: ssl.SSLContext | bool = True,
    nofile: tuple[int, int] | None = None,
) -> Iterator[Server]:
    """MIS serving from `work` until the block ends (HTTPS when the configuration has TLS).

    `config` replaces the base configuration `backend` names; `overrides` is merged into it
    key by key (nested mappings merge, anything else replaces). `kubeconfig` points MIS at an
    API double, `engine_url` at a container engine (the docker backend's base needs it). With
    `nonroot`, MIS runs as that user and `work` must be one of its folders
    (`NonRoot.workdir()`). `nofile`: MIS's descriptor limit (soft, hard). `verify`: how
    /healthz is checked over TLS."""
    base = config if config is not None else base_config(work, backend, nonroot, engine_url)
    merged = merge(base, overrides or {})
    environment = dict(env or {})
    if kubeconfig is not None:
        if nonroot is not None:
            kubeconfig.chmod(0o644)
        environment["KUBECONFIG"] = str(kubeconfig)
    with _running(merged, work, environment, verify, nonroot, nofile) as server:
        yield server


def base_config(
    work: Path, backend: Backend, nonroot: NonRoot | None, engine_url: str | None
) -> dict[str, Any]:
    if backend == "kubernetes":
        return kubernetes_config(work)
    if backend == "docker":
        if engine_url is None:
            raise TypeError("the docker backend's base configuration needs engine_url")
        return docker_config(work, engine_url)
    return process_config(work, nonroot)


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` laid over it; neither is changed."""
    merged = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@contextmanager
def _running(
    config: dict[str, Any],
    work: Path,
    env: Mapping[str, str],
    verify: ssl.SSLContext | bool,
    nonroot: NonRoot | None,
    nofile: tuple[int, int] | None,
) -> Iterator[Server]:
    """MIS with `config` (written to `work`/mis.yaml), its output in `work`/server.log; the
    environment is this one without MIS_ variables, with `env` laid over it."""
    config_file = work / "mis.yaml"
    config_file.write_text(yaml.safe_dump(config))
    argv = mis_argv()
    if nonroot is not None:
        config_file.chmod(0o644)
        argv = nonroot.command(nonroot.python, *argv[1:])  # its own Python, the same module
    port = free_port()
    log = work / "server.log"
    server_env = {k: v for k, v in os.environ.items() if not k.startswith("MIS_")}
    server_env.update(env)
    scheme = "https" if config["server"].get("tls") else "http"
    url = f"{scheme}://127.0.0.1:{port}"
    with launched(
        [*argv, "serve", "--config", str(config_file), "--port", str(port)],
        url,
        log=log,
        env=server_env,
        cwd=REPO if nonroot is None else nonroot.root,
        verify=verify,
        preexec_fn=None if nofile is None else lambda: _limit_descriptors(nofile),
    ) as process:
        yield Server(url, Path(config["server"]["payload_dir"]), log, process)


def _limit_descriptors(limits: tuple[int, int]) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, limits)
