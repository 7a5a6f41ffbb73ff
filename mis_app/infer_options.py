"""What `mis infer` is asked to do, and its defaults, stated once: the command line's options
and their help take them from here, as does any caller of `mis_app.client.infer`.

Light to import (no HTTP client, no zip code), so that `mis` starts fast.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from mis_app.settings import ServerSettings

_SERVER = ServerSettings()
DEFAULT_URL = f"http://{_SERVER.host}:{_SERVER.port}"  # where `mis serve` listens by default
MAX_RETRY_AFTER_SECONDS = 60.0  # one wait of --wait, whatever the server's Retry-After says


@attrs.frozen
class InferOptions:
    source: Path
    output: Path | None = None  # where the zip goes; None with extract_to: only unpacked
    url: str = DEFAULT_URL
    token: str = ""
    extract_to: Path | None = None
    force: bool = False  # extract_to may hold files; the result replaces those it also has
    wait: bool = False
    retries: int = 10
    max_wait_seconds: float = 300  # --wait: time spent waiting in all, whatever Retry-After says
    timeout_seconds: float = 600
