"""Where the configured MAP reads and writes, as the MAP itself will see it.

On the container backends that is `map.input_path` and `map.output_path`. The process backend
never uses them: its MAP reads and writes its request's workspace folders on the host, so the
start-up log and /v1/status show that form instead of a path no process MAP can find.
"""

from __future__ import annotations

from mis_app.settings import Settings
from mis_core.model import Workspace

JOB_ID = "<job-id>"  # each request's own folder, named when it arrives


def map_folders(settings: Settings) -> tuple[str, str]:
    """(input, output) as the MAP sees them: a request's workspace folders on the process
    backend, where `JOB_ID` stands for the request's folder name."""
    if settings.backend != "process":
        return settings.map.input_path, settings.map.output_path
    workspace = Workspace(str(settings.server.payload_dir.absolute()), JOB_ID)
    return workspace.input_dir, workspace.output_dir
