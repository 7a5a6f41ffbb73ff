"""What the archive tests share: a workspace's input folder to extract into."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    """An empty input folder inside a workspace folder, as the volume makes them."""
    folder = tmp_path / "ws" / "input"
    folder.mkdir(parents=True)
    return folder
