"""From inside a running MAP, with MIS as the unprivileged user behind its real HTTP server.

The MAP (tests/maps/probe_map.py) tries what an attacker's would: reach the network and MIS,
read MIS's environment, files and descriptors and other requests' workspaces, leave processes
and files behind, take all the memory.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import secrets
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import attrs
import httpx
import pytest

import mis_adapters.process
from tests.containment.probes import (
    PIDS_LIMIT,
    SECRETS,
    TOKEN,
    idle,
    marked,
    mis_environment,
    orders_zip,
    probe_config,
    require_bubblewrap,
    result,
    send,
)
from tests.harness.servers import Server, mis_server
from tests.harness.wait import wait_until
from tests.nonroot import NonRoot

pytestmark = pytest.mark.slow  # see pyproject.toml: more than a few seconds

EROFS, ENOENT, ESRCH = ["error", errno.EROFS], ["error", errno.ENOENT], ["error", errno.ESRCH]


@attrs.frozen
class Served:
    server: Server
    work: Path
    marker: str
    sandbox: str

    @property
    def port(self) -> int:
        return int(self.server.url.rsplit(":", 1)[1])

    def workspace_of(self, cwd: str) -> Path:
        """The workspace of a MAP that ran in `cwd`, checked to be one in the payload folder
        (MIS names workspaces by its own job ids, not by the request id)."""
        workspace = Path(cwd).parent
        assert workspace.parent == self.server.payload_dir
        assert cwd == str(workspace / "work")
        return workspace


def serve(nonroot: NonRoot, sandbox: str, **server: object) -> Iterator[Served]:
    if sandbox == "bubblewrap":
        require_bubblewrap()
    work = nonroot.workdir(sandbox)
    marker = secrets.token_hex(8)
    config = probe_config(work, nonroot, sandbox, marker, **server)
    with mis_server(work, config=config, env=mis_environment(work), nonroot=nonroot) as running:
        yield Served(running, work, marker, sandbox)


@pytest.fixture(scope="module")
def sandboxed(nonroot: NonRoot) -> Iterator[Served]:
    yield from serve(nonroot, "bubblewrap", max_concurrent=2)


@pytest.fixture(scope="module", params=["bubblewrap", "none"])
def served(nonroot: NonRoot, request: pytest.FixtureRequest) -> Iterator[Served]:
    yield from serve(nonroot, request.param)


@pytest.fixture(autouse=True)
def nothing_left(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    for name in ("sandboxed", "served"):
        if name in request.fixturenames:
            probed: Served = request.getfixturevalue(name)
            wait_until(lambda p=probed: marked(p.marker) == [], 2, "no MAP process left")
            wait_until(lambda p=probed: p.server.leftovers() == [], 2, "no workspace left")


def escaped_sleeper(marker: str) -> bool:
    """Whether the grandchild probe_map.py leaves (`sleep`, only the marker in its
    environment) is running."""
    for pid in marked(marker):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "sleep":
                return True
        except OSError:
            continue
    return False


def test_inside_the_sandbox_the_map_reaches_nothing_of_mis(sandboxed: Served) -> None:
    server, work = sandboxed.server, sandboxed.work
    mis = server.process.pid
    orders = {
        "mode": "probe",
        "connect": ["127.0.0.1", sandboxed.port],
        "mis_pid": mis,
        "read": [str(work / "mis.yaml"), str(work / "tokens"), str(work / "kubeconfig")],
        "list": [str(server.payload_dir)],
        "write": [str(work), "/", "/dev", "/tmp", "/dev/shm", "."],
    }
    found = result(send(server, orders), "probe.json")
    workspace = sandboxed.workspace_of(found["cwd"])

    assert found["interfaces"] == ["lo"]
    assert found["connect"][0] == "error"  # MIS's own port is in another network
    assert not found["mis_visible"]
    assert found["kill"][:2] == ESRCH
    assert max(found["pids"]) < 10  # its own few processes, nothing of the host's

    environ = found["environ"]
    leaked = {k for k in environ if k.startswith(("MIS_", "AWS_", "KUBE"))} - {"MIS_TEST_MARKER"}
    assert leaked == set()
    assert not any(secret in value for secret in SECRETS.values() for value in environ.values())
    assert not any(TOKEN in value for value in environ.values())
    assert environ["HOME"] == found["cwd"]
    assert environ["TMPDIR"] == str(workspace / "tmp")

    open_fds = {fd for fd, link in found["fds"].items() if link[0] == "ok"}
    assert open_fds == {"0", "1", "2"}, found["fds"]

    for path in orders["read"]:  # MIS's configuration, tokens and kubeconfig: not there
        assert found["read"][path][:2] == ENOENT, path
    assert found["list"][str(server.payload_dir)] == ["ok", [workspace.name]]
    writes = found["write"]
    assert writes[str(work)][:2] == writes["/"][:2] == writes["/dev"][:2] == EROFS
    assert writes["/tmp"][0] == writes["/dev/shm"][0] == writes["."][0] == "ok"
    assert found["shm_bytes"] == 256 * 2**20  # no more shared memory than its memory limit


def test_the_map_cannot_read_another_running_request(sandboxed: Served) -> None:
    server = sandboxed.server
    first, second = secrets.token_hex(16), secrets.token_hex(16)
    answers: dict[str, httpx.Response] = {}

    def hang() -> None:
        answers[first] = send(server, {"mode": "hang"}, first, **{"study/secret.dcm": b"PHI"})

    thread = threading.Thread(target=hang)
    thread.start()
    try:
        wait_until(
            lambda: f"{first} | map | probe: hanging" in server.log_text(), 10, "the first MAP"
        )
        (name,) = server.leftovers()  # the first request's workspace, seen from the host
        other = server.payload_dir / name
        orders = {
            "mode": "probe",
            "read": [str(other / "input" / "study" / "secret.dcm")],
            "list": [str(other), str(server.payload_dir)],
        }
        found = result(send(server, orders, second), "probe.json")
    finally:
        thread.join(30)
    assert found["read"][orders["read"][0]][:2] == ENOENT
    assert found["list"][str(other)][:2] == ENOENT
    assert found["list"][str(server.payload_dir)] == [
        "ok",
        [sandboxed.workspace_of(found["cwd"]).name],
    ]
    assert answers[first].status_code == 500  # it hung until the timeout


def test_the_maps_workspace_grants_nothing_to_other_users(sandboxed: Served) -> None:
    found = result(send(sandboxed.server, {"mode": "probe"}), "probe.json")
    assert len(found["modes"]) == 5
    for name, mode in found["modes"].items():
        assert mode & 0o007 == 0, f"{name} is {mode:o}"
    assert found["modes"]["cwd"] == found["modes"]["tmpdir"] == 0o700


def test_an_escaped_grandchild_is_gone_within_a_second_of_the_response(served: Served) -> None:
    response = send(served.server, {"mode": "escape"})
    assert response.status_code == 200, response.text
    wait_until(lambda: not escaped_sleeper(served.marker), 1, "the grandchild to be killed")
    assert marked(served.marker) == []


def test_an_escaped_grandchild_is_gone_when_the_map_times_out(served: Served) -> None:
    answer: dict[str, httpx.Response] = {}
    thread = threading.Thread(
        target=lambda: answer.update(r=send(served.server, {"mode": "escape", "then": "hang"}))
    )
    thread.start()
    wait_until(lambda: escaped_sleeper(served.marker), 10, "the grandchild to start")
    thread.join(30)
    assert answer["r"].status_code == 500
    assert answer["r"].json()["error"]["code"] == "timeout"
    wait_until(lambda: marked(served.marker) == [], 1, "every MAP process to be killed")


def test_an_escaped_grandchild_is_gone_when_the_client_disconnects(served: Served) -> None:
    body = orders_zip({"mode": "escape", "then": "hang"})
    head = (
        "POST /v1/inference HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/zip\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", served.port)) as client:
        client.sendall(head.encode() + body)
        wait_until(lambda: escaped_sleeper(served.marker), 10, "the grandchild to start")
    wait_until(lambda: marked(served.marker) == [], 2, "every MAP process to be killed")
    wait_until(lambda: idle(served.server), 2, "the slot to be free")


@pytest.mark.parametrize("sandbox", ["bubblewrap", "none"])
def test_after_mis_is_killed_nothing_of_the_map_survives_the_next_start(
    nonroot: NonRoot, sandbox: str
) -> None:
    if sandbox == "bubblewrap":
        require_bubblewrap()
    work = nonroot.workdir(f"crash-{sandbox}")
    marker = secrets.token_hex(8)
    config = probe_config(work, nonroot, sandbox, marker)
    config["map"]["timeout_seconds"] = 60
    env = mis_environment(work)
    with mis_server(work, config=config, env=env, nonroot=nonroot) as first:

        def doomed() -> None:
            with contextlib.suppress(httpx.TransportError):  # MIS dies under it
                send(first, {"mode": "escape", "then": "hang"})

        threading.Thread(target=doomed, daemon=True).start()
        wait_until(lambda: escaped_sleeper(marker), 10, "the grandchild to start")
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(10)
        assert first.leftovers() != []
    with mis_server(work, config=config, env=env, nonroot=nonroot) as second:
        wait_until(lambda: marked(marker) == [], 2, "every MAP process to be gone")
        assert second.leftovers() == []
        assert idle(second)


def test_scratch_files_in_the_working_folder_go_with_the_request(served: Served) -> None:
    before = set(glob.glob("/tmp/scratch-*"))
    orders = {"mode": "scratch", "tmp": served.sandbox == "bubblewrap"}
    found = result(send(served.server, orders), "scratch.json")
    workspace = served.workspace_of(found["cwd"])
    assert found["home"] == found["cwd"]
    assert found["tmpdir"] == str(workspace / "tmp")
    assert ".monai_workdir/operators/state.bin" in found["files"]
    wait_until(lambda: not workspace.exists(), 2, "the workspace to be deleted")
    if served.sandbox == "bubblewrap":  # its /tmp was the request's own
        assert set(glob.glob("/tmp/scratch-*")) == before


def test_a_fork_bomb_stops_at_the_process_limit_and_leaves_nothing(served: Served) -> None:
    found = result(send(served.server, {"mode": "forks"}), "forks.json")
    assert found["problem"] == "Resource temporarily unavailable"  # EAGAIN: RLIMIT_NPROC
    assert 0 < found["made"] <= PIDS_LIMIT  # with bubblewrap, its own processes count too
    assert httpx.get(f"{served.server.url}/healthz").status_code == 200  # MIS is unharmed
    # and the sleeping children were killed with the run (the autouse check)


def test_a_map_past_its_memory_limit_fails_naming_the_limit(served: Served) -> None:
    response = send(served.server, {"mode": "hog"})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "map_failed"
    assert "ran out of memory" in error["message"]
    assert "limits each MAP process to 256Mi of data (map.resources.memory" in error["message"]
    assert httpx.get(f"{served.server.url}/healthz").status_code == 200  # MIS is unharmed
    again = send(served.server, {"mode": "probe"})
    assert again.status_code == 200


def test_a_hard_process_limit_lower_than_the_allowance_is_kept_not_fatal(
    nonroot: NonRoot,
) -> None:
    """A container runtime may set a hard RLIMIT_NPROC (the MIS image's tests met one); an
    unprivileged process cannot raise it, so the MAP runs under that limit instead."""
    work = nonroot.workdir("nproc")
    report = work / "report.json"
    supervisor = Path(mis_adapters.process.__file__).parent / "supervisor.py"
    hard = 1000  # above what the user runs now, below that plus the allowance of 4096
    script = (
        "import os, resource, sys; "
        f"resource.setrlimit(resource.RLIMIT_NPROC, ({hard}, {hard})); "
        "os.execv(sys.executable, [sys.executable, '-I', '-S', *sys.argv[1:]])"
    )
    argv = [supervisor, "--parent", os.getpid(), "--report", report, "--processes", 4096]
    command = ["/bin/sh", "-c", 'grep "Max processes" /proc/self/limits > "$0"', work / "limit"]
    result = subprocess.run(
        nonroot.command(nonroot.python, "-c", script, *map(str, argv), "--", *map(str, command)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert json.loads(report.read_text())["exit_code"] == 0, result.stderr
    assert (work / "limit").read_text().split()[2:4] == [str(hard), str(hard)]
