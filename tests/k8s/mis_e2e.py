"""MIS on the Kubernetes backend against the API double: its configuration and a study to send."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.server import SCRIPTED_MAP, Server
from tests.zips import make_zip

INPUT = {"ct/slice-1.dcm": b"\x01" * 5000, "ct/slice-2.dcm": b"\x02" * 5000}


def kubernetes_config(tmp_path: Path, timeout: float = 5) -> dict[str, Any]:
    payload = tmp_path / "payload"
    return {
        "backend": "kubernetes",
        "server": {"payload_dir": str(payload)},
        "map": {
            "image": "example/scripted-map:1",
            "command": [sys.executable, SCRIPTED_MAP, "-i", "{input_path}", "-o", "{output_path}"],
            "timeout_seconds": timeout,
            "resources": {"cpu": "1", "memory": "1Gi", "gpu": 1},
            "env": {"MIS_TEST_PIDFILE": str(tmp_path / "pids")},
        },
        "kubernetes": {"payload_volume": {"host_path": str(payload)}, "delete_wait_seconds": 5},
    }


def post(server: Server, files: dict[str, bytes], tmp_path: Path, mode: str = "") -> httpx.Response:
    content = dict(files)
    if mode:
        content["_mode"] = mode.encode()
    archive = make_zip(tmp_path / "in.zip", content)
    return httpx.post(
        f"{server.url}/v1/inference", files={"file": archive.read_bytes()}, timeout=60
    )
