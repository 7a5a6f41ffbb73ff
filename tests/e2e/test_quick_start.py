"""The quick start as a newcomer types it, on another port: `nox -s serve -- --port N` serves
there, the line nox prints to try it names that port, and the client runs from where the docs
say it is."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from tests.harness.process import free_port
from tests.harness.repo import REPO
from tests.harness.unavailable import require_tool
from tests.harness.wait import wait_until

pytestmark = pytest.mark.slow


def test_nox_serve_on_another_port_says_so_and_serves_there(tmp_path: Path) -> None:
    nox = require_tool("nox")
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MIS_", "NOX_"))}
    environ.pop("VIRTUAL_ENV", None)  # nox's own session is not the quick start's
    lines: list[str] = []
    process = subprocess.Popen(
        [nox, "-s", "serve", "--", "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environ,
        start_new_session=True,  # its own group: nox, mis serve and the MAPs stop together
    )
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or ()), daemon=True)
    reader.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: any("try it:" in line for line in lines), 600, "the hint line")
        wait_until(lambda: _healthy(url, process), 60, "MIS on the chosen port")
        [hint] = [line for line in lines if "try it:" in line]
        assert f"open {url}/ " in hint
        assert f"{url}/v1/inference" in hint
        assert "curl --fail" in hint
        assert not re.search(r":8000\b", hint)
        sample = REPO / ".mis" / "sample-input.zip"
        response = httpx.post(
            f"{url}/v1/inference", files={"file": ("s.zip", sample.read_bytes())}, timeout=60
        )
        assert response.status_code == 200, response.text
        # `mis` is not on the PATH after `nox -s serve`: the docs say where it is; it works there
        mis = REPO / ".nox" / "serve" / "bin" / "mis"
        for page in (REPO / "README.md", REPO / "docs" / "getting-started.md"):
            assert ".nox/serve/bin/mis infer" in page.read_text(), page
        client = subprocess.run(
            [str(mis), "infer", str(sample), "--url", url, "--extract", str(tmp_path / "result")],
            capture_output=True,
            text=True,
            timeout=120,
            env=environ,
        )
        assert client.returncode == 0, client.stderr
        assert (tmp_path / "result" / "summary.json").is_file()
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        reader.join(5)


def _healthy(url: str, process: subprocess.Popen[str]) -> bool:
    assert process.poll() is None, "nox -s serve exited"
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
