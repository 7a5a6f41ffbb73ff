"""The one way tests start MIS: `with mis_server(work, overrides, backend=...) as server`.

A test or fixture names only what differs from a base configuration (the scripted test MAP on
the process backend, or that MAP on the Kubernetes backend against the API double); the
subprocess, its port, its log and its clean stop are tests/e2e/server.py's `running_server`."""

from __future__ import annotations

import copy
import ssl
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

from tests.e2e.server import Server, running_server, scripted_map_config
from tests.k8s.mis_e2e import kubernetes_config
from tests.nonroot import NonRoot

Backend = Literal["process", "kubernetes"]


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
    verify: ssl.SSLContext | bool = True,
    nofile: tuple[int, int] | None = None,
) -> Iterator[Server]:
    """MIS serving from `work` until the block ends.

    `config` replaces the base configuration `backend` names; `overrides` is merged into it
    key by key (nested mappings merge, anything else replaces). `kubeconfig` points MIS at an
    API double. With `nonroot`, MIS runs as that user and `work` must be one of its folders."""
    base = config if config is not None else base_config(work, backend, nonroot)
    merged = merge(base, overrides or {})
    environment = dict(env or {})
    if kubeconfig is not None:
        if nonroot is not None:
            kubeconfig.chmod(0o644)
        environment["KUBECONFIG"] = str(kubeconfig)
    with running_server(
        merged, work, env=environment, verify=verify, nonroot=nonroot, nofile=nofile
    ) as server:
        yield server


def base_config(work: Path, backend: Backend, nonroot: NonRoot | None) -> dict[str, Any]:
    if backend == "kubernetes":
        return kubernetes_config(work)
    return scripted_map_config(work, nonroot)


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` laid over it; neither is changed."""
    merged = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
