"""The composition root builds only what the configuration asks for, from all of it."""

from __future__ import annotations

import ast
import functools
import inspect
import os
import subprocess
import sys
from pathlib import Path
from typing import cast

import attrs
import pytest
from prometheus_client import generate_latest
from pydantic import BaseModel

from mis_adapters.docker.backend import DockerJobBackend
from mis_adapters.docker.container import ContainerOptions
from mis_adapters.docker.options import DockerOptions
from mis_adapters.kubernetes.backend import KubernetesJobBackend
from mis_adapters.kubernetes.job import JobOptions
from mis_adapters.kubernetes.options import KubernetesOptions
from mis_adapters.kubernetes.ownership import POD_NAME_VARIABLE, POD_UID_VARIABLE
from mis_adapters.process.backend import ProcessJobBackend
from mis_adapters.process.options import ProcessOptions
from mis_adapters.storage.volume import LocalStorage, PayloadLimits
from mis_app import bootstrap
from mis_app.bootstrap.connections import listener
from mis_app.http import ConnectionLimits
from mis_app.metrics import Metrics
from mis_app.settings import DockerSettings, KubernetesSettings, PayloadVolumeSettings, Settings
from mis_app.settings.map import MapSettings, ResourceSettings
from mis_app.settings.process import ProcessSettings
from mis_app.settings.server import AuthSettings, ServerSettings, TlsSettings
from mis_app.state import app_state
from mis_core.model import JobOutcome, MapSpec, Resources
from tests import built
from tests.core.driving import STAGES, full_request
from tests.fakes import FakeClock, FakeJobBackend, FakeStorage
from tests.harness.repo import REPO


def test_the_process_backend_does_not_load_the_kubernetes_client() -> None:
    code = (
        "import sys, mis_app.bootstrap, mis_app.cli\n"
        "assert 'kubernetes_asyncio' not in sys.modules, 'loaded for nothing: ~50 MB'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_backend_options_are_the_settings_of_the_same_names() -> None:
    """Every option a backend takes comes from a settings key of that name, none is dropped."""
    settings = Settings.model_validate(
        {
            "backend": "docker",
            "map": {"image": "map:1"},
            "server": {"map_log_max_bytes": 3 * 1024**2},
            "docker": {"user": "1000:1000", "network": "bridge", "cap_drop": ["NET_RAW"],
                       "shm_size": "1Gi", "payload_host_dir": "/srv/payload",
                       "pull": "never", "stop_grace_seconds": 7},
            "kubernetes": {"namespace": "radiology", "instance": "ct", "node_name": "gpu-1",
                           "payload_volume": {"claim_name": "payload"},
                           "tolerations": [{"key": "gpu", "operator": "Exists"}],
                           "ttl_seconds_after_finished": 60, "delete_wait_seconds": 4,
                           "resync_seconds": 3, "warm_up_timeout_seconds": 60,
                           "api_retry_max_seconds": 2},
        }
    )  # fmt: skip
    docker = bootstrap.build_backend(settings).jobs.options  # type: ignore[attr-defined]
    assert (docker.image, docker.pull, docker.stop_grace_seconds) == ("map:1", "never", 7)
    k8s = bootstrap.kubernetes_options(settings)
    assert (k8s.delete_wait_seconds, k8s.resync_seconds) == (4, 3)
    assert (k8s.warm_up_timeout_seconds, k8s.api_retry_max_seconds) == (60, 2)
    assert docker.map_log_bytes == k8s.map_log_bytes == 3 * 1024**2
    container = docker.container
    assert (container.user, container.network, container.cap_drop) == (
        "1000:1000", "bridge", ("NET_RAW",),
    )  # fmt: skip
    assert (container.shm_size, container.payload_host_dir) == ("1Gi", "/srv/payload")
    job = k8s.job
    assert (job.namespace, job.instance, job.node_name, job.claim_name) == (
        "radiology", "ct", "gpu-1", "payload",
    )  # fmt: skip
    assert list(job.tolerations) == [{"key": "gpu", "operator": "Exists"}]
    assert job.ttl_seconds_after_finished == 60
    # group_add is no setting: the container joins MIS's own group, to share the workspace
    assert container.group_add == (str(os.getgid()),)
    assert set(attrs.fields_dict(ContainerOptions)) - {"group_add"} <= set(
        DockerSettings.model_fields
    )
    assert set(attrs.fields_dict(JobOptions)) <= {
        *KubernetesSettings.model_fields,
        *PayloadVolumeSettings.model_fields,
    }
    # besides the builders' options, only what the server and map sections state
    given = {"job", "container", "image", "map_log_bytes"}
    assert set(attrs.fields_dict(KubernetesOptions)) - given <= set(KubernetesSettings.model_fields)
    assert set(attrs.fields_dict(DockerOptions)) - given <= set(DockerSettings.model_fields)


def test_one_workers_setting_reaches_unpacking_and_packing(tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {"server": {"payload_dir": str(tmp_path), "workers": 3}, "map": {"command": ["true"]}}
    )
    storage = bootstrap.build_service(settings).storage
    assert storage.workers == 3  # type: ignore[attr-defined]


# A backend offers these beside the JobBackend port; nothing else may have a default of its own
SEAMS = {"connector", "owner", "base_env"}


@pytest.mark.parametrize(
    "built",
    [
        ProcessJobBackend,
        KubernetesJobBackend,
        DockerJobBackend,
        LocalStorage,
        ProcessOptions,
        KubernetesOptions,
        JobOptions,
        DockerOptions,
        ContainerOptions,
        PayloadLimits,
        ConnectionLimits,
    ],
)
def test_adapters_have_no_defaults_of_their_own_for_what_the_settings_define(
    built: type,
) -> None:
    defaults = {
        name
        for name, parameter in inspect.signature(built).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    assert defaults <= SEAMS, f"{built.__name__} states defaults the settings state: {defaults}"


def test_a_backend_offers_its_warm_up_when_the_settings_ask_and_its_metrics() -> None:
    k8s = {"payload_volume": {"claim_name": "payload"}}
    cold = bootstrap.build_backend(built.settings(backend="kubernetes", kubernetes=k8s))
    warm = bootstrap.build_backend(
        built.settings(backend="kubernetes", kubernetes={**k8s, "warm_up": True})
    )
    assert cold.warm_up is None
    assert warm.warm_up is cast(object, warm.jobs)
    docker = bootstrap.build_backend(built.settings(backend="docker"))
    assert docker.warm_up is cast(object, docker.jobs)  # the docker backend always pulls ahead
    process = bootstrap.build_backend(built.settings(process={"sandbox": "none"}))
    assert (process.warm_up, process.collectors) == (None, ())
    metrics = Metrics()
    metrics.add(warm.collectors)
    scraped = generate_latest(metrics.registry).decode()
    for name in ("mis_kubernetes_watch_restarts", "mis_kubernetes_api_retries"):
        assert f"# TYPE {name}_total counter" in scraped


def test_the_kubernetes_jobs_are_owned_by_the_pod_mis_s_environment_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(POD_NAME_VARIABLE, "mis-7d9f")
    monkeypatch.setenv(POD_UID_VARIABLE, "0b6c-uid")
    k8s = {"payload_volume": {"claim_name": "payload"}}
    backend = bootstrap.build_backend(built.settings(backend="kubernetes", kubernetes=k8s)).jobs
    owner = backend.owner  # type: ignore[attr-defined]
    assert (owner.pod_name, owner.pod_uid) == ("mis-7d9f", "0b6c-uid")


@pytest.mark.anyio
async def test_the_service_runs_on_the_fakes_it_is_given() -> None:
    journal: list[str] = []
    jobs = FakeJobBackend(journal, JobOutcome(succeeded=True))
    storage, clock = FakeStorage(journal), FakeClock()
    app = bootstrap.create_app(
        built.settings(process={"sandbox": "none"}),
        backend=bootstrap.Backend(jobs),
        storage=storage,
        clock=clock,
    )
    service = app_state(app).service
    assert (service.jobs, service.storage, service.clock) == (jobs, storage, clock)
    async with service.running():
        await full_request(service, "0123456789abcdef0123456789abcdef", "study-0042")
    assert journal[:7] == ["sweep jobs", "sweep storage", *STAGES]
    assert jobs.requests[0].request_id == "study-0042"


def test_the_server_takes_connections_as_the_server_settings_say() -> None:
    """The connection bounds are the settings of the same names; the budget's metrics are
    served; the grace is the settings' (50 s here)."""
    bounds = {
        "max_header_bytes": 8192,
        "header_timeout_seconds": 3,
        "download_idle_timeout_seconds": 4,
        "download_timeout_seconds": 5,
    }
    settings = built.settings(
        server={**bounds, "max_connections": 50, "shutdown_grace_seconds": 50}
    )
    metrics = Metrics()
    taken = listener(settings, metrics)
    assert taken.protocol.limits == ConnectionLimits(**bounds)  # type: ignore[attr-defined]
    assert (taken.https, taken.shutdown_grace_seconds) == (False, 50)
    scraped = generate_latest(metrics.registry).decode()
    assert "mis_max_connections 50.0" in scraped


# What the bootstrap builds each backend section into, taking its keys by name
# (`from_settings`; the map section through MapSettings.spec())
TAKEN_BY: dict[type[BaseModel], tuple[type, ...]] = {
    DockerSettings: (DockerOptions, ContainerOptions),
    KubernetesSettings: (KubernetesOptions, JobOptions),
    PayloadVolumeSettings: (JobOptions,),
    ProcessSettings: (ProcessOptions,),
    MapSettings: (MapSpec,),
    ResourceSettings: (Resources,),
}
# The edge's sections and the root are mapped by hand into what uses them (the upload limits,
# the middleware, the storage, the descriptor plan): each key of theirs is read by name off its
# section (`server.port`, `settings.server.port`) outside the settings package, or taken by
# name by the options classes given
EDGE: dict[type[BaseModel], tuple[type, ...]] = {
    Settings: (),
    ServerSettings: (PayloadLimits, ConnectionLimits),
    AuthSettings: (),
    TlsSettings: (),
}
# The keys those two rules leave out, each read by name off its section where it is used
READ_ELSEWHERE = {
    "docker.url": "the engine's address: the bootstrap connects the engine's client to it "
    "and reads MAP manifests through it; no container needs it",
    "kubernetes.warm_up": "whether the bootstrap starts the backend's warm-up at all",
    "map.from_manifest": "whether the bootstrap fills the map section in from the image's "
    "manifest, before anything is built from it",
    "server.shutdown_grace_seconds": "used through Settings.shutdown_grace_seconds, which "
    "makes it map.timeout_seconds + 30 when it is unset",
}


def _is_section(annotation: object) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _section_names() -> dict[type[BaseModel], str]:
    """The name each section goes by, in the file and in the code: its key in its parent."""
    names: dict[type[BaseModel], str] = {Settings: "settings"}
    pending: list[type[BaseModel]] = [Settings]
    while pending:
        for key, field in pending.pop().model_fields.items():
            if _is_section(field.annotation):
                names[cast(type[BaseModel], field.annotation)] = key
                pending.append(cast(type[BaseModel], field.annotation))
    return names


NAMES = _section_names()


def _keys(section: type[BaseModel]) -> set[str]:
    """Its keys that hold values; a section within it is held to its own keys."""
    return {k for k, field in section.model_fields.items() if not _is_section(field.annotation)}


def _listed(section: type[BaseModel]) -> set[str]:
    return {d.partition(".")[2] for d in READ_ELSEWHERE if d.partition(".")[0] == NAMES[section]}


def _fields(classes: tuple[type, ...]) -> set[str]:
    return {name for cls in classes for name in attrs.fields_dict(cls)}


@functools.cache
def _reads() -> frozenset[tuple[str, str]]:
    """(owner, key) for every `owner.key` and `x.owner.key` read in MIS's code outside the
    settings package (whose validators read every key they check)."""
    settings_package = REPO / "mis_app" / "settings"
    found = set()
    for package in ("mis_core", "mis_adapters", "mis_app"):
        for path in (REPO / package).rglob("*.py"):
            if settings_package in path.parents:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                    found.add((node.value.id, node.attr))
                elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute):
                    found.add((node.value.attr, node.attr))
    return frozenset(found)


def test_every_section_is_held_to_what_takes_its_keys() -> None:
    assert set(NAMES) == {*TAKEN_BY, *EDGE}


@pytest.mark.parametrize("section", TAKEN_BY, ids=lambda section: section.__name__)
def test_every_key_of_a_backend_section_reaches_its_options_or_is_listed_with_why(
    section: type[BaseModel],
) -> None:
    """Both ways: the test above holds each option to a setting; this holds each setting to
    what takes it, so that a key which does nothing cannot be added."""
    taken, listed = _fields(TAKEN_BY[section]), _listed(section)
    assert not listed & taken, "listed as read elsewhere, but an options class takes it"
    assert _keys(section) - taken == listed, "keys that nothing takes, or that are listed"


@pytest.mark.parametrize("section", EDGE, ids=lambda section: section.__name__)
def test_every_key_of_the_edge_sections_is_read_by_name_or_is_listed_with_why(
    section: type[BaseModel],
) -> None:
    read = {key for owner, key in _reads() if owner == NAMES[section]}
    used, listed = _fields(EDGE[section]) | read, _listed(section)
    assert not listed & used, "listed as read elsewhere, but it is read by name or taken"
    assert _keys(section) - used == listed, "keys that nothing reads, or that are listed"


@pytest.mark.parametrize("dotted", READ_ELSEWHERE)
def test_what_is_listed_as_read_elsewhere_is_read(dotted: str) -> None:
    """Off its section, or as the settings derive it (`settings.shutdown_grace_seconds`)."""
    section, key = dotted.split(".")
    assert {(section, key), ("settings", key)} & _reads(), f"nothing reads {dotted}"
