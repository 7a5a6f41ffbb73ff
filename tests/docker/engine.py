"""A real container engine for tests: Podman's Docker-compatible API service on a unix socket.

Podman runs with its own storage and configuration under a temporary folder (tools/containers.conf:
runc, cgroupfs, file events, small ulimits), so the tests neither need nor touch the machine's
containers. The MAP image is built locally with `podman import` from a root filesystem holding
busybox (statically linked) and a MAP manifest; no registry is needed.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.harness.configs import MAP_IMAGE
from tests.harness.wait import wait_until
from tools.images import Podman

MISSING_IMAGE = "localhost/mis-test-missing:1"
APP_JSON = {
    "apiVersion": "1.0.0",
    "command": '["/bin/sh", "/opt/monai/app/run.sh"]',
    "environment": {"MONAI_APPLICATION": "/opt/monai/app"},
    "input": {"path": "input/", "formats": None},
    "output": {"path": "output/", "format": None},
    "timeout": 0,
    "version": "1.0",
    "workingDirectory": "/var/monai/",
}
PKG_JSON = {
    "apiVersion": "1.0.0",
    "applicationRoot": "/opt/monai/app",
    "modelRoot": "/opt/monai/models",
    "models": {},
    "resources": {"cpu": 1, "gpu": 0, "memory": "256Mi"},
    "version": "1.0",
}
# The MAP: copies its input to its output, unless a file `_mode` in the input says otherwise.
RUN_SH = """\
mode=copy
[ -f "$MONAI_INPUTPATH/_mode" ] && mode=$(cat "$MONAI_INPUTPATH/_mode")
echo "test MAP starting in mode $mode"
case $mode in
  fail) echo "error: the model could not be loaded" >&2; exit 3 ;;
  hang) exec sleep 3600 ;;
  oom) exec dd if=/dev/zero of=/dev/null bs=512M count=1 ;;
esac
cp -r "$MONAI_INPUTPATH/." "$MONAI_OUTPUTPATH/"
env | grep -E '^(MONAI|HOLOSCAN)_|_NUM_THREADS=' | sort > "$MONAI_OUTPUTPATH/_env.txt"
echo "test MAP done"
"""
BUSYBOX_APPLETS = ("sh", "cat", "cp", "dd", "echo", "env", "grep", "sleep", "sort", "true")


class Engine:
    def __init__(self, url: str, socket: Path, podman: Podman) -> None:
        self.url = url
        self.socket = socket
        self.podman = podman  # the same storage on the command line (builds, the kubelet)

    def client(self) -> httpx.Client:
        """A client of the engine's API (close it, or use it in a with block)."""
        return engine_client(self.socket)

    def containers(self) -> list[dict[str, Any]]:
        """Every container the engine has, in any state."""
        with self.client() as client:
            return list(client.get("/containers/json", params={"all": 1}).json())


def engine_client(socket: Path) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=str(socket)), base_url="http://engine")


@contextmanager
def podman_engine(podman: str, busybox: Path, folder: Path) -> Iterator[Engine]:
    """Podman's API service on `folder`/podman.sock, with the test MAP image imported."""
    podman_cli = Podman.isolated(podman, folder)
    image = folder / "map-rootfs.tar"
    image.write_bytes(_map_rootfs(busybox))
    podman_cli.run(
        "import", "--change", 'CMD ["/bin/sh", "/opt/monai/app/run.sh"]', str(image), MAP_IMAGE,
        capture=True,
    )  # fmt: skip
    socket = folder / "podman.sock"
    log = open(folder / "podman.log", "wb")  # noqa: SIM115 - closed below
    service = subprocess.Popen(
        [*podman_cli.argv, "system", "service", "--time=0", f"unix://{socket}"],
        env=dict(podman_cli.env), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _wait_for_ping(socket, service)
        yield Engine(f"unix://{socket}", socket, podman_cli)
    finally:
        service.terminate()
        try:
            service.wait(10)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
        log.close()
        podman_cli.run("system", "reset", "--force", capture=True, check=False)
        shutil.rmtree(folder / "storage", ignore_errors=True)


def _wait_for_ping(socket: Path, service: subprocess.Popen[bytes]) -> None:
    def answers() -> bool:
        if service.poll() is not None:
            raise AssertionError(f"podman system service exited with {service.returncode}")
        try:
            with engine_client(socket) as client:
                return client.get("/_ping").text == "OK"
        except httpx.TransportError:
            return False

    wait_until(answers, 20, "podman system service to answer /_ping")


def _map_rootfs(busybox: Path) -> bytes:
    """A root filesystem as a tar: busybox, a MAP manifest in /etc/monai, and run.sh."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for folder in ("bin", "etc", "etc/monai", "opt", "opt/monai", "opt/monai/app", "tmp"):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if folder == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, "bin/busybox")
        for applet in BUSYBOX_APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        files = {
            "etc/monai/app.json": json.dumps(APP_JSON),
            "etc/monai/pkg.json": json.dumps(PKG_JSON),
            "opt/monai/app/run.sh": RUN_SH,
        }
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
