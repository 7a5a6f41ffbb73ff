"""The composition root builds only what the configuration asks for, from all of it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import attrs

from mis_adapters.docker.container import ContainerOptions
from mis_adapters.kubernetes.job import JobOptions
from mis_app import bootstrap
from mis_app.settings import DockerSettings, KubernetesSettings, PayloadVolumeSettings, Settings


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
            "docker": {"user": "1000:1000", "network": "bridge", "cap_drop": ["NET_RAW"],
                       "shm_size": "1Gi", "payload_host_dir": "/srv/payload"},
            "kubernetes": {"namespace": "radiology", "instance": "ct", "node_name": "gpu-1",
                           "payload_volume": {"claim_name": "payload"},
                           "tolerations": [{"key": "gpu", "operator": "Exists"}],
                           "ttl_seconds_after_finished": 60},
        }
    )  # fmt: skip
    container = bootstrap.build_backend(settings).jobs.options  # type: ignore[attr-defined]
    assert (container.user, container.network, container.cap_drop) == (
        "1000:1000", "bridge", ("NET_RAW",),
    )  # fmt: skip
    assert (container.shm_size, container.payload_host_dir) == ("1Gi", "/srv/payload")
    job = bootstrap.job_options(settings)
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


def test_one_workers_setting_reaches_unpacking_and_packing(tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {"server": {"payload_dir": str(tmp_path), "workers": 3}, "map": {"command": ["true"]}}
    )
    storage = bootstrap.build_service(settings).storage
    assert storage.workers == 3  # type: ignore[attr-defined]
