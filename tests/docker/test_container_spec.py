"""The container create body and MAP manifest parsing: pure functions, no engine."""

from __future__ import annotations

import pytest

from mis_adapters.docker.container import build_container, container_name
from mis_adapters.docker.manifest import parse_manifest
from mis_core.model import JobRequest, MapSpec, Resources, Workspace
from tests.built import container_options

JOB_ID = "0123456789abcdef0123456789abcdef"


def request(**spec: object) -> JobRequest:
    workspace = Workspace("/payload", JOB_ID)
    spec_ = MapSpec(image="map:1", **spec)  # type: ignore[arg-type]
    return JobRequest(JOB_ID, spec_, workspace, request_id="req-1")


def test_folders_resources_and_labels() -> None:
    body = build_container(
        request(resources=Resources(cpu="1500m", memory="2Gi", gpu=0)), container_options()
    )
    host = body["HostConfig"]
    assert host["Binds"] == [
        f"/payload/{JOB_ID}/input:/var/monai/input:ro",
        f"/payload/{JOB_ID}/output:/var/monai/output:rw",
    ]
    assert host["NanoCpus"] == 1_500_000_000
    assert host["Memory"] == host["MemorySwap"] == 2 * 1024**3
    assert host["NetworkMode"] == "none"
    assert "DeviceRequests" not in host
    assert body["Labels"]["app.kubernetes.io/instance"] == "mis"
    assert body["Labels"]["mis.monai.io/request-id"] == "req-1"  # the client's
    assert body["Labels"]["mis.monai.io/job-id"] == JOB_ID  # MIS's own
    env = dict(item.split("=", 1) for item in body["Env"])
    assert env["MONAI_INPUTPATH"] == "/var/monai/input"
    assert env["OMP_NUM_THREADS"] == "1"
    assert "Entrypoint" not in body  # no map.command: the image's own entrypoint runs
    assert container_name(container_options(), request()).startswith("mis-mis-")


def test_command_replaces_the_entrypoint_and_paths_are_substituted() -> None:
    body = build_container(
        request(command=("python3", "app.py"), args=("-i", "{input_path}", "-o", "{output_path}")),
        container_options(user="1000:1000"),
    )
    assert body["Entrypoint"] == ["python3", "app.py"]
    assert body["Cmd"] == ["-i", "/var/monai/input", "-o", "/var/monai/output"]
    assert body["User"] == "1000:1000"


def test_gpus_are_device_requests_and_a_containerised_mis_maps_its_payload_folder() -> None:
    body = build_container(
        request(resources=Resources(gpu=2)),
        container_options(payload_host_dir="/srv/mis/payload", shm_size="1Gi"),
    )
    host = body["HostConfig"]
    assert host["DeviceRequests"] == [{"Driver": "nvidia", "Count": 2, "Capabilities": [["gpu"]]}]
    assert host["Binds"][0] == f"/srv/mis/payload/{JOB_ID}/input:/var/monai/input:ro"
    assert host["ShmSize"] == 1024**3


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ('["python3", "-u", "/opt/monai/app/app.py"]', ("python3", "-u", "/opt/monai/app/app.py")),
        (["python3", "/opt/holoscan/app"], ("python3", "/opt/holoscan/app")),
        ("python3 /opt/app/app.py --flag", ("python3", "/opt/app/app.py", "--flag")),
        ("", ()),
    ],
)
def test_manifest_commands_in_the_forms_packagers_write(
    command: object, expected: tuple[str, ...]
) -> None:
    assert parse_manifest("/etc/monai", {"command": command}, {}).command == expected


def test_holoscan_manifest_folders_are_relative_to_the_working_directory() -> None:
    app = {
        "command": '["python3", "/opt/holoscan/app"]',
        "input": {"path": "input/"},
        "output": {"path": "output/"},
        "workingDirectory": "/var/holoscan",
        "timeout": 120,
    }
    pkg = {"resources": {"cpu": 2, "gpu": 1, "memory": "4Gi", "gpuMemory": "8Gi"}}
    manifest = parse_manifest("/etc/holoscan", app, pkg)
    assert manifest.map_settings() == {
        "command": ["python3", "/opt/holoscan/app"],
        "input_path": "/var/holoscan/input",
        "output_path": "/var/holoscan/output",
        "timeout_seconds": 120.0,
        "resources": {"cpu": "2", "memory": "4Gi", "gpu": 1},
    }
