"""MIS on the Kubernetes backend against the API double: a study to send."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.harness.servers import Server
from tests.zips import make_zip

INPUT = {"ct/slice-1.dcm": b"\x01" * 5000, "ct/slice-2.dcm": b"\x02" * 5000}


def post(server: Server, files: dict[str, bytes], tmp_path: Path, mode: str = "") -> httpx.Response:
    content = dict(files)
    if mode:
        content["_mode"] = mode.encode()
    archive = make_zip(tmp_path / "in.zip", content)
    return httpx.post(
        f"{server.url}/v1/inference", files={"file": archive.read_bytes()}, timeout=60
    )
