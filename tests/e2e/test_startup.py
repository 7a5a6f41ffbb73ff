"""Start-up behaviour of the real server: sweeping, readiness, JSON logs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import yaml

from mis_adapters.storage.volume import MARKER
from mis_app.serve import STARTUP_FAILED
from tests.harness.command import mis_command
from tests.harness.servers import ServerFactory
from tests.storage import leave_workspace


def test_leftover_workspaces_are_swept_at_start(tmp_path: Path, mis_server: ServerFactory) -> None:
    payload = tmp_path / "payload"
    leftover = leave_workspace(payload, "crashed-request")
    (leftover / "input" / "scan.dcm").write_bytes(b"patient data")
    older = payload / "from-an-older-mis"  # an empty marker, untouched for minutes
    (older / "input").mkdir(parents=True)
    (older / MARKER).touch()
    os.utime(older / MARKER, (time.time() - 600, time.time() - 600))
    with mis_server(tmp_path) as server:
        assert server.leftovers() == []
        assert "swept 2 leftover workspace(s)" in server.log_text()


def test_readiness_fails_when_the_map_program_is_missing(
    tmp_path: Path, mis_server: ServerFactory
) -> None:
    missing = {"map": {"command": ["no-such-map-program", "{input_path}"]}}
    with mis_server(tmp_path, missing) as server:
        response = httpx.get(f"{server.url}/readyz")
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "backend_unavailable"
        assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_json_log_format_writes_one_object_per_line_with_the_request_id(
    tmp_path: Path, mis_server: ServerFactory
) -> None:
    with mis_server(tmp_path, {"server": {"log_format": "json"}}) as server:
        response = httpx.post(
            f"{server.url}/v1/inference",
            files={"file": ("in.zip", b"PK\x05\x06" + bytes(18))},
            headers={"X-Request-ID": "json-log-test"},
            timeout=30,
        )
        assert response.status_code == 200
    records = [json.loads(line) for line in server.log_text().splitlines() if line.startswith("{")]
    assert records, "no JSON log lines"
    mine = [r for r in records if r.get("request_id") == "json-log-test"]
    messages = [r["message"] for r in mine]
    assert "admitted" in messages
    assert "cleaned" in messages
    assert any(r.get("source") == "map" and "scripted MAP done" in r["message"] for r in mine)
    non_json = [
        line for line in server.log_text().splitlines() if line and not line.startswith("{")
    ]
    assert non_json == [], f"lines that are not JSON: {non_json[:3]}"


def test_tls_files_that_cannot_serve_https_stop_the_start(tmp_path: Path) -> None:
    """Files that are there (the settings check that) but hold no certificate and key."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("not a certificate\n")
    key.write_text("not a key\n")
    config = tmp_path / "mis.yaml"
    server = {"payload_dir": str(tmp_path / "payload"), "port": 1}  # MIS stops before it listens
    server["tls"] = {"cert_file": str(cert), "key_file": str(key)}
    map_ = {"command": ["true"]}
    config.write_text(
        yaml.safe_dump({"server": server, "map": map_, "process": {"sandbox": "none"}})
    )
    result = mis_command("serve", "--config", str(config))
    assert result.returncode == STARTUP_FAILED, result.stderr
    assert "cannot serve HTTPS with server.tls's files" in result.stderr
