"""The example MAP as a real MAP image: its manifests, run as packaged, and served by MIS's
docker backend from what its manifest declares."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.docker.engine import Engine
from tests.harness.command import mis_command
from tests.harness.repo import REPO
from tests.harness.servers import ServerFactory
from tests.harness.wait import wait_until
from tests.images.conftest import entries, post_study

# The first test of a run also waits for the images to be built (a few minutes).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
MAP_FOLDER = REPO / "examples" / "dicom_stats" / "map"


def manifest(name: str) -> dict[str, Any]:
    return dict(json.loads((MAP_FOLDER / name).read_text()))


def podman_run(engine: Engine, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*engine.podman.argv, "run", "--rm", "--network", "none", *args],
        env=dict(engine.podman.env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def files_under(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def docs_console(command: str) -> list[str]:
    """The lines the Images page shows under `$ <command> ...` in a console block."""
    lines = (REPO / "docs" / "container-images.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"$ {command}"))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("```"))
    return lines[start + 1 : end]


def test_map_inspect_prints_what_the_docs_show(engine: Engine, images: dict[str, str]) -> None:
    result = mis_command("map", "inspect", images["map"], "--url", engine.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == docs_console(f"mis map inspect {images['map']}")


def test_the_image_carries_both_manifest_layouts_labels_and_environment(
    engine: Engine, images: dict[str, str], tmp_path: Path
) -> None:
    shown = podman_run(engine, images["map"], "show")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == {"app": manifest("app.json"), "pkg": manifest("pkg.json")}
    legacy = podman_run(engine, "--entrypoint", "cat", images["map"], "/etc/monai/app.json")
    assert json.loads(legacy.stdout) == manifest("app.json")

    exported = tmp_path / "export"
    exported.mkdir(mode=0o777)
    exported.chmod(0o777)
    result = podman_run(
        engine, "-v", f"{exported}:/var/run/holoscan/export/config", images["map"], "export"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads((exported / "pkg.json").read_text()) == manifest("pkg.json")

    inspected = json.loads(engine.podman.run("image", "inspect", images["map"], capture=True))[0]
    config = inspected["Config"]
    assert config["Labels"]["org.opencontainers.image.version"] == manifest("app.json")["version"]
    assert config["Labels"]["org.opencontainers.image.title"]
    environment = dict(variable.split("=", 1) for variable in config["Env"])
    assert manifest("app.json")["environment"].items() <= environment.items()
    assert config["User"] == "10001:10001"


def test_it_runs_as_packaged_on_a_workstation_without_a_host(
    engine: Engine,
    images: dict[str, str],
    study_folder: Path,
    reference_output: dict[str, bytes],
    tmp_path: Path,
) -> None:
    """`docker run` with the study at /var/holoscan/input: HOLOSCAN_* decide the folders."""
    output = tmp_path / "output"
    output.mkdir(mode=0o777)
    output.chmod(0o777)
    result = podman_run(
        engine,
        "--read-only", "--read-only-tmpfs=false", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges",
        "-v", f"{study_folder}:/var/holoscan/input:ro",
        "-v", f"{output}:/var/holoscan/output",
        images["map"],
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "wrote summary of 2 series" in result.stdout
    assert files_under(output) == reference_output


def test_the_docker_backend_serves_it_from_its_manifest_alone(
    engine: Engine,
    images: dict[str, str],
    sample_study: bytes,
    reference_output: dict[str, bytes],
    tmp_path: Path,
    mis_server: ServerFactory,
) -> None:
    config = {
        "backend": "docker",
        "server": {"payload_dir": str(tmp_path / "payload")},
        "map": {"image": images["map"], "from_manifest": True},
        "docker": {"url": engine.url, "instance": "mis-images", "stop_grace_seconds": 1},
    }
    with mis_server(tmp_path, config=config) as server:
        described = httpx.get(f"{server.url}/v1/status").json()["map"]
        response = post_study(server.url, sample_study)
        wait_until(lambda: server.leftovers() == [], 10, "the workspace to be deleted")
    assert response.status_code == 200, response.text
    assert entries(response.content) == reference_output
    assert described["command"] == ["python3", "-u", "/opt/holoscan/app/entrypoint.py"]
    assert (described["input_path"], described["output_path"]) == (
        "/var/holoscan/input",
        "/var/holoscan/output",
    )
    assert described["resources"]["memory"] == "2Gi"
    wait_until(lambda: engine.containers() == [], 10, "the MAP's container to be removed")
