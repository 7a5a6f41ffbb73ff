"""The base configurations that `mis_server` lays a test's overrides over, one per backend.

Each is the scripted test MAP (tests/maps/scripted_map.py, or the MAP image's copy-and-modes
script in a container) with short timeouts, its payload folder under the test's `work`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tests.harness.repo import REPO
from tests.nonroot import NonRoot, maps_dir

SCRIPTED_MAP = str(REPO / "tests" / "maps" / "scripted_map.py")
MAP_IMAGE = "localhost/mis-test-map:1"  # the test MAP image, which tests/docker/engine.py builds


def process_config(work: Path, nonroot: NonRoot | None = None) -> dict[str, Any]:
    """The scripted MAP as a local process; run by `nonroot`'s Python if given.

    Without the process sandbox: this MAP tells the test about itself through files in
    `work` and host pids, which the sandbox hides (tests/containment tests the sandbox)."""
    python, script = sys.executable, SCRIPTED_MAP
    if nonroot is not None:
        python, script = nonroot.python, str(maps_dir(nonroot) / "scripted_map.py")
    return {
        "server": {"payload_dir": str(work / "payload")},
        "map": {
            "command": [python, script, "{input_path}", "{output_path}"],
            "timeout_seconds": 3,
            "env": {
                "MIS_TEST_PIDFILE": str(work / "pids"),
                "MIS_TEST_STARTED": str(work / "started"),
                "MIS_TEST_RELEASE": str(work / "release"),
            },
        },
        "process": {"kill_grace_seconds": 1, "sandbox": "none"},
    }


def kubernetes_config(work: Path) -> dict[str, Any]:
    """The scripted MAP as a Kubernetes Job, for the API double's kubelet to run locally."""
    payload = work / "payload"
    return {
        "backend": "kubernetes",
        "server": {"payload_dir": str(payload)},
        "map": {
            "image": "example/scripted-map:1",
            "command": [sys.executable, SCRIPTED_MAP, "-i", "{input_path}", "-o", "{output_path}"],
            "timeout_seconds": 5,
            "resources": {"cpu": "1", "memory": "1Gi", "gpu": 1},
            "env": {"MIS_TEST_PIDFILE": str(work / "pids")},
        },
        "kubernetes": {"payload_volume": {"host_path": str(payload)}, "delete_wait_seconds": 5},
    }


def docker_config(work: Path, url: str) -> dict[str, Any]:
    """The test MAP image (tests/docker/engine.py) in a container of the engine at `url`."""
    return {
        "backend": "docker",
        "server": {"payload_dir": str(work / "payload")},
        "map": {
            "image": MAP_IMAGE,
            "command": ["/bin/sh", "/opt/monai/app/run.sh"],
            "resources": {"cpu": "1", "memory": "128Mi"},
            "timeout_seconds": 20,
        },
        "docker": {"url": url, "instance": "mis-test", "stop_grace_seconds": 1},
    }
