"""What the process backend takes from the configuration, built by the bootstrap from it.

No defaults here: the settings state them, once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs

from mis_adapters.process.sandbox import Sandbox


@attrs.frozen
class ProcessOptions:
    kill_grace_seconds: float  # process.kill_grace_seconds: SIGTERM, then SIGKILL after it
    pids_limit: int  # process.pids_limit
    map_log_bytes: int  # server.map_log_max_bytes: of each request's MAP output, in MIS's log
    payload_root: Path  # server.payload_dir, absolute: swept, and never shown to a MAP
    sandbox: Sandbox  # process.sandbox, as probed
    # MIS's files that no MAP may see: what each is → its path
    secrets: Mapping[str, str | os.PathLike[str] | None]
    read_only_paths: Sequence[str | os.PathLike[str]]  # process.read_only_paths
