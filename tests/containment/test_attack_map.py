"""Attacks a hostile MAP tries beyond tests/containment's own, through the real server run as
the unprivileged user. Each test here failed on the code it was written against."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import zipfile
from pathlib import Path

import httpx

from tests.containment.probes import TOKEN, mis_environment, probe_config, require_bubblewrap
from tests.harness.servers import mis_server
from tests.harness.unavailable import require_tool
from tests.harness.wait import wait_until
from tests.nonroot import NonRoot
from tests.zips import make_zip

# Without the sandbox the MAP runs as MIS's user, so it can kill its own supervisor (its
# parent). A grandchild that left the session (setsid) and scrubbed its environment (env -i,
# so no MONAI_JOBID for the start-up backstop to find) is then no longer below any subreaper
# of MIS's, and outlives the request.
KILL_THE_SUPERVISOR = r"""
setsid env -i /bin/sleep 313 </dev/null >/dev/null 2>&1 &
echo $! > "$1"
kill -KILL $PPID
sleep 5
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_a_map_that_kills_its_supervisor_leaves_nothing_running(nonroot: NonRoot) -> None:
    work = nonroot.workdir("kill-supervisor")
    pidfile = work / "grandchild.pid"
    command = ["/bin/sh", "-c", KILL_THE_SUPERVISOR, "map", str(pidfile)]
    overrides = {"map": {"command": command, "timeout_seconds": 10}}
    pid = 0
    try:
        with mis_server(work, overrides, nonroot=nonroot) as server:
            body = make_zip(work / "in.zip", {"a.dcm": b"abc"}).read_bytes()
            response = httpx.post(
                f"{server.url}/v1/inference",
                content=body,
                headers={"Content-Type": "application/zip"},
                timeout=30,
            )
            assert response.status_code in (200, 500), response.text
            pid = int(pidfile.read_text())
            with contextlib.suppress(FileNotFoundError):  # gone: MIS reaped it before answering
                assert Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"/bin/sleep\x00313")
            wait_until(lambda: not _alive(pid), 3, "the MAP's grandchild to be killed")
    finally:
        if pid and _alive(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def test_a_sparse_terabyte_output_is_refused_not_streamed(nonroot: NonRoot) -> None:
    """A MAP's output costs it nothing to claim (a sparse file, no disk used) and MIS a day of
    CPU and bandwidth to zip and send; an output past a bound should be `500 map_failed`."""
    work = nonroot.workdir("sparse")
    sparse = ["/bin/sh", "-c", 'truncate -s 1T "$MONAI_OUTPUTPATH/big"']
    overrides = {"map": {"command": sparse, "timeout_seconds": 10}}
    with mis_server(work, overrides, nonroot=nonroot) as server:
        body = make_zip(work / "in.zip", {"a.dcm": b"abc"}).read_bytes()
        with httpx.stream(
            "POST",
            f"{server.url}/v1/inference",
            content=body,
            headers={"Content-Type": "application/zip"},
            timeout=30,
        ) as response:
            status = response.status_code
        server.wait_until_clean(10)  # a client that hangs up must stop the stream
        assert status == 500, "a 1 TiB sparse output is being streamed"


def sandboxed_output(
    work: Path, nonroot: NonRoot, script: str, env: dict[str, str] | None = None
) -> dict[str, bytes]:
    """Run the shell `script` as a MAP under bubblewrap, through the server as MIS's user, on
    a one-file study; the files of its output."""
    require_bubblewrap()
    config = probe_config(work, nonroot, "bubblewrap", "m")
    config["map"]["command"] = ["/bin/sh", "-c", script]
    with mis_server(work, config=config, nonroot=nonroot, env=env) as server:
        body = make_zip(work / "in.zip", {"a.dcm": b"abc"}).read_bytes()
        response = httpx.post(
            f"{server.url}/v1/inference",
            content=body,
            headers={"Content-Type": "application/zip", "Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
    assert response.status_code == 200, response.text
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_the_sandbox_does_not_tell_the_map_where_mis_keeps_its_files(nonroot: NonRoot) -> None:
    """bwrap is process 1 of the MAP's PID namespace, and its command line (readable in
    /proc/1/cmdline) names every file it covers: MIS's configuration, kubeconfig, tokens file
    and TLS key. Their contents stay hidden, but where they are is no business of the MAP's
    (bwrap can take its arguments from a descriptor with `--args FD` instead)."""
    work = nonroot.workdir("cmdline")
    script = 'cat /proc/[0-9]*/cmdline > "$MONAI_OUTPUTPATH/cmdlines"'
    output = sandboxed_output(work, nonroot, script, env=mis_environment(work))
    seen = output["cmdlines"].decode(errors="replace")
    assert "/bin/sh" in seen  # the MAP did read the command lines
    for name in ("mis.yaml", "kubeconfig", "tokens"):
        assert str(work / name) not in seen, f"the MAP learns where MIS's {name} is"


def test_inside_the_sandbox_the_map_cannot_make_user_namespaces(nonroot: NonRoot) -> None:
    """A nested user namespace gives the MAP every capability inside it (mounts, raw
    sockets, namespaced sysctls...): the kernel surface most namespace escapes start from.
    The MAP needs none of it; bwrap's `--disable-userns` takes it away."""
    require_tool("unshare")
    script = (
        'unshare -Urm true 2>/dev/null && touch "$MONAI_OUTPUTPATH/nested"; '
        'touch "$MONAI_OUTPUTPATH/ran"'
    )
    names = sandboxed_output(nonroot.workdir("userns"), nonroot, script)
    assert "ran" in names
    assert "nested" not in names, "the MAP made a user namespace of its own"
