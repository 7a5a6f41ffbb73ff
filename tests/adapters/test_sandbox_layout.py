"""The sandbox's mounts, with real bubblewrap: a quick start's layout, where the MAP's checkout
and the payload folder both lie in MIS's home folder.

What the sandbox hides is a matter of mounts, not permissions, so this runs as whichever user
the tests run as (tests/containment runs the same sandbox with MIS as the unprivileged user).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from mis_adapters.process import sandbox
from mis_adapters.process.backend import ProcessJobBackend
from mis_core.errors import BackendUnavailable
from mis_core.model import JobProgress, JobRequest, MapSpec, Workspace
from tests.containment.probes import require_bubblewrap

pytestmark = pytest.mark.anyio

LOOK_AROUND = """
import json, os
from pathlib import Path

def attempt(action):
    try:
        return action()
    except OSError as exc:
        return exc.errno

home, payload, secret, tokens, config = os.environ["LOOK_AT"].split(":")
seen = {
    "home": attempt(lambda: sorted(os.listdir(home))),
    "payload": attempt(lambda: sorted(os.listdir(payload))),
    "secret": attempt(lambda: Path(secret).read_text()),
    "tokens": attempt(lambda: Path(tokens).read_text()),
    "config": attempt(lambda: Path(config).read_text()),
}
Path(os.environ["MONAI_OUTPUTPATH"], "seen.json").write_text(json.dumps(seen))
"""


async def test_the_maps_checkout_in_mis_home_is_shown_and_nothing_else_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_bubblewrap()
    home = tmp_path / "home"
    secret = home / ".ssh" / "id_ed25519"
    secret.parent.mkdir(parents=True)
    secret.write_text("PRIVATE KEY")
    checkout = home / "src" / "mis"
    (checkout / "apps").mkdir(parents=True)
    (checkout / "apps" / "look.py").write_text(LOOK_AROUND)
    tokens, config = checkout / "tokens", checkout / "mis.yaml"
    tokens.write_text("a-token\n")
    config.write_text("backend: process\n")
    payload = checkout / ".mis" / "payload"  # as the quick start's mis.yaml has it
    ws, other = Workspace(str(payload), "req-7"), Workspace(str(payload), "other-request")
    for folder in (ws.input_dir, ws.output_dir, other.input_dir):
        Path(folder).mkdir(parents=True)
    monkeypatch.chdir(checkout)  # the command's script path is relative to it
    look_at = ":".join(str(p) for p in (home, payload, secret, tokens, config))
    spec = MapSpec(command=(sys.executable, "apps/look.py"), env={"LOOK_AT": look_at})
    backend = ProcessJobBackend(
        spec,
        payload_root=payload,
        sandbox=sandbox.choose("bubblewrap"),
        mis_files=[str(tokens), str(config)],
        home=str(home),
    )
    await backend.check()

    outcome = await backend.run(JobRequest("req-7", spec, ws), JobProgress())

    assert outcome.succeeded, outcome
    seen = json.loads((Path(ws.output_dir) / "seen.json").read_text())
    assert seen["home"] == ["src"]  # the folder holding its script, bound back; no .ssh
    assert seen["secret"] == 2  # ENOENT
    assert seen["payload"] == ["req-7"]  # inside the bound-back checkout, hidden again
    assert seen["tokens"] == seen["config"] == 13  # EACCES: covered by /dev/null


async def test_a_map_kept_in_the_payload_folder_is_not_ready(tmp_path: Path) -> None:
    require_bubblewrap()
    payload = tmp_path / "payload"
    (payload / "tools").mkdir(parents=True)
    script = payload / "tools" / "map.py"
    script.write_text("print('hi')")
    spec = MapSpec(command=(sys.executable, str(script)))
    backend = ProcessJobBackend(spec, payload_root=payload, sandbox=sandbox.choose("bubblewrap"))
    with pytest.raises(
        BackendUnavailable, match=r"the sandbox hides .*map\.py.*process\.sandbox: none"
    ):
        await backend.check()


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
        backend = ProcessJobBackend(spec, payload_root=Path(ws.payload_dir), sandbox=chosen)
        outcome = await backend.run(JobRequest("req-7", spec, ws), JobProgress())
        assert not outcome.succeeded
        assert outcome.reason.startswith(reason), (chosen.name, outcome)
