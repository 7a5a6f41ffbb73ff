"""Attack: `mis infer --token-file` given a FIFO that nothing writes to.

Found: the client opened the file the blocking way, and a FIFO without a writer blocks its
opening for ever: `mis infer` hung before sending anything, saying nothing. A FIFO that is
written (a shell's `<(pass show mis)`) must keep working.

The fix this test expects: the file is opened without blocking, and a FIFO that brings
nothing within a few seconds is reported as such (exit 2).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from mis_core.error_catalogue import Exit
from tests.app.test_client_hostile import (
    hostile_server,
    json_error,
    run_infer,
    study,
)
from tests.harness.command import mis_argv

__all__ = ["study"]  # the fixture


def test_a_token_fifo_nobody_writes_to_is_reported_not_waited_on(
    tmp_path: Path, study: Path
) -> None:
    fifo = tmp_path / "token"
    os.mkfifo(fifo)
    started = time.monotonic()
    result = run_infer(study, "-o", tmp_path / "o.zip", "--token-file", fifo, timeout=30)
    assert result.returncode == Exit.USAGE, result.stderr
    assert f"nothing came through the FIFO {fifo}" in result.stderr
    assert time.monotonic() - started < 20


def test_a_token_fifo_that_is_written_still_gives_its_token(tmp_path: Path, study: Path) -> None:
    fifo = tmp_path / "token"
    os.mkfifo(fifo)
    denied = json_error(401, "unauthorized", "No.")
    with hostile_server(denied) as server:
        client = subprocess.Popen(
            mis_argv(
                "infer", study, "-o", tmp_path / "o.zip", "--url", server.url, "--token-file", fifo
            ),
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            with open(fifo, "w") as writer:  # opens once the client has opened its end
                writer.write("fifo-Token_1\n")
            _, stderr = client.communicate(timeout=30)
        finally:
            client.kill()
    assert client.returncode == Exit.UNAUTHORIZED, stderr
    assert [r["Authorization"] for r in server.requests] == ["Bearer fifo-Token_1"]
