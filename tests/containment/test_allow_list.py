"""The sandbox's allow-list through MIS's real server, run as the unprivileged user.

A bind over a file follows the inode it was made on: a sandbox that shows the host's root and
covers MIS's secrets by path lets a MAP read a tokens file or configuration replaced by rename
during its run (editors save so, and a Kubernetes Secret's update swaps its `..data` link).
Here a MAP reads them in a loop while the test replaces them both ways.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mis_adapters.storage.layout import PAYLOAD_MODE, PAYLOAD_ROOT_MARKER
from tests.containment.probes import TOKEN, probe_config, require_bubblewrap, result, send
from tests.harness.command import mis_command
from tests.harness.servers import Server, ServerFactory
from tests.harness.wait import wait_until
from tests.nonroot import NonRoot, maps_dir

pytestmark = pytest.mark.slow  # see pyproject.toml: more than a few seconds

REPLACEMENTS = 8


def own(path: Path, nonroot: NonRoot, mode: int) -> None:
    """`path` (not following a link) as MIS's user's, with `mode`."""
    if os.geteuid() == 0:
        os.chown(path, nonroot.uid, nonroot.uid, follow_symlinks=False)
    if not path.is_symlink():
        path.chmod(mode)


def rename_over(path: Path, text: str, nonroot: NonRoot, mode: int) -> None:
    """Replace `path` as editors do: a new file renamed over it."""
    new = path.with_name(f".{path.name}.new")
    new.write_text(text)
    own(new, nonroot, mode)
    os.rename(new, path)


class SecretVolume:
    """A folder laid out as a Kubernetes Secret volume: `name -> ..data/name`,
    `..data -> ..<version>/`, updated by a new version folder and a renamed `..data` link."""

    def __init__(self, folder: Path, nonroot: NonRoot, names: list[str]) -> None:
        self.folder, self.nonroot, self.version = folder, nonroot, 0
        folder.mkdir()
        own(folder, nonroot, 0o755)
        self._new_version()
        (folder / "..data").symlink_to(self._current().name)
        for name in names:
            (folder / name).symlink_to(f"..data/{name}")

    def _current(self) -> Path:
        return self.folder / f"..2026_12_07_00_00_{self.version:02d}.000000000"

    def _new_version(self) -> Path:
        self.version += 1
        version = self._current()
        version.mkdir()
        own(version, self.nonroot, 0o755)
        return version

    def update(self, suffix: str) -> None:
        old = self.folder / os.readlink(self.folder / "..data")
        new = self._new_version()
        for file in old.iterdir():
            (new / file.name).write_text(file.read_text() + suffix)
            own(new / file.name, self.nonroot, file.stat().st_mode & 0o777)
        link = self.folder / "..data_tmp"
        link.symlink_to(new.name)
        os.rename(link, self.folder / "..data")
        shutil.rmtree(old)


def rounds(output: Path) -> int:
    try:
        return int((output / "rounds").read_text())
    except (OSError, ValueError):
        return 0


def read_while_replaced(
    server: Server, paths: list[Path], replace: Callable[[int], None]
) -> dict[str, dict[str, int]]:
    """What the reader MAP got from `paths` while `replace(i)` ran between its rounds."""
    request_id = "reader-" + os.urandom(4).hex()
    answer: dict[str, httpx.Response] = {}
    thread = threading.Thread(
        target=lambda: answer.update(r=send(server, {"mode": "read"}, request_id))
    )
    thread.start()
    try:
        started = f"{request_id} | map | reader: reading"
        wait_until(lambda: started in server.log_text(), 15, "the MAP to start reading")
        (name,) = server.leftovers()
        output = server.payload_dir / name / "output"
        for number in range(REPLACEMENTS):
            replace(number)
            done = rounds(output)
            wait_until(lambda d=done: rounds(output) > d, 10, "the MAP to read again")
        (output / "stop").write_text("")
    finally:
        thread.join(30)
    found = result(answer["r"], "read.json")
    assert found["rounds"] > REPLACEMENTS
    assert sorted(found["found"]) == sorted(str(p) for p in paths)
    return dict(found["found"])


def reader_config(work: Path, nonroot: NonRoot, paths: list[Path]) -> dict[str, Any]:
    config = probe_config(work, nonroot, "bubblewrap", "reader")
    config["map"]["command"] = [nonroot.python, str(maps_dir(nonroot) / "reader_map.py")]
    config["map"]["env"]["READ_PATHS"] = os.pathsep.join(str(p) for p in paths)
    config["map"]["timeout_seconds"] = 60
    return config


@pytest.mark.parametrize("where", ["apart", "beside the MAP"])
def test_a_tokens_file_and_configuration_replaced_by_rename_stay_unseen(
    nonroot: NonRoot, where: str, mis_server: ServerFactory
) -> None:
    """Beside the MAP: in the folder of its script, which the MAP sees entry by entry (the
    quick start keeps its configuration beside the example's script)."""
    require_bubblewrap()
    work = nonroot.workdir("renamed")
    if where == "beside the MAP":
        shutil.copy(maps_dir(nonroot) / "reader_map.py", work / "reader_map.py")
        (work / "reader_map.py").chmod(0o644)
    tokens, config_file = work / "tokens", work / "mis.yaml"
    config = reader_config(work, nonroot, [tokens, config_file])
    if where == "beside the MAP":
        config["map"]["command"][1] = str(work / "reader_map.py")
    with mis_server(work, config=config, nonroot=nonroot) as server:

        def replace(number: int) -> None:
            rename_over(tokens, f"{TOKEN}\n# version {number}\n", nonroot, 0o600)
            text = yaml.safe_dump(config) + f"# version {number}\n"
            rename_over(config_file, text, nonroot, 0o644)

        found = read_while_replaced(server, [tokens, config_file], replace)
    for path, seen in found.items():
        assert set(seen) == {"ENOENT"}, (path, seen)


def test_a_secret_volumes_swap_of_its_data_link_stays_unseen(
    nonroot: NonRoot, mis_server: ServerFactory
) -> None:
    require_bubblewrap()
    work = nonroot.workdir("swapped")
    volume = SecretVolume(work / "secret", nonroot, ["tokens", "mis.yaml"])
    paths = [
        volume.folder / "tokens",
        volume.folder / "mis.yaml",
        volume.folder / "..data" / "tokens",
    ]
    config = reader_config(volume.folder, nonroot, paths)  # writes the tokens through the link
    with mis_server(volume.folder, config=config, nonroot=nonroot) as server:
        found = read_while_replaced(server, paths, lambda n: volume.update(f"# version {n}\n"))
    assert volume.version == REPLACEMENTS + 1
    for path, seen in found.items():
        assert set(seen) == {"ENOENT"}, (path, seen)


def test_the_payload_folder_is_made_private_and_marked_at_start_up(
    nonroot: NonRoot, mis_server: ServerFactory
) -> None:
    work = nonroot.workdir("fresh")
    payload = work / "new" / "payload"
    overrides = {"server": {"payload_dir": str(payload)}, "map": {"command": ["/bin/true"]}}
    with mis_server(work, overrides, nonroot=nonroot) as server:
        assert server.leftovers() == []
        assert payload.stat().st_mode & 0o7777 == PAYLOAD_MODE == 0o750
        assert (payload / PAYLOAD_ROOT_MARKER).is_file()


def mis(*argv: str) -> subprocess.CompletedProcess[str]:
    """`mis` with none of this environment's MIS_* settings."""
    return mis_command(*argv, env={k: v for k, v in os.environ.items() if not k.startswith("MIS_")})


def config_with(tmp_path: Path, **process: object) -> Path:
    config = {
        "server": {
            "payload_dir": str(tmp_path / "data" / "payload"),
            "auth": {"tokens_file": str(tmp_path / "secrets" / "tokens")},
        },
        "map": {"command": [sys.executable, "-c", "pass"]},
        "process": {"sandbox": "bubblewrap", **process},
    }
    (tmp_path / "secrets").mkdir(exist_ok=True)
    (tmp_path / "secrets" / "tokens").write_text("a-token\n")
    path = tmp_path / "mis.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    ("shown", "held"),
    [("data", "payload folder (server.payload_dir)"), ("secrets", "tokens file")],
)
@pytest.mark.parametrize("command", ["serve", "check"])
def test_a_declared_folder_holding_a_payload_folder_or_secret_stops_start_up(
    tmp_path: Path, shown: str, held: str, command: str
) -> None:
    require_bubblewrap()
    folder = tmp_path / shown
    folder.mkdir(exist_ok=True)
    config = str(config_with(tmp_path, read_only_paths=[str(folder)]))
    argv = (
        ["serve", "--config", config]
        if command == "serve"
        else ["config", "check", "--config", config]
    )
    ran = mis(*argv)
    assert ran.returncode == 2, ran.stderr
    assert f"{folder} in process.read_only_paths: {folder} holds MIS's {held}" in ran.stderr
    assert "Move one out of the other" in ran.stderr


def test_config_check_says_what_the_map_sees(tmp_path: Path) -> None:
    require_bubblewrap()
    models = tmp_path / "models"
    models.mkdir()
    ran = mis(
        "config", "check", "--config", str(config_with(tmp_path, read_only_paths=[str(models)]))
    )
    assert ran.returncode == 0, ran.stderr
    lines = ran.stderr.splitlines()
    assert "# the MAP sees, read-only:" in lines
    assert "#   /usr (system)" in lines
    assert f"#   {models} (process.read_only_paths)" in lines
    assert any(line.startswith("# and writable: its request's output/") for line in lines)
    assert str(tmp_path / "secrets") not in ran.stderr
