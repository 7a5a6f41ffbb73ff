from __future__ import annotations

import pytest

from mis_core.errors import Busy
from mis_core.gate import AdmissionGate
from mis_core.model import (
    MapSpec,
    cpu_cores,
    cpu_threads,
    job_id_for,
    map_environment,
    memory_bytes,
    substitute_paths,
)


def test_job_id_is_the_request_id_when_it_is_32_hex_characters() -> None:
    assert job_id_for("ABCDEF0123456789abcdef0123456789") == "abcdef0123456789abcdef0123456789"


def test_job_id_is_derived_and_stable_otherwise() -> None:
    derived = job_id_for("client-42")
    assert len(derived) == 32
    assert int(derived, 16) >= 0
    assert derived == job_id_for("client-42")
    assert derived != job_id_for("client-43")


def test_paths_are_substituted_in_every_argument() -> None:
    argv = ["app", "-i", "{input_path}", "--out={output_path}", "{other}"]
    assert substitute_paths(argv, "/in", "/out") == ["app", "-i", "/in", "--out=/out", "{other}"]


def test_map_environment_follows_the_map_conventions_and_map_env_wins() -> None:
    spec = MapSpec(timeout_seconds=12.5, env={"MODEL": "spleen", "MONAI_HOSTNAME": "mine"})
    env = map_environment(spec, "r-1", "/in", "/out")
    assert env["MONAI_INPUTPATH"] == env["HOLOSCAN_INPUT_PATH"] == "/in"
    assert env["MONAI_OUTPUTPATH"] == env["HOLOSCAN_OUTPUT_PATH"] == "/out"
    assert env["MONAI_JOBID"] == job_id_for("r-1")
    assert env["MONAI_TIMEOUT"] == "12.5"
    assert env["MONAI_HOSTVERSION"]
    assert env["MODEL"] == "spleen"
    assert env["MONAI_HOSTNAME"] == "mine"


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
    ("quantity", "cores", "threads"),
    [("2", 2.0, 2), ("1.5", 1.5, 1), ("500m", 0.5, 1), ("2500m", 2.5, 2), ("lots", 0.0, 1)],
)
def test_cpu_quantities(quantity: str, cores: float, threads: int) -> None:
    assert cpu_cores(quantity) == cores
    assert cpu_threads(quantity) == threads


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [("8Gi", 8 * 2**30), ("512Mi", 512 * 2**20), ("1G", 10**9), ("100k", 100_000),
     ("1024", 1024), ("1.5Gi", 3 * 2**29), ("8GB", 0), ("", 0)],
)  # fmt: skip
def test_memory_quantities(quantity: str, expected: int) -> None:
    assert memory_bytes(quantity) == expected
