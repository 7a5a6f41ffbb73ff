"""The docker backend through MIS's HTTP API, against a real engine (Podman's Docker API)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.docker.engine import MISSING_IMAGE, Engine
from tests.harness.command import mis_command
from tests.harness.configs import MAP_IMAGE, docker_config
from tests.harness.servers import ServerFactory
from tests.harness.wait import wait_until

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


def study(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def post(url: str, body: bytes, timeout: float = 60) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/inference",
        content=body,
        headers={"Content-Type": "application/zip"},
        timeout=timeout,
    )


def test_round_trip_mounts_the_folders_and_sets_the_map_environment(
    tmp_path: Path, engine: Engine, mis_server: ServerFactory
) -> None:
    files = {
        "series/1.dcm": b"\x00" * 1000 + b"slice one",
        "series/2.dcm": b"slice two",
        "notes.txt": b"hi",
    }
    with mis_server(tmp_path, backend="docker", engine_url=engine.url) as server:
        response = post(server.url, study(files))
        assert response.status_code == 200, response.text
        request_id = response.headers["X-Request-ID"]
        with zipfile.ZipFile(io.BytesIO(response.content)) as result:
            for name, data in files.items():
                assert result.read(name) == data
            env = dict(line.split("=", 1) for line in result.read("_env.txt").decode().splitlines())
        assert env["MONAI_INPUTPATH"] == "/var/monai/input"
        assert env["MONAI_OUTPUTPATH"] == "/var/monai/output"
        assert env["HOLOSCAN_INPUT_PATH"] == "/var/monai/input"
        assert env["MONAI_JOBID"] == request_id
        assert env["OMP_NUM_THREADS"] == "1"
        log = server.log_text()
        assert f"{request_id} | map | test MAP done" in log  # the container's log, tagged
        server.wait_until_clean()
    assert engine.containers() == []


def test_input_is_mounted_read_only(
    tmp_path: Path, engine: Engine, mis_server: ServerFactory
) -> None:
    change_input = {"command": ["/bin/sh", "-c", "echo changed > $MONAI_INPUTPATH/a.txt"]}
    with mis_server(
        tmp_path, {"map": change_input}, backend="docker", engine_url=engine.url
    ) as server:
        response = post(server.url, study({"a.txt": b"original"}))
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "map_failed"
    assert "Read-only file system" in error["message"]


def test_non_zero_exit_is_reported_with_the_code_and_log_lines(
    tmp_path: Path, engine: Engine, mis_server: ServerFactory
) -> None:
    with mis_server(tmp_path, backend="docker", engine_url=engine.url) as server:
        response = post(server.url, study({"_mode": b"fail"}))
        server.wait_until_clean()
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "map_failed"
    assert "exited with code 3" in error["message"]
    assert "error: the model could not be loaded" in error["message"]
    assert engine.containers() == []


def test_a_command_the_image_lacks_fails_with_the_engines_reason(
    tmp_path: Path, engine: Engine, mis_server: ServerFactory
) -> None:
    missing = {"map": {"command": ["/opt/monai/app/missing-app"]}}
    with mis_server(tmp_path, missing, backend="docker", engine_url=engine.url) as server:
        response = post(server.url, study({"a": b"1"}))
        server.wait_until_clean()
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "map_failed"
    assert "could not be started" in error["message"]
    assert "missing-app" in error["message"], error["message"]
    assert engine.containers() == []


def test_memory_limit_exceeded_is_reported_as_such(
    tmp_path: Path, engine: Engine, mis_server: ServerFactory
) -> None:
    small = {"map": {"resources": {"memory": "48Mi"}}}
    with mis_server(tmp_path, small, backend="docker", engine_url=engine.url) as server:
        response = post(server.url, study({"_mode": b"oom"}))
    assert response.status_code == 500
    message = response.json()["error"]["message"]
    assert "memory" in message
    assert "48Mi" in message
    assert engine.containers() == []


def test_timeout_stops_and_removes_the_container(
    tmp_path: Path, engine: Engine, mis_server: ServerFactory
) -> None:
    short = {"map": {"timeout_seconds": 2}}
    with mis_server(tmp_path, short, backend="docker", engine_url=engine.url) as server:
        response = post(server.url, study({"_mode": b"hang"}))  # it would sleep an hour
        assert response.status_code == 500
        assert response.json()["error"]["code"] == "timeout"
        assert engine.containers() == []
        server.wait_until_clean()
        status = httpx.get(f"{server.url}/v1/status").json()
        assert (status["state"], status["in_flight"]) == ("idle", 0)  # the slot is free


def test_client_disconnect_while_the_map_runs_removes_the_container(
    tmp_path: Path, engine: Engine, mis_server: ServerFactory
) -> None:
    longer = {"map": {"timeout_seconds": 30}}
    with mis_server(tmp_path, longer, backend="docker", engine_url=engine.url) as server:
        with pytest.raises(httpx.ReadTimeout):
            post(server.url, study({"_mode": b"hang"}), timeout=2)
        wait_until(lambda: engine.containers() == [], 10, "the container to be removed")
        wait_until(lambda: server.leftovers() == [], 5, "the workspace to be deleted")


def test_missing_image_fails_fast_with_a_clear_message(
    tmp_path: Path, engine: Engine, mis_server: ServerFactory
) -> None:
    missing = {"map": {"image": MISSING_IMAGE}}
    with mis_server(tmp_path, missing, backend="docker", engine_url=engine.url) as server:
        wait_until(
            lambda: "could not be pulled" in httpx.get(f"{server.url}/readyz").text,
            20,
            "readiness to report the failed pull",
        )
        response = post(server.url, study({"a": b"1"}))
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "map_failed"  # at once, with the reason: not the 20 s timeout
    assert MISSING_IMAGE in error["message"]
    assert "could not be pulled" in error["message"]
    assert engine.containers() == []


def test_unreachable_engine_is_503_not_a_map_failure(
    tmp_path: Path, engine: Engine, mis_server: ServerFactory
) -> None:
    nowhere = f"unix://{tmp_path / 'no-engine.sock'}"
    with mis_server(tmp_path, backend="docker", engine_url=nowhere) as server:
        ready = httpx.get(f"{server.url}/readyz")
        response = post(server.url, study({"a": b"1"}))
        server.wait_until_clean()
    assert ready.status_code == 503
    assert "cannot be reached" in ready.json()["error"]["message"]
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "backend_unavailable"


def test_start_up_sweeps_this_installations_leftover_containers(
    tmp_path: Path, engine: Engine, mis_server: ServerFactory
) -> None:
    def leftover(instance: str) -> str:
        body = {
            "Image": MAP_IMAGE,
            "Cmd": ["sleep", "3600"],
            "Labels": {
                "app.kubernetes.io/managed-by": "monai-inference-service",
                "app.kubernetes.io/instance": instance,
            },
            "HostConfig": {"NetworkMode": "none"},
        }
        with engine.client() as client:
            created = client.post("/containers/create", json=body)
            assert created.status_code == 201, created.text
            container = created.json()["Id"]
            assert client.post(f"/containers/{container}/start").status_code == 204
        return str(container)

    ours, theirs = leftover("mis-test"), leftover("another-mis")
    try:
        with mis_server(tmp_path, backend="docker", engine_url=engine.url):
            remaining = {c["Id"] for c in engine.containers()}
        assert ours not in remaining
        assert theirs in remaining
    finally:
        with engine.client() as client:
            client.delete(f"/containers/{theirs}", params={"force": 1})


def test_map_inspect_prints_what_the_manifest_declares(engine: Engine) -> None:
    import yaml

    result = mis_command("map", "inspect", MAP_IMAGE, "--url", engine.url)
    assert result.returncode == 0, result.stderr
    declared = yaml.safe_load(result.stdout)["map"]
    assert declared == {
        "image": MAP_IMAGE,
        "command": ["/bin/sh", "/opt/monai/app/run.sh"],
        "input_path": "/var/monai/input",
        "output_path": "/var/monai/output",
        "resources": {"cpu": "1", "memory": "256Mi"},
    }
    assert "declared in /etc/monai" in result.stdout
    assert engine.containers() == []  # the container used to read the files is gone

    missing = mis_command("map", "inspect", MISSING_IMAGE, "--url", engine.url)
    assert missing.returncode == 1
    assert f"the image {MISSING_IMAGE} is not in the container engine" in missing.stderr


def test_from_manifest_fills_what_the_configuration_leaves_unset(
    tmp_path: Path, engine: Engine, mis_server: ServerFactory
) -> None:
    config = docker_config(tmp_path, engine.url)
    config["map"] = {  # only these: the manifest fills in the rest
        "image": MAP_IMAGE,
        "from_manifest": True,
        "resources": {"memory": "128Mi"},  # set here: the manifest's 256Mi does not apply
    }
    with mis_server(tmp_path, config=config) as server:
        described = httpx.get(f"{server.url}/v1/status").json()["map"]
        response = post(server.url, study({"a.txt": b"from the manifest's command"}))
    assert described["command"] == ["/bin/sh", "/opt/monai/app/run.sh"]
    assert described["input_path"] == "/var/monai/input"
    assert described["resources"] == {"cpu": "1", "memory": "128Mi", "gpu": 0}
    assert response.status_code == 200, response.text
    with zipfile.ZipFile(io.BytesIO(response.content)) as result:
        assert result.read("a.txt") == b"from the manifest's command"


NET_AND_PIDS = """
cat /proc/net/dev > "$MONAI_OUTPUTPATH/net.txt"
(i=0; while [ $i -lt 40 ]; do sleep 60 & i=$((i+1)); done) 2>/dev/null
n=0
for p in /proc/[0-9]*; do n=$((n+1)); done
echo $n > "$MONAI_OUTPUTPATH/pids.txt"
"""  # the loop in a subshell, which a failed fork ends; then builtins only: nothing can fork


def test_the_map_has_no_network_and_a_process_limit(
    tmp_path: Path, engine: Engine, mis_server: ServerFactory
) -> None:
    overrides = {
        "map": {"command": ["/bin/sh", "-c", NET_AND_PIDS]},
        "docker": {"pids_limit": 16},
    }
    with mis_server(tmp_path, overrides, backend="docker", engine_url=engine.url) as server:
        response = post(server.url, study({"a": b"1"}))
    assert response.status_code == 200, response.text
    with zipfile.ZipFile(io.BytesIO(response.content)) as result:
        devices = result.read("net.txt").decode().splitlines()[2:]  # two header lines
        processes = int(result.read("pids.txt"))
    assert [line.split(":")[0].strip() for line in devices] == ["lo"]  # no way out
    assert 1 < processes <= 16  # 40 were asked for
    assert engine.containers() == []
