"""Whether the payload folder can take a request now: what `/readyz` adds to the backend's check.

A folder that is missing, not a folder, not writable by MIS, or full, would fail the next
request; readiness says so, with the reason, so that an orchestrator stops sending traffic
and an operator sees why. The folder is created at start-up when it can be (a fresh install)
and marked as a payload folder (layout.py), so "missing" later means it went away (a volume
unmounted, a folder deleted). A workspace that could not be deleted for
`stuck_deletion_seconds` (MIS keeps retrying) makes it unready too: its files stay on the
volume, and they would block new requests once enough pile up.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from loguru import logger

from mis_adapters.storage.layout import mark_payload_root, prepare_payload_root

MIN_FREE_BYTES = 1024 * 1024  # less than this is full: no upload fits


class PayloadFolder:
    def __init__(self, root: Path, stuck_deletion_seconds: float = 60.0) -> None:
        self.root = root.absolute()
        self.stuck_deletion_seconds = stuck_deletion_seconds
        existed = self.root.exists()
        problem = prepare_payload_root(self.root)  # and mark it, for the sandbox
        if problem:
            logger.error("{}", problem)
        elif not existed:
            logger.info("created the payload folder {}", self.root)

    def problem(self) -> str:
        """Why a request could not be served from the folder now, or ''."""
        root = self.root
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

    def stuck_deletion(self, failing: Mapping[str, float], now: float) -> str:
        """Why readiness fails for workspaces that could not be deleted (`failing`: since
        when each fails), or ''."""
        if not failing:
            return ""
        seconds = now - min(failing.values())
        if seconds < self.stuck_deletion_seconds:
            return ""
        return (
            f"{len(failing)} workspace(s) of finished requests in {self.root} could not be "
            f"deleted for {seconds:.0f} seconds (server.stuck_deletion_seconds: "
            f"{self.stuck_deletion_seconds:g}); MIS keeps retrying. The log says why (for "
            "example files MIS's user may not remove); fix that and they go."
        )
