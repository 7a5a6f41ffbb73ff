"""Deleting what a MAP leaves, as the unprivileged user MIS runs as (root would ignore the
permission bits this is about): read-only and unreadable folders, files nobody may read,
trees deeper than Python recurses and than PATH_MAX, names that are not UTF-8; deleted after
a request and swept after a crash."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.nonroot import NonRoot

SCRIPT = r"""
import json, os, sys
from pathlib import Path

import anyio

from mis_app.bootstrap import build_storage
from mis_app.settings import Settings

root, action = Path(sys.argv[1]), sys.argv[2]
settings = {"server": {"payload_dir": str(root)}, "map": {"command": ["true"]}}
storage = build_storage(Settings.model_validate(settings))


def hostile_tree(top):
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    os.mkdir("model", dir_fd=fd)  # cp -a of a read-only model folder
    os.makedirs(top / "model" / "weights" / "v1")
    (top / "model" / "weights" / "v1" / "w.bin").write_bytes(b"w")
    for folder in ("model/weights/v1", "model/weights", "model"):
        (top / folder).chmod(0o555)
    for name, mode in (("no-read", 0o300), ("no-search", 0o600), ("nothing", 0o000)):
        (top / name).mkdir()
        (top / name / "inside.txt").write_text("x")
        (top / name).chmod(mode)
    (top / "locked.bin").write_bytes(b"x")
    (top / "locked.bin").chmod(0)
    with open(os.path.join(os.fsencode(top), b"\xff\xfe-not-utf8"), "wb") as handle:
        handle.write(b"x")
    for _ in range(3000):  # deeper than the recursion limit and than PATH_MAX
        os.mkdir("d", 0o755, dir_fd=fd)
        child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.fchmod(fd, 0o555)
        os.close(fd)
        fd = child
    os.fchmod(fd, 0o555)
    os.close(fd)


if action in ("delete", "leave"):
    workspace = anyio.run(storage.create, "req")
    hostile_tree(Path(workspace.output_dir))
    if action == "leave":
        os._exit(0)  # killed mid-request
    anyio.run(storage.delete, workspace)
    print(json.dumps({"left": os.listdir(root)}))
else:
    swept = anyio.run(storage.sweep)
    print(json.dumps({"swept": swept, "left": os.listdir(root)}))
"""


def run(nonroot: NonRoot, root: Path, action: str) -> dict[str, object]:
    result = subprocess.run(
        nonroot.command(nonroot.python, "-c", SCRIPT, str(root), action),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout or "{}"))


def test_a_hostile_tree_is_deleted_after_the_request(nonroot: NonRoot) -> None:
    root = nonroot.workdir("delete") / "payload"
    assert run(nonroot, root, "delete") == {"left": []}


def test_a_hostile_tree_left_by_a_killed_mis_is_swept_at_the_next_start(nonroot: NonRoot) -> None:
    root = nonroot.workdir("sweep") / "payload"
    run(nonroot, root, "leave")
    assert (root / "req" / "output" / "model").is_dir()
    assert run(nonroot, root, "sweep") == {"swept": 1, "left": []}
