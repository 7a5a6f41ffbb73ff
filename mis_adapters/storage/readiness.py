"""Whether the payload folder can take a request now: what readiness adds to the backend's check.

A folder that is missing, not a folder, not writable by MIS, or full, would fail the next
request; readiness says so, with the reason, so that an orchestrator stops sending traffic
and an operator sees why. The folder is created at start-up when it can be (a fresh install)
and marked as a payload folder (layout.py), so "missing" later means it went away (a volume
unmounted, a folder deleted).
"""

from __future__ import annotations

import os
from pathlib import Path

from loguru import logger

from mis_adapters.storage.layout import mark_payload_root, prepare_payload_root

MIN_FREE_BYTES = 1024 * 1024  # less than this is full: no upload fits


def prepare_payload_folder(root: Path) -> None:
    """At start-up: create and mark the folder where it can be; say what went wrong if not."""
    root = root.absolute()
    existed = root.exists()
    problem = prepare_payload_root(root)  # and mark it, for the sandbox
    if problem:
        logger.error("{}", problem)
    elif not existed:
        logger.info("created the payload folder {}", root)


def payload_folder_problem(root: Path) -> str:
    """Why a request could not be served from the folder now, or ''."""
    try:
        stats = os.statvfs(root)
    except FileNotFoundError:
        return f"The payload folder {root} (server.payload_dir) does not exist."
    except OSError as exc:
        return f"The payload folder {root} (server.payload_dir) cannot be read: {exc.strerror}."
    if not root.is_dir():
        return f"The payload folder {root} (server.payload_dir) is not a folder."
    if not os.access(root, os.W_OK | os.X_OK):
        return (
            f"The payload folder {root} (server.payload_dir) is not writable by MIS "
            f"(user id {os.getuid()}); fix its owner or permissions."
        )
    free = stats.f_bavail * stats.f_frsize
    if free < MIN_FREE_BYTES or (stats.f_files and stats.f_favail == 0):
        return (
            f"The payload folder {root} (server.payload_dir) is full ({free} bytes, "
            f"{stats.f_favail} inodes free); requests would fail until space is freed."
        )
    mark_payload_root(root)  # again, if the folder came back without it (a new volume)
    return ""
