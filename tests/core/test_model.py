from __future__ import annotations

import pytest

from mis_core.errors import Busy
from mis_core.gate import AdmissionGate
from mis_core.model import JobRequest, MapSpec, Resources, Workspace, job_id_for


def test_a_derived_job_id_is_the_name_when_it_is_32_hex_characters() -> None:
    assert job_id_for("ABCDEF0123456789abcdef0123456789") == "abcdef0123456789abcdef0123456789"


def test_a_derived_job_id_is_stable_otherwise() -> None:
    derived = job_id_for("client-42")
    assert len(derived) == 32
    assert set(derived) <= set("0123456789abcdef")
    assert derived == job_id_for("client-42")
    assert derived != job_id_for("client-43")


def test_the_workspace_knows_its_layout() -> None:
    workspace = Workspace("/payload", "req-7")
    assert (workspace.root, workspace.input_dir, workspace.output_dir) == (
        "/payload/req-7",
        "/payload/req-7/input",
        "/payload/req-7/output",
    )
    assert workspace.file("upload.zip") == "/payload/req-7/upload.zip"
    assert workspace.sub_path(Workspace.INPUT) == "req-7/input"
    assert workspace.on("/host/payload").output_dir == "/host/payload/req-7/output"
    assert Workspace.pattern(".marker") == "*/.marker"


def test_paths_are_substituted_in_every_argument() -> None:
    request = JobRequest("r", MapSpec(), Workspace("/p", "r"))
    argv = ["app", "-i", "{input_path}", "--out={output_path}", "{other}"]
    assert request.host_folders.substitute(argv) == [
        "app", "-i", "/p/r/input", "--out=/p/r/output", "{other}",
    ]  # fmt: skip
    assert request.container_folders.substitute(argv)[2:4] == [
        "/var/monai/input",
        "--out=/var/monai/output",
    ]


def test_map_environment_follows_the_map_conventions_and_map_env_wins() -> None:
    spec = MapSpec(
        timeout_seconds=12.5,
        env={"MODEL": "spleen", "MONAI_HOSTNAME": "mine", "OMP_NUM_THREADS": "8"},
        resources=Resources(cpu="2500m"),
    )
    request = JobRequest("r-1", spec, Workspace("/p", "r-1"))
    env = request.environment(request.container_folders)
    assert env["MONAI_INPUTPATH"] == env["HOLOSCAN_INPUT_PATH"] == "/var/monai/input"
    assert env["MONAI_OUTPUTPATH"] == env["HOLOSCAN_OUTPUT_PATH"] == "/var/monai/output"
    assert env["MONAI_JOBID"] == "r-1"  # the job id, as MIS made it
    assert env["MONAI_TIMEOUT"] == "12.5"
    assert env["MONAI_HOSTVERSION"] == "0.1.0"
    assert env["MODEL"] == "spleen"
    assert env["MONAI_HOSTNAME"] == "mine"
    assert env["MKL_NUM_THREADS"] == "2"  # from the CPUs it was given
    assert env["OMP_NUM_THREADS"] == "8"  # map.env wins
    host = request.environment(request.host_folders)
    assert host["MONAI_INPUTPATH"] == "/p/r-1/input"
    assert env["PYTHONUNBUFFERED"] == host["PYTHONUNBUFFERED"] == "1"  # every backend's


def test_map_env_may_turn_python_buffering_back_on() -> None:
    spec = MapSpec(env={"PYTHONUNBUFFERED": ""})
    request = JobRequest("r-1", spec, Workspace("/p", "r-1"))
    assert request.environment(request.container_folders)["PYTHONUNBUFFERED"] == ""


def test_gate_releases_its_slot_when_the_block_raises() -> None:
    gate = AdmissionGate(1)
    with pytest.raises(ValueError, match="boom"), gate.admit():
        raise ValueError("boom")
    assert gate.in_use == 0
    with gate.admit():
        with pytest.raises(Busy), gate.admit():
            pass
        assert gate.full


@pytest.mark.parametrize(
    ("capacity", "in_use", "deleting", "full", "room"),
    [
        (1, 0, 0, False, True),
        (1, 1, 1, True, True),  # back to back: the last request's workspace is still going
        (1, 1, 2, True, False),  # deletions slower than requests: wait for the volume to drain
        (2, 1, 2, False, True),
        (2, 2, 2, True, True),
        (2, 2, 3, True, False),
    ],
)
def test_gate_counts_workspaces_still_being_deleted(
    capacity: int, in_use: int, deleting: int, full: bool, room: bool
) -> None:
    gate = AdmissionGate(capacity)
    gate.in_use = in_use
    for _ in range(deleting):
        gate.deletion_started()
    assert (gate.full, gate.room_for_a_workspace) == (full, room)
