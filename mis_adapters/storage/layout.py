"""Every name and mode MIS writes on the payload volume, in one place.

    <payload_dir>/                              0750 when MIS makes it
    <payload_dir>/.mis-payload-root             0644 marks a payload folder (any installation's)
    <payload_dir>/<request>/                    0750
    <payload_dir>/<request>/.mis-workspace      0640 its owner, locked (ownership.py)
    <payload_dir>/<request>/upload.zip          0600 the archive as received
    <payload_dir>/<request>/.map-process        the process backend's run: "<pid> <job id>"
    <payload_dir>/<request>/.map-exit           how the MAP ended, written by its supervisor
    <payload_dir>/<request>/input/              0750, files 0640: what the MAP reads
    <payload_dir>/<request>/output/             2770: what the MAP writes
    <payload_dir>/<request>/work/, tmp/         0700: the process backend's MAP's cwd and HOME,
                                                its TMPDIR

The folder names inside a workspace (input, output, work, tmp) are the core's `Workspace`'s.
Modes are set explicitly, whatever the umask. The payload-root marker lets the process
backend's sandbox refuse to show a MAP any folder that holds a payload folder, this
installation's or another's.
"""

from __future__ import annotations

import os
from pathlib import Path

from mis_adapters.open_flags import NEW_FILE

PAYLOAD_MODE = 0o750
PAYLOAD_ROOT_MARKER = ".mis-payload-root"
PAYLOAD_ROOT_MARKER_MODE = 0o644  # others look for it; it says nothing secret
WORKSPACE_MODE = 0o750
WORKSPACE_MARKER = ".mis-workspace"
WORKSPACE_MARKER_MODE = 0o640
UPLOAD = "upload.zip"
UPLOAD_MODE = 0o600
RUN_RECORD = ".map-process"
RUN_REPORT = ".map-exit"
# the input, as the zip reader writes it (archive.py hands it these): the MAP may read through
# MIS's group; other users get nothing
INPUT_FOLDER_MODE = 0o750
INPUT_FILE_MODE = 0o640
OUTPUT_MODE = 0o2770  # set-group-id: what a MAP of MIS's group writes stays in the group
RUN_FOLDER_MODE = 0o700  # work/ and tmp/

_MARKER_TEXT = (
    "This folder is a MONAI Inference Service payload folder (server.payload_dir): it holds\n"
    "the uploads and results of requests in flight. No MAP is shown a folder that holds it.\n"
)


def prepare_payload_root(root: Path) -> str:
    """At start-up: make the payload folder when it is missing, and mark it; '' when done,
    else what went wrong (readiness says it again later)."""
    try:
        make_payload_root(root)
    except OSError as exc:
        return f"cannot create the payload folder {root}: {exc.strerror}"
    return mark_payload_root(root)


def make_payload_root(root: Path) -> None:
    """The payload folder, mode PAYLOAD_MODE whatever the umask, when it is missing."""
    try:
        root.mkdir(mode=PAYLOAD_MODE, parents=True)
    except FileExistsError:
        return
    os.chmod(root, PAYLOAD_MODE)


def mark_payload_root(root: Path) -> str:
    """Write the payload-root marker into `root` (kept if there); '' or what went wrong."""
    marker = root / PAYLOAD_ROOT_MARKER
    if marker.is_file():
        return ""
    try:
        fd = os.open(marker, os.O_WRONLY | NEW_FILE, PAYLOAD_ROOT_MARKER_MODE)
    except FileExistsError:
        return ""
    except OSError as exc:
        return f"cannot mark the payload folder {root} ({PAYLOAD_ROOT_MARKER}): {exc.strerror}"
    try:
        os.fchmod(fd, PAYLOAD_ROOT_MARKER_MODE)
        os.write(fd, _MARKER_TEXT.encode())
    finally:
        os.close(fd)
    return ""


def is_payload_root(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, PAYLOAD_ROOT_MARKER))
