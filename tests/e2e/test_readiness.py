"""Readiness and errors agree: what makes `/readyz` 503 makes requests fail the same way, and
`/readyz` says why (a missing MAP program; a payload folder missing, not writable or full)."""

from __future__ import annotations

from pathlib import Path

import httpx

from mis_adapters.storage.layout import PAYLOAD_ROOT_MARKER
from tests.harness.command import mis_command
from tests.harness.configs import process_config
from tests.harness.servers import Server, ServerFactory, merge
from tests.harness.wait import wait_until
from tests.nonroot import NonRoot
from tests.zips import make_zip


def readiness(server: Server) -> tuple[int, str]:
    response = httpx.get(f"{server.url}/readyz")
    if response.status_code == 200:
        return 200, ""
    error = response.json()["error"]
    assert error["code"] == "backend_unavailable"
    return response.status_code, error["message"]


MISSING_PROGRAM = {"map": {"command": ["/nonexistent/segment-spleen", "{input_path}"]}}


def test_a_missing_map_program_is_503_for_readiness_and_requests(
    tmp_path: Path, mis_server: ServerFactory
) -> None:
    archive = make_zip(tmp_path / "in.zip", {"a.txt": b"x"})
    with mis_server(tmp_path, MISSING_PROGRAM) as server:
        assert readiness(server)[0] == 503
        response = httpx.post(
            f"{server.url}/v1/inference", files={"file": archive.read_bytes()}, timeout=30
        )
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "backend_unavailable"
        assert "map.command" in error["message"]
        client = mis_command("infer", archive, "--url", server.url, "-o", tmp_path / "out.zip")
        assert client.returncode == 7, client.stderr
        assert "503 backend_unavailable" in client.stderr
        wait_until(lambda: server.leftovers() == [], 5, "an empty payload folder")


def test_config_check_warns_about_a_missing_map_program(tmp_path: Path) -> None:
    import yaml

    config_file = tmp_path / "mis.yaml"
    config_file.write_text(yaml.safe_dump(merge(process_config(tmp_path), MISSING_PROGRAM)))
    result = mis_command("config", "check", "--config", config_file)
    assert result.returncode == 0  # valid, but it will not serve
    assert "warning: map.command: /nonexistent/segment-spleen was not found" in result.stderr


def test_a_payload_folder_that_goes_away_makes_readiness_503_until_it_is_back(
    tmp_path: Path,
    mis_server: ServerFactory,
) -> None:
    with mis_server(tmp_path) as server:
        assert readiness(server) == (200, "")
        marker = server.payload_dir / PAYLOAD_ROOT_MARKER
        marker.unlink()
        server.payload_dir.rmdir()
        status, message = readiness(server)
        assert status == 503
        assert "does not exist" in message
        assert str(server.payload_dir) in message
        server.payload_dir.mkdir()
        assert readiness(server) == (200, "")
        assert marker.is_file()  # marked again, for the sandbox


def test_a_payload_folder_mis_cannot_write_makes_readiness_503(
    nonroot: NonRoot, mis_server: ServerFactory
) -> None:
    work = nonroot.workdir()
    with mis_server(work, nonroot=nonroot) as server:
        assert readiness(server) == (200, "")
        server.payload_dir.chmod(0o555)
        status, message = readiness(server)
        assert status == 503
        assert f"not writable by MIS (user id {nonroot.uid})" in message
        server.payload_dir.chmod(0o755)
        assert readiness(server) == (200, "")


def test_a_full_payload_folder_makes_readiness_503(
    tmp_path: Path, tiny_volume: Path, mis_server: ServerFactory
) -> None:
    with mis_server(tmp_path, {"server": {"payload_dir": str(tiny_volume)}}) as server:
        assert readiness(server) == (200, "")
        with open(tiny_volume / ".filler", "wb") as sink:
            sink.write(bytes(int(3.5 * 1024 * 1024)))
        try:
            status, message = readiness(server)
            assert status == 503
            assert "is full" in message
        finally:
            (tiny_volume / ".filler").unlink()
        wait_until(lambda: readiness(server) == (200, ""), 5, "readiness once space is freed")
