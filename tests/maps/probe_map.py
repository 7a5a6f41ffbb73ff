"""A MAP that tries what an attacker's MAP would, steered by `_probe.json` in its input.

`{"mode": ...}` picks what it does:

- `probe`: looks around and writes what it found to `output/probe.json`: its network
  interfaces and whether it can connect to `connect` (host, port); whether it can see or signal
  `mis_pid`; its environment; its open file descriptors; whether it can read each path in
  `read`, list each folder in `list`, write a file in each folder in `write`; the permission
  bits of its input folder and files, output folder, working folder and TMPDIR; its working
  folder, HOME and TMPDIR.
- `hang`: prints "probe: hanging" and sleeps.
- `escape`: leaves a grandchild behind that has called `setsid`, runs `sleep` with only
  `MIS_TEST_MARKER` in its environment (so only the test can find it), then exits, or hangs
  when `"then": "hang"`.
- `scratch`: writes scratch files where apps do (`.monai_workdir/` in its working folder,
  HOME, TMPDIR, and /tmp when `"tmp": true`) and lists its working folder into the output.
- `hog`: allocates and touches memory 64 MiB at a time until that fails.
- `forks`: a fork bomb, bounded (500) so that a broken limit cannot take the machine down:
  forks children that sleep until one fork fails, writes how many it made to
  `output/forks.json` and exits, leaving them running.
"""

import json
import os
import signal
import socket
import stat
import sys
import time
from pathlib import Path

source = Path(os.environ["MONAI_INPUTPATH"])
target = Path(os.environ["MONAI_OUTPUTPATH"])
orders = json.loads((source / "_probe.json").read_text())
mode = orders["mode"]


def attempt(action):
    """'ok' and what `action` returned, or the error it raised."""
    try:
        return ["ok", action()]
    except OSError as exc:
        return ["error", exc.errno, exc.strerror]


def write_in(folder):
    path = Path(folder) / f"probe-{os.getpid()}"
    path.write_text("x")
    path.unlink()
    return str(path)


def connect(host, port):
    with socket.create_connection((host, port), timeout=2):
        return "connected"


def probe():
    found = {
        "interfaces": [name for _, name in socket.if_nameindex()],
        "environ": dict(os.environ),
        "fds": {
            fd: attempt(lambda fd=fd: os.readlink(f"/proc/self/fd/{fd}"))
            for fd in os.listdir("/proc/self/fd")
        },
        "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "cwd": os.getcwd(),
        "uid": os.getuid(),
        "shm_bytes": os.statvfs("/dev/shm").f_blocks * os.statvfs("/dev/shm").f_frsize,
        "modes": {
            name: stat.S_IMODE(os.stat(path).st_mode)
            for name, path in (
                ("input", source),
                ("input file", source / "_probe.json"),
                ("output", target),
                ("cwd", "."),
                ("tmpdir", os.environ["TMPDIR"]),
            )
        },
        "read": {
            p: attempt(lambda p=p: Path(p).read_bytes().decode(errors="replace"))
            for p in orders.get("read", [])
        },
        "list": {p: attempt(lambda p=p: sorted(os.listdir(p))) for p in orders.get("list", [])},
        "write": {p: attempt(lambda p=p: write_in(p)) for p in orders.get("write", [])},
    }
    if "connect" in orders:
        found["connect"] = attempt(lambda: connect(*orders["connect"]))
    if "mis_pid" in orders:
        pid = orders["mis_pid"]
        found["mis_visible"] = os.path.exists(f"/proc/{pid}")
        found["kill"] = attempt(lambda: os.kill(pid, signal.SIGKILL))
    (target / "probe.json").write_text(json.dumps(found, indent=1))


def escape():
    marker = os.environ["MIS_TEST_MARKER"]
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execve("/bin/sleep", ["sleep", "3600"], {"MIS_TEST_MARKER": marker})
        os._exit(0)
    os.wait()
    print("probe: a grandchild escaped", flush=True)
    if orders.get("then") == "hang":
        time.sleep(3600)


def scratch():
    work = Path(".monai_workdir")
    (work / "operators").mkdir(parents=True)
    (work / "operators" / "state.bin").write_bytes(b"scratch" * 1000)
    for folder in (
        os.environ["HOME"],
        os.environ["TMPDIR"],
        *(["/tmp"] if orders.get("tmp") else []),
    ):
        Path(folder, f"scratch-{os.getpid()}").write_text("scratch")
    listing = {
        "cwd": os.getcwd(),
        "home": os.environ["HOME"],
        "tmpdir": os.environ["TMPDIR"],
        "files": sorted(str(p) for p in Path(".").rglob("*")),
    }
    (target / "scratch.json").write_text(json.dumps(listing))


def hog():
    held = []
    print(f"probe: allocating; pid {os.getpid()}", flush=True)
    while True:
        block = bytearray(64 * 1024 * 1024)
        block[::4096] = b"x" * len(block[::4096])
        held.append(block)


def forks():
    made, problem = 0, ""
    while made < 500:
        try:
            pid = os.fork()
        except OSError as exc:
            problem = exc.strerror
            break
        if pid == 0:
            time.sleep(3600)
            os._exit(0)
        made += 1
    (target / "forks.json").write_text(json.dumps({"made": made, "problem": problem}))


if mode == "probe":
    probe()
elif mode == "hang":
    print("probe: hanging", flush=True)
    time.sleep(3600)
elif mode == "escape":
    escape()
elif mode == "scratch":
    scratch()
elif mode == "hog":
    hog()
elif mode == "forks":
    forks()
else:
    sys.exit(f"unknown mode {mode}")
