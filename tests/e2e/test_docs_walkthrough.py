"""The "Your own MAP" page (docs/your-own-map.md), run as written: its program and its
configuration, served by a real MIS started where the page says, answer a first 200."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx

from tests.harness.command import mis_argv
from tests.harness.process import free_port
from tests.harness.repo import REPO
from tests.harness.wait import wait_until

PAGE = REPO / "docs" / "your-own-map.md"


def page_files() -> dict[str, str]:
    """The page's code blocks that name a file (```python title="my-map/app.py"```)."""
    blocks = re.findall(r'^```\w+ title="([^"]+)"\n(.*?)^```$', PAGE.read_text(), re.M | re.S)
    return dict(blocks)


def healthy(url: str, process: subprocess.Popen[bytes]) -> bool:
    assert process.poll() is None, "the server exited"
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_the_walkthrough_s_map_answers_a_first_200(tmp_path: Path) -> None:
    files = page_files()
    for name in ("my-map/app.py", "my-map/mis.yaml"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(files[name])
    port = free_port()  # the page's 8000, moved as `--port` moves it
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MIS_")}
    # `python3` is the environment's, as in a shell where it is active (the page's advice)
    environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), environ["PATH"]])
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            mis_argv("serve", "--config", "my-map/mis.yaml", "--port", str(port)),
            cwd=tmp_path,  # the folder that holds my-map/, as the page says
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environ,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: healthy(url, server), 20, "the walkthrough's server")
        study = io.BytesIO()
        with zipfile.ZipFile(study, "w") as zf:
            zf.writestr("note.txt", "hello\n")
        response = httpx.post(
            f"{url}/v1/inference", files={"file": ("study.zip", study.getvalue())}, timeout=60
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    text = log.read_text(errors="replace")
    assert response.status_code == 200, response.text + text
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        report = json.loads(zf.read("report.json"))
    assert report["files"] == ["note.txt"]
    assert re.fullmatch(r"[0-9a-f]{32}", report["job"])  # MONAI_JOBID, as the page says
    assert "read 1 files" in text  # the MAP's line, in MIS's log
    assert (tmp_path / ".mis" / "payload").is_dir()  # payload_dir relative to where MIS started
