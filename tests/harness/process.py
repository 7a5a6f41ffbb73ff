"""A server in a subprocess on 127.0.0.1: started, waited for until /healthz answers, stopped.

Shared by the test harness (tests/harness/servers.py) and the bench (bench/run.py), so both
start and stop servers the same way; it needs nothing beyond httpx and the standard library."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.harness.wait import wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@contextmanager
def launched(
    argv: Sequence[str],
    url: str,
    *,
    log: Path,
    env: Mapping[str, str],
    cwd: Path,
    verify: ssl.SSLContext | bool = True,
    start_seconds: float = 20,
    stop_seconds: float = 10,
    own_session: bool = False,
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """`argv` running until the block ends, its output in `log`; the block starts once `url`
    answers /healthz. Stopped with SIGTERM, killed after `stop_seconds` (with `own_session`,
    its whole process group: a server stuck in a request may have children)."""
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            list(argv),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=own_session,
            preexec_fn=preexec_fn,
        )
    try:
        wait_until(lambda: healthy(url, process, verify), start_seconds, f"{url}/healthz")
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(stop_seconds)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL) if own_session else process.kill()
            process.wait()


def healthy(url: str, process: subprocess.Popen[bytes], verify: ssl.SSLContext | bool) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"the server exited with code {process.returncode}")
    try:
        return httpx.get(f"{url}/healthz", timeout=1, verify=verify).status_code == 200
    except httpx.TransportError:
        return False
