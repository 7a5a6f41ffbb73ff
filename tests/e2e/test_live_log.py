"""GET /v1/inference/{id}/log on the real server: the MAP's lines, live, for their sender only."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mis_app.live_log import MAX_CHARS, MAX_LINES, clean_line
from tests.e2e.live_log import Post, follow, log_url, new_key
from tests.harness.repo import REPO
from tests.harness.servers import ServerFactory
from tests.harness.wait import wait_until
from tests.zips import make_zip

TICKING_MAP = {
    "map": {
        "command": [sys.executable, str(REPO / "tests" / "maps" / "ticking_map.py")],
        "timeout_seconds": 30,
    }
}


def ticks_zip(tmp_path: Path, name: str = "input.zip", **ticks: Any) -> bytes:
    return make_zip(tmp_path / name, {"_ticks.json": json.dumps(ticks).encode()}).read_bytes()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as http:
        yield http


def test_lines_are_cleaned_for_people() -> None:
    assert clean_line("\x1b[1;32mgreen\x1b[0m and \x1b]0;a title\x07plain") == "green and plain"
    assert clean_line(" 10%|#  |\r 50%|### |\r") == " 50%|### |"
    assert clean_line("tab\tand\x00 nul\x7f") == "tab    and nul"
    # text that only looks like an escape is what the MAP printed: it stays
    assert clean_line(r"\x1b[32mgreen\x1b[0m") == r"\x1b[32mgreen\x1b[0m"
    assert clean_line(r" 10%\x0d 50%") == r" 10%\x0d 50%"
    assert clean_line(r"a literal \x41 and \u00e9 stay") == r"a literal \x41 and \u00e9 stay"
    long = clean_line("x" * 5000)
    assert len(long) == MAX_CHARS
    assert long.endswith("…")


def test_the_sender_follows_the_maps_lines_until_the_request_ends(
    tmp_path: Path, client: httpx.Client, mis_server: ServerFactory
) -> None:
    request_id, key = "live-1", new_key()
    headers = {"X-Request-ID": request_id, "X-Log-Key": key}
    with mis_server(tmp_path, TICKING_MAP) as server:
        post = Post(server, ticks_zip(tmp_path, lines=3, interval=0.2, width=3000), headers)
        with follow(client, server, request_id, {"X-Log-Key": key}) as stream:
            assert stream.ended.wait(30), "the stream did not end with the request"
            assert stream.response.headers["content-type"].startswith("text/event-stream")
        assert post.result().status_code == 200
        after = client.get(log_url(server, request_id), headers={"X-Log-Key": key})
        log = server.log_text()
    lines = stream.lines()
    assert [line.split(" at ")[0] for line in lines] == ["tick 1", "tick 2", "tick 3", "done"]
    assert [n for n, _ in stream.events] == [1, 2, 3, 4]
    assert all("\x1b" not in line and len(line) == MAX_CHARS for line in lines[:3])
    assert after.status_code == 404  # gone with the request
    # MIS's own log keeps the line as printed, its control characters escaped
    assert "\\x1b[32mtick 1" in log
    assert "\x1b" not in log
    assert "=" * 2000 in log  # MIS's own log keeps the whole line
    assert key not in log


def test_no_one_else_can_read_them(
    tmp_path: Path, client: httpx.Client, mis_server: ServerFactory
) -> None:
    sender, other = "sender-token-1f3a", "other-token-77b2"
    (tmp_path / "tokens").write_text(f"{sender}\n{other}\n")
    auth = {"server": {"auth": {"tokens_file": str(tmp_path / "tokens")}}}
    request_id, key = new_key(), new_key()
    own = {"Authorization": f"Bearer {sender}", "X-Log-Key": key}
    with mis_server(tmp_path, {**TICKING_MAP, **auth}) as server:
        body = ticks_zip(tmp_path, lines=2, interval=0, hold=True)
        post = Post(server, body, {**own, "X-Request-ID": request_id})
        wait_until((tmp_path / "started").exists, 20, "the MAP to print its lines")
        attempts = {
            "another token": {**own, "Authorization": f"Bearer {other}"},
            "another key": {**own, "X-Log-Key": new_key()},
            "no key": {"Authorization": own["Authorization"]},
            "a short key": {**own, "X-Log-Key": key[:16]},
        }
        refused = {
            what: client.get(log_url(server, request_id), headers=headers)
            for what, headers in attempts.items()
        }
        refused["a guessed id"] = client.get(log_url(server, new_key()), headers=own)
        no_token = client.get(log_url(server, request_id), headers={"X-Log-Key": key})
        with follow(client, server, request_id, own) as stream:  # the sender can, meanwhile
            wait_until(lambda: len(stream.events) == 2, 10, "the sender to get both lines")
            (tmp_path / "release").write_text("go")
            assert stream.ended.wait(30)
        assert post.result().status_code == 200
    assert {what: r.status_code for what, r in refused.items()} == dict.fromkeys(refused, 404)
    messages = {json.dumps({**r.json()["error"], "request_id": ""}) for r in refused.values()}
    assert len(messages) == 1  # the same answer, whatever was wrong
    assert no_token.status_code == 401


def test_only_the_last_lines_are_kept(
    tmp_path: Path, client: httpx.Client, mis_server: ServerFactory
) -> None:
    request_id, key = "many-lines", new_key()
    with mis_server(tmp_path, TICKING_MAP) as server:
        body = ticks_zip(tmp_path, lines=MAX_LINES + 100, interval=0, width=1500, hold=True)
        post = Post(server, body, {"X-Request-ID": request_id, "X-Log-Key": key})
        wait_until((tmp_path / "started").exists, 20, "the MAP to print its lines")
        last = f"tick {MAX_LINES + 100} at"  # MIS reads them in batches: until it has them all
        wait_until(lambda: last in server.log_text(), 20, "MIS to log the MAP's lines")
        with follow(client, server, request_id, {"X-Log-Key": key}) as stream:
            wait_until(lambda: len(stream.events) >= MAX_LINES, 10, "the kept lines")
            (tmp_path / "release").write_text("go")
            assert stream.ended.wait(30)
        assert post.result().status_code == 200
    numbers = [n for n, _ in stream.events]
    assert numbers == list(range(101, MAX_LINES + 102))  # the last 500 printed, then "done"
    assert stream.lines()[0].startswith("tick 101 at ")
    assert max(len(line) for line in stream.lines()) == MAX_CHARS
