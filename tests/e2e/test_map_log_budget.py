"""A MAP that floods its output, on the real server: MIS keeps answering, its log stays small.

The MAP's lines are read in bounded batches (the event loop gets a turn between them), MIS's
own log keeps up to server.map_log_max_bytes of them and then says what it left out, runs of
blank lines collapse, and text the MAP printed literally is kept apart from real escapes.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.live_log import Post, follow, new_key
from tests.harness.repo import REPO
from tests.harness.servers import Server, ServerFactory
from tests.zips import make_zip

CHATTY_MAP = {
    "map": {
        "command": [sys.executable, str(REPO / "tests" / "maps" / "chatty_map.py")],
        "timeout_seconds": 120,
    }
}
MiB = 1024 * 1024
DROPPED = re.compile(r"(\d+) more lines of the MAP's output \((\d+) bytes\) were not logged")
TYPED = r"typed \x1b[31m stays"  # backslash, x, 1, b: as the MAP printed it
REAL = "\x1b[31mreal\x1b[0m"


def chatter_zip(tmp_path: Path, **chatter: Any) -> bytes:
    files = {"_chatter.json": json.dumps(chatter).encode()}
    return make_zip(tmp_path / "in.zip", files).read_bytes()


class HealthPoller(threading.Thread):
    """Asks /healthz over and over, each answer's latency recorded, until stopped."""

    def __init__(self, server: Server) -> None:
        super().__init__(daemon=True)
        self.url = f"{server.url}/healthz"
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.start()

    def run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.stop.is_set():
                started = time.perf_counter()
                try:
                    status = client.get(self.url).status_code
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                self.latencies.append(time.perf_counter() - started)
                if status != 200:
                    self.failures.append(f"status {status}")
                self.stop.wait(0.005)  # pacing, so the poller does not take a core itself

    def assert_answered_quickly(self) -> None:
        assert not self.failures, self.failures[:5]
        assert len(self.latencies) >= 20, "too few polls to judge"
        ordered = sorted(self.latencies)
        p99 = ordered[int(len(ordered) * 0.99)]
        print(f"/healthz: {len(ordered)} polls, p99 {p99:.4f} s, max {ordered[-1]:.4f} s")
        assert ordered[-1] < 0.5, f"/healthz took {ordered[-1]:.3f} s (p99 {p99:.3f} s)"
        assert p99 < 0.1, f"/healthz p99 {p99:.3f} s"


@contextmanager
def polled(server: Server) -> Iterator[HealthPoller]:
    poller = HealthPoller(server)
    try:
        yield poller
    finally:
        poller.stop.set()
        poller.join(10)


def map_lines(log: str) -> list[str]:
    """The text log's lines that came from the MAP (and MIS's notes among them)."""
    return [line.split(" | map | ", 1)[1] for line in log.splitlines() if " | map | " in line]


def test_a_million_lines_leave_mis_responsive_and_its_log_small(
    tmp_path: Path, mis_server: ServerFactory
) -> None:
    total = 1_000_000
    with mis_server(tmp_path, CHATTY_MAP) as server:
        before = server.log.stat().st_size
        with polled(server) as poller:
            post = Post(server, chatter_zip(tmp_path, lines=total), {"X-Request-ID": "flood"})
            response = post.result()
        grown = server.log.stat().st_size - before
        log = server.log_text()
    assert response.status_code == 200, response.text
    poller.assert_answered_quickly()
    print(f"MIS's log grew by {grown} bytes")
    assert grown < 5_000_000, f"MIS's log grew by {grown} bytes"
    logged = map_lines(log)
    [summary] = [line for line in logged if DROPPED.search(line)]
    dropped_lines, dropped_bytes = map(int, DROPPED.search(summary).groups())  # type: ignore[union-attr]
    kept = [line for line in logged if line.startswith("line ")]
    assert kept[:3] == ["line 1", "line 2", "line 3"]  # the first lines, in order
    assert len(kept) + dropped_lines == total + 1  # every line but those logged, and "done"
    printed = sum(len(f"line {n}") for n in range(1, total + 1)) + len("done")
    assert sum(map(len, kept)) + dropped_bytes == printed  # newlines not counted
    assert logged[-1] == summary  # said once, at the end of the run


def test_bursts_of_empty_lines_collapse_and_mis_keeps_answering(
    tmp_path: Path, mis_server: ServerFactory
) -> None:
    bursts, size = 6, 65_536
    with mis_server(tmp_path, CHATTY_MAP) as server:
        before = server.log.stat().st_size
        then = " 10%|#   |\r 50%|##  |\r100%|####| after"  # a progress bar's rewrites
        body = chatter_zip(tmp_path, bursts=bursts, burst_lines=size, pause=0.5, then=then)
        with polled(server) as poller:
            response = Post(server, body, {"X-Request-ID": "bursts"}).result()
        grown = server.log.stat().st_size - before
        log = server.log_text()
    assert response.status_code == 200, response.text
    poller.assert_answered_quickly()
    assert grown < 100_000, f"MIS's log grew by {grown} bytes"
    blanks = f"… {bursts * size - 1} more blank lines"
    assert map_lines(log) == ["", blanks, "100%|####| after", "done"]  # the bar's last state


def test_text_the_map_printed_literally_is_kept_apart_from_real_escapes(
    tmp_path: Path, mis_server: ServerFactory
) -> None:
    request_id, key = "literal", new_key()
    json_log = {**CHATTY_MAP, "server": {"log_format": "json"}}
    with mis_server(tmp_path, json_log) as server, httpx.Client(timeout=30) as client:
        body = chatter_zip(tmp_path, bursts=1, burst_lines=1, then=f"{TYPED} {REAL}")
        post = Post(server, body, {"X-Request-ID": request_id, "X-Log-Key": key})
        with follow(client, server, request_id, {"X-Log-Key": key}) as stream:
            assert stream.ended.wait(30), "the stream did not end with the request"
        assert post.result().status_code == 200
        raw = server.log.read_bytes().decode()
    assert f"{TYPED} real" in stream.lines()  # the live log: the typed text, no colour code
    records = [json.loads(line) for line in raw.splitlines()]
    messages = [r["message"] for r in records if r.get("source") == "map"]
    assert f"{TYPED} {REAL}" in messages  # each as it was, told apart
    assert json.dumps(f"{TYPED} {REAL}")[1:-1] in raw  # \\x1b[31m and \u001b[31m
    assert "\\\\x1b[31m stays \\u001b[31mreal" in raw
    assert "\x1b" not in raw


def test_past_the_budget_the_failure_message_still_has_the_last_lines(
    tmp_path: Path, mis_server: ServerFactory
) -> None:
    request_id, key = "budget", new_key()
    budget = {**CHATTY_MAP, "server": {"map_log_max_bytes": 4096}}
    with mis_server(tmp_path, budget) as server, httpx.Client(timeout=30) as client:
        body = chatter_zip(tmp_path, lines=5000, then=f"{TYPED}\rlast words", exit=3)
        post = Post(server, body, {"X-Request-ID": request_id, "X-Log-Key": key})
        with follow(client, server, request_id, {"X-Log-Key": key}) as stream:
            assert stream.ended.wait(30), "the stream did not end with the request"
        response = post.result()
        log = server.log_text()
    assert response.status_code == 500
    message = response.json()["error"]["message"]
    tail = message.split("Last lines of its log:\n", 1)[1].splitlines()
    assert tail[-2:] == ["line 5000", f"{TYPED}\\x0dlast words"]  # as printed, escaped
    logged = map_lines(log)
    kept = [line for line in logged if line.startswith("line ")]
    assert kept == [f"line {n}" for n in range(1, len(kept) + 1)]
    assert 4096 // (len("line 100") + 128 + 1) <= len(kept) < 4096 // 128
    then = f"{TYPED}\rlast words"
    dropped_bytes = sum(len(f"line {n}") for n in range(len(kept) + 1, 5001)) + len(then)
    assert logged[-1] == (
        f"{5000 - len(kept) + 1} more lines of the MAP's output ({dropped_bytes} bytes) were "
        "not logged: MIS logs up to server.map_log_max_bytes (4096 bytes) of each request's"
    )
    assert stream.lines() == logged  # the live log got the same lines, the count included
