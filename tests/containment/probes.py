"""The attacker's MAP (tests/maps/probe_map.py) behind MIS run as the unprivileged user."""

from __future__ import annotations

import io
import json
import os
import secrets
import zipfile
from pathlib import Path
from typing import Any

import httpx

from mis_adapters.process.sandbox import probe
from tests.harness.servers import Server
from tests.harness.unavailable import require_tool, unavailable
from tests.nonroot import NonRoot, maps_dir

PIDS_LIMIT = 64  # tasks a MAP may add to those of MIS's user
TOKEN = "probe-token-" + secrets.token_hex(8)
SECRETS = {  # in MIS's environment; none may reach a MAP
    "MIS_TEST_SECRET": "mis-secret-" + secrets.token_hex(8),
    "AWS_SECRET_ACCESS_KEY": "aws-secret-" + secrets.token_hex(8),
}


def require_bubblewrap() -> None:
    """Skip where bubblewrap cannot build a sandbox (fail in CI: MIS_REQUIRE_ALL=1)."""
    require_tool("bwrap")
    problem = probe()
    if problem is not None:
        unavailable(f"bubblewrap does not work here: {problem}")


def probe_config(
    work: Path, nonroot: NonRoot, sandbox: str, marker: str, **server: Any
) -> dict[str, Any]:
    """MIS serving probe_map.py, with a tokens file (a file of MIS's the MAP must not see)."""
    tokens = work / "tokens"
    tokens.write_text(TOKEN + "\n")
    os.chown(tokens, nonroot.uid, nonroot.uid) if os.geteuid() == 0 else None
    tokens.chmod(0o600)
    return {
        "server": {
            "payload_dir": str(work / "payload"),
            "auth": {"tokens_file": str(tokens)},
            **server,
        },
        "map": {
            "command": [nonroot.python, str(maps_dir(nonroot) / "probe_map.py")],
            "timeout_seconds": 5,
            "env": {"MIS_TEST_MARKER": marker},
            "resources": {"memory": "256Mi"},
        },
        "process": {"sandbox": sandbox, "kill_grace_seconds": 1, "pids_limit": PIDS_LIMIT},
    }


def mis_environment(work: Path) -> dict[str, str]:
    """MIS's environment for these tests: secrets and a kubeconfig a MAP must not get."""
    kubeconfig = work / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n# kube-secret\n")
    kubeconfig.chmod(0o644)
    return {**SECRETS, "KUBECONFIG": str(kubeconfig)}


def orders_zip(orders: dict[str, Any], extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("_probe.json", json.dumps(orders))
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


def send(
    server: Server, orders: dict[str, Any], request_id: str | None = None, **extra: bytes
) -> httpx.Response:
    headers = {"Content-Type": "application/zip", "Authorization": f"Bearer {TOKEN}"}
    if request_id:
        headers["X-Request-Id"] = request_id
    return httpx.post(
        f"{server.url}/v1/inference",
        content=orders_zip(orders, extra),
        headers=headers,
        timeout=30,
    )


def result(response: httpx.Response, name: str) -> Any:
    assert response.status_code == 200, response.text
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        return json.loads(archive.read(name))


def marked(marker: str) -> list[int]:
    """Live processes (not zombies) carrying MIS_TEST_MARKER=`marker` in their environment."""
    needle = f"MIS_TEST_MARKER={marker}".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if needle not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, ValueError):
            continue
        if state != "Z":
            found.append(int(proc.name))
    return found


def idle(server: Server) -> bool:
    status = httpx.get(
        f"{server.url}/v1/status", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
    )
    return bool(status.json()["state"] == "idle")
