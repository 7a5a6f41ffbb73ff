"""The sandbox's allow-list, with real bubblewrap: what a MAP sees of the host's files.

What the sandbox shows is a matter of mounts, not permissions, so this runs as whichever user
the tests run as (tests/containment runs the same sandbox with MIS as the unprivileged user).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from mis_adapters.process import sandbox
from mis_adapters.process.backend import ProcessJobBackend
from mis_adapters.process.exposure import ViewRefused
from mis_adapters.process.view import SYSTEM, system_view
from mis_adapters.storage import layout
from mis_core.errors import BackendUnavailable
from mis_core.model import JobProgress, JobRequest, MapSpec, Workspace
from tests.built import process_options
from tests.containment.probes import require_bubblewrap

pytestmark = pytest.mark.anyio

LOOK_AROUND = """
import json, os, sys
from pathlib import Path

def attempt(action):
    try:
        return action()
    except OSError as exc:
        return exc.errno

def write(path):
    Path(path, "written").write_text("x")
    return "written"

seen = {}
for name, path in json.loads(os.environ["LOOK_AT"]).items():
    if name.startswith("list:"):
        seen[name] = attempt(lambda: sorted(os.listdir(path)))
    elif name.startswith("write:"):
        seen[name] = attempt(lambda: write(path))
    else:
        seen[name] = attempt(lambda: Path(path).read_text())
import helper  # a module beside the script, as the example MAP has
seen["helper"] = helper.VALUE
Path(os.environ["MONAI_OUTPUTPATH"], "seen.json").write_text(json.dumps(seen))
"""
ENOENT, EROFS = 2, 30


def checkout_with_a_map(root: Path) -> Path:
    """A checkout as the quick start's: the MAP's script beside its modules, the
    configuration and tokens file, and the payload folder in the checkout."""
    apps = root / "src" / "mis" / "apps"
    apps.mkdir(parents=True)
    (apps / "look.py").write_text(LOOK_AROUND)
    (apps / "helper.py").write_text("VALUE = 'imported'\n")
    return apps.parent


def backend_for(
    spec: MapSpec, payload: Path, secrets: dict[str, Path], **options: object
) -> ProcessJobBackend:
    chosen = sandbox.choose("bubblewrap")
    return ProcessJobBackend(
        spec, process_options(payload_root=payload, sandbox=chosen, secrets=secrets, **options)
    )


async def run_look(backend: ProcessJobBackend, spec: MapSpec, ws: Workspace) -> dict[str, object]:
    for folder in (ws.input_dir, ws.output_dir):
        Path(folder).mkdir(parents=True, exist_ok=True)
    outcome = await backend.run(JobRequest(ws.name, spec, ws), JobProgress())
    assert outcome.succeeded, outcome
    seen: dict[str, object] = json.loads((Path(ws.output_dir) / "seen.json").read_text())
    return seen


async def test_the_maps_folder_is_shown_without_the_secrets_and_payload_folders_in_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quick start's layout, and worse: the configuration, tokens file, this
    installation's payload folder and another installation's all lie in the folder of the
    MAP's script; its modules are shown, none of those."""
    require_bubblewrap()
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY")
    checkout = checkout_with_a_map(home)
    apps = checkout / "apps"
    config, tokens = apps / "mis.yaml", apps / "tokens"
    config.write_text("backend: process\n")
    tokens.write_text("a-token\n")
    payload = apps / ".mis" / "payload"
    other = apps / "other-install" / "payload"
    other.mkdir(parents=True)
    layout.mark_payload_root(other)
    (other / "their-request").mkdir()
    (other / "their-request" / "upload.zip").write_text("PHI")
    beside = checkout / "notes"
    beside.mkdir()
    (beside / "todo.txt").write_text("a file in a folder beside the MAP's")
    (checkout / "README").write_text("beside the MAP's folder")
    ws = Workspace(str(payload), "req-7")
    Path(ws.input_dir).mkdir(parents=True)
    Path(Workspace(str(payload), "other-request").input_dir).mkdir(parents=True)
    monkeypatch.chdir(checkout)  # the command's script path is relative to it
    look_at = {
        "list:home": str(home),
        "ssh": str(home / ".ssh" / "id_ed25519"),
        "config": str(config),
        "tokens": str(tokens),
        "list:payload": str(payload),
        "theirs": str(other / "their-request" / "upload.zip"),
        "list:theirs": str(other),
        "beside": str(beside / "todo.txt"),
        "readme": str(checkout / "README"),
        "write:apps": str(apps),
    }
    spec = MapSpec(command=(sys.executable, "apps/look.py"), env={"LOOK_AT": json.dumps(look_at)})
    backend = backend_for(spec, payload, {"configuration": config, "tokens file": tokens})
    await backend.check()

    seen = await run_look(backend, spec, ws)

    assert seen["helper"] == "imported"  # the script's folder is there, entry by entry
    assert seen["config"] == seen["tokens"] == ENOENT
    assert seen["theirs"] == seen["list:theirs"] == ENOENT
    assert seen["list:payload"] == ["req-7"]  # only the mount points of its own folders
    assert seen["ssh"] == seen["beside"] == seen["readme"] == ENOENT
    assert seen["list:home"] == ["src"]  # the way to its folder; nothing of home itself
    assert seen["write:apps"] == EROFS
    shown = "\n".join(backend.view().describe())  # type: ignore[union-attr]
    assert f"{apps / 'helper.py'} (named by map.command)" in shown
    assert str(config) not in shown
    assert str(other) not in shown


async def test_a_folder_in_read_only_paths_is_shown_read_only(tmp_path: Path) -> None:
    require_bubblewrap()
    apps = checkout_with_a_map(tmp_path / "opt") / "apps"
    models = tmp_path / "models"
    models.mkdir()
    (models / "weights.txt").write_text("w")
    payload = tmp_path / "payload"
    look_at = {"weights": str(models / "weights.txt"), "write:models": str(models)}
    spec = MapSpec(
        command=(sys.executable, str(apps / "look.py")), env={"LOOK_AT": json.dumps(look_at)}
    )
    backend = backend_for(spec, payload, {}, read_only_paths=[str(models)])

    seen = await run_look(backend, spec, Workspace(str(payload), "req-1"))

    assert seen["weights"] == "w"
    assert seen["write:models"] == EROFS
    without = backend_for(spec, payload, {})
    assert (await run_look(without, spec, Workspace(str(payload), "req-2")))["weights"] == ENOENT


@pytest.mark.parametrize("what", ["this payload folder", "another payload folder", "tokens"])
async def test_a_declared_folder_holding_a_payload_folder_or_a_secret_is_refused(
    tmp_path: Path, what: str
) -> None:
    require_bubblewrap()
    data = tmp_path / "data"
    payload = data / "payload" if what == "this payload folder" else tmp_path / "payload"
    (data / "deep").mkdir(parents=True)
    if what == "another payload folder":
        layout.mark_payload_root(data / "deep")
    tokens = data / "deep" / "tokens" if what == "tokens" else tmp_path / "tokens"
    tokens.write_text("t")
    spec = MapSpec(command=(sys.executable, "-c", "pass"))
    backend = backend_for(
        spec, payload, {"tokens file (server.auth.tokens_file)": tokens}, read_only_paths=[data]
    )
    with pytest.raises(ViewRefused, match=f"{data} in process.read_only_paths: {data} holds"):
        backend.view()
    with pytest.raises(BackendUnavailable, match="Move one out of the other"):
        await backend.check()
    outcome = await backend.run(JobRequest("r", spec, Workspace(str(payload), "r")), JobProgress())
    assert not outcome.succeeded
    assert "could not be started" in outcome.reason


async def test_a_map_kept_in_the_payload_folder_is_not_ready(tmp_path: Path) -> None:
    require_bubblewrap()
    payload = tmp_path / "payload"
    (payload / "tools").mkdir(parents=True)
    script = payload / "tools" / "map.py"
    script.write_text("print('hi')")
    spec = MapSpec(command=(sys.executable, str(script)))
    backend = ProcessJobBackend(
        spec, process_options(payload_root=payload, sandbox=sandbox.choose("bubblewrap"))
    )
    with pytest.raises(
        BackendUnavailable, match=r"map\.py is MIS's payload folder .* or lies in it"
    ):
        await backend.check()


def test_the_system_folders_are_links_where_the_host_merged_usr() -> None:
    entries = {e.path: e for e in system_view().entries}
    for folder in SYSTEM:
        if os.path.islink(folder):
            assert entries[folder].link == os.readlink(folder)
        elif os.path.isdir(folder):
            assert entries[folder].source == folder
        else:
            assert folder not in entries
    assert "/etc/passwd" in entries
    assert not any(path.startswith("/etc/ssl/private") for path in entries)
    assert all(os.path.lexists(path) for path in entries)


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        ("import sys; sys.exit(3)", "exited with code 3"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "was killed by signal SIGKILL"),
        ("raise MemoryError", "ran out of memory: the process backend limits each MAP process"),
        (
            "raise RuntimeError('CUDA out of memory. Tried to allocate 2.00 GiB')",
            "exited with code 1",  # the GPU's memory, not the limit
        ),
    ],
    ids=["exit-code", "signal", "memory", "gpu-memory"],
)
async def test_how_a_sandboxed_map_ended_is_told_as_without_a_sandbox(
    tmp_path: Path, script: str, reason: str
) -> None:
    require_bubblewrap()
    spec = MapSpec(command=(sys.executable, "-c", script))
    for chosen in (sandbox.NO_SANDBOX, sandbox.choose("bubblewrap")):
        ws = Workspace(str(tmp_path / chosen.name), "req-7")
        Path(ws.input_dir).mkdir(parents=True)
        Path(ws.output_dir).mkdir()
        backend = ProcessJobBackend(
            spec, process_options(payload_root=Path(ws.payload_dir), sandbox=chosen)
        )
        outcome = await backend.run(JobRequest("req-7", spec, ws), JobProgress())
        assert not outcome.succeeded
        assert outcome.reason.startswith(reason), (chosen.name, outcome)
