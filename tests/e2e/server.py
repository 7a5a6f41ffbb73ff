"""A real MIS server (uvicorn in a subprocess) on 127.0.0.1, for end-to-end tests."""

from __future__ import annotations

import os
import resource
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from mis_adapters.storage.layout import PAYLOAD_ROOT_MARKER
from tests.harness.process import free_port, launched, port_of
from tests.harness.wait import wait_until
from tests.nonroot import NonRoot, maps_dir

__all__ = [
    "REPO",
    "SCRIPTED_MAP",
    "Server",
    "free_port",
    "running_server",
    "scripted_map_config",
    "wait_until",
]

REPO = Path(__file__).parents[2]
SCRIPTED_MAP = str(REPO / "tests" / "maps" / "scripted_map.py")


class Server:
    def __init__(self, url: str, payload_dir: Path, log: Path, process: subprocess.Popen[bytes]):
        self.url = url
        self.payload_dir = payload_dir
        self.log = log
        self.process = process

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def leftovers(self) -> list[str]:
        """What the payload folder holds besides its marker."""
        if not self.payload_dir.exists():
            return []
        return sorted(p.name for p in self.payload_dir.iterdir() if p.name != PAYLOAD_ROOT_MARKER)

    def wait_until_clean(self, timeout: float = 5.0) -> None:
        """Wait for the payload folder to be empty: workspaces go just after their response."""
        wait_until(lambda: self.leftovers() == [], timeout, "the workspaces to be deleted")


def raw_request(server: Server, data: bytes) -> socket.socket:
    """A connection to `server` that has sent `data` (a request, whole or cut short) as is."""
    sock = socket.create_connection(("127.0.0.1", port_of(server.url)))
    sock.sendall(data)
    return sock


def zip_post(body: bytes, content_length: int | None = None) -> bytes:
    """A raw POST /v1/inference of `body`, announcing `content_length` (default: its length)."""
    length = len(body) if content_length is None else content_length
    return (
        b"POST /v1/inference HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/zip\r\n"
        + f"Content-Length: {length}\r\n\r\n".encode()
        + body
    )


def scripted_map_config(
    tmp_path: Path, nonroot: NonRoot | None = None, **server: Any
) -> dict[str, Any]:
    """The scripted test MAP (tests/maps/scripted_map.py); run by `nonroot`'s Python if given.

    Without the process sandbox: this MAP tells the test about itself through files in
    `tmp_path` and host pids, which the sandbox hides (tests/containment tests the sandbox).
    """
    python, script = sys.executable, SCRIPTED_MAP
    if nonroot is not None:
        python, script = nonroot.python, str(maps_dir(nonroot) / "scripted_map.py")
    return {
        "server": {"payload_dir": str(tmp_path / "payload"), **server},
        "map": {
            "command": [python, script, "{input_path}", "{output_path}"],
            "timeout_seconds": 3,
            "env": {
                "MIS_TEST_PIDFILE": str(tmp_path / "pids"),
                "MIS_TEST_STARTED": str(tmp_path / "started"),
                "MIS_TEST_RELEASE": str(tmp_path / "release"),
            },
        },
        "process": {"kill_grace_seconds": 1, "sandbox": "none"},
    }


@contextmanager
def running_server(
    config: dict[str, Any],
    tmp_path: Path,
    env: dict[str, str] | None = None,
    verify: ssl.SSLContext | bool = True,
    nonroot: NonRoot | None = None,
    nofile: tuple[int, int] | None = None,
) -> Iterator[Server]:
    """MIS on 127.0.0.1 with `config`, until the block ends (HTTPS when config has TLS).

    With `nonroot`, MIS runs as that unprivileged user; `tmp_path` must then be one of its
    work folders (`NonRoot.workdir()`). `nofile`: MIS's descriptor limit (soft, hard).
    """
    config_file = tmp_path / "mis.yaml"
    config_file.write_text(yaml.safe_dump(config))
    argv = [sys.executable, "-m", "mis_app"]
    if nonroot is not None:
        config_file.chmod(0o644)
        argv = nonroot.command(nonroot.python, "-m", "mis_app")
    port = free_port()
    log = tmp_path / "server.log"
    server_env = {k: v for k, v in os.environ.items() if not k.startswith("MIS_")}
    server_env.update(env or {})
    scheme = "https" if config["server"].get("tls") else "http"
    url = f"{scheme}://127.0.0.1:{port}"
    with launched(
        [*argv, "serve", "--config", str(config_file), "--port", str(port)],
        url,
        log=log,
        env=server_env,
        cwd=REPO if nonroot is None else nonroot.root,
        verify=verify,
        preexec_fn=None if nofile is None else lambda: _limit_descriptors(nofile),
    ) as process:
        yield Server(url, Path(config["server"]["payload_dir"]), log, process)


def _limit_descriptors(limits: tuple[int, int]) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, limits)


def peak_rss(server: Server) -> int:
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def unlabelled_metrics(server: Server) -> dict[str, float]:
    """The server's metrics without labels, by sample name, as /metrics says them now."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


def mis_command(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`mis ARGV...` run to its end from the repository, with `env` (default: this one)."""
    return subprocess.run(
        [sys.executable, "-m", "mis_app", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
        check=False,
    )


def post_zip_into(
    server: Server, content: bytes | IO[bytes], out: Path, timeout: float = 300
) -> httpx.Response:
    """POST `content` as a raw zip to /v1/inference, the answer's body streamed into `out`."""
    with (
        httpx.stream(
            "POST",
            f"{server.url}/v1/inference",
            content=content,
            headers={"Content-Type": "application/zip"},
            timeout=timeout,
        ) as response,
        open(out, "wb") as sink,
    ):
        for chunk in response.iter_bytes():
            sink.write(chunk)
    return response
