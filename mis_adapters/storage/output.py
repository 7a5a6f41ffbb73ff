"""The MAP's output as a zip, with the zip package's writer: what it refuses becomes
MapFailed here, once, naming the setting that decides it."""

from __future__ import annotations

from mis_adapters.zip import OutputOverLimit, OutputProblem, OutputTooLarge, UnsafeName
from mis_core.errors import MapFailed

# Which setting each of the writer's limits is (budget.LIMITS).
SETTINGS = {
    "max_entries": "server.max_output_entries",
    "max_path_bytes": "server.max_output_path_bytes",
    "max_directory_bytes": "server.max_output_directory_bytes",
}


def output_failure(exc: OutputProblem) -> MapFailed:
    """The MapFailed (500) for output that cannot be sent, before or while it is sent."""
    if isinstance(exc, OutputTooLarge):
        return MapFailed(
            f"The MAP's output is too large to send: {exc.problem} "
            "(server.max_output_bytes; a file's size counts whole, sparse or not). "
            "Have the MAP write less, or raise server.max_output_bytes."
        )
    if isinstance(exc, OutputOverLimit):
        setting = SETTINGS[exc.limit]
        return MapFailed(
            f"The MAP's output is too large to send as a zip: {exc.problem} ({setting}). "
            f"Have the MAP write fewer files or shorter names, or raise {setting}."
        )
    if isinstance(exc, UnsafeName):
        return MapFailed(
            f"The MAP's output cannot be sent: {exc.problem}. MIS sends only names it would "
            "accept in an upload (relative, '/' between folders, no '..', no backslash, "
            "drive letter or control character); have the MAP write plain names."
        )
    return MapFailed(
        f"The MAP's output folder cannot be sent whole: {exc.problem}. The MAP must "
        "write only regular files and folders, readable by MIS, with UTF-8 names."
    )
