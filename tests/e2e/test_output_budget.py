"""The output zip's budget through the real server and a real MAP: a tree of thousands of
files under long, deep paths (all headers, no data) costs MIS little memory and is either a
whole zip or a clear map_failed; each limit passed is named; a name MIS would refuse to
receive is never sent, and the message names it, escaped."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mis_adapters.zip.index import local_data_start, records
from mis_adapters.zip.layout import read_layout
from tests.e2e.server import peak_rss, post_zip_into
from tests.harness.repo import REPO
from tests.harness.servers import Server, ServerFactory
from tests.zips import make_zip

MB = 1000 * 1000
PEAK_RSS = 150 * MB
OUTPUT_MAP = str(REPO / "tests" / "maps" / "output_map.py")
# What the attack wrote: 12,000 empty files, 120 folders deep, names of 250 bytes: paths of
# some 30 KB each, so some 720 MB of headers for no data at all.
DEEP = "deep 12000 120 250"


def output_map(work: Path, **server: Any) -> dict[str, Any]:
    """The output MAP in place of the scripted one, with these server settings."""
    return {
        "server": server,
        "map": {
            "command": [sys.executable, OUTPUT_MAP],
            "timeout_seconds": 120,
            "env": {"MIS_TEST_SECRET": str(work)},
        },
    }


def post_mode(server: Server, tmp_path: Path, mode: str, out: Path) -> httpx.Response:
    """POST an input that steers the MAP; the body streamed into `out`."""
    body = make_zip(tmp_path / "in.zip", {"_mode": mode.encode()}).read_bytes()
    return post_zip_into(server, body, out)


def map_failed(response: httpx.Response, body: Path) -> str:
    assert response.status_code == 500, body.read_bytes()[:500]
    error = json.loads(body.read_bytes())["error"]
    assert error["code"] == "map_failed"
    return str(error["message"])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_deep_tree_of_long_names_is_refused_by_default_with_little_memory(
    tmp_path: Path,
    mis_server: ServerFactory,
) -> None:
    with mis_server(tmp_path, output_map(tmp_path)) as server:
        response = post_mode(server, tmp_path, DEEP, tmp_path / "out")
        message = map_failed(response, tmp_path / "out")
        peak = peak_rss(server)
    assert "server.max_output_path_bytes" in message
    assert "over 4096" in message
    assert "…" in message  # the path, cut short in its middle
    assert len(message) < 1000
    assert peak < PEAK_RSS, f"MIS's peak RSS was {peak / MB:.0f} MB"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_deep_tree_of_long_names_within_raised_limits_comes_whole_with_little_memory(
    tmp_path: Path,
    mis_server: ServerFactory,
) -> None:
    raised = output_map(tmp_path, max_output_path_bytes=65535, max_output_directory_bytes="1GiB")
    out = tmp_path / "out.zip"
    with mis_server(tmp_path, raised) as server:
        response = post_mode(server, tmp_path, DEEP, out)
        peak = peak_rss(server)
        server.wait_until_clean(30)  # the central directory's file went with the workspace
    print(f"MIS's peak RSS {peak / MB:.0f} MB for a zip of {out.stat().st_size / MB:.0f} MB")
    assert response.status_code == 200, out.read_bytes()[:500]
    assert out.stat().st_size > 700 * MB
    with open(out, "rb") as source:  # read a record at a time: the directory is 360 MB
        layout = read_layout(source)
        assert layout.entries == 12_000
        for record in records(source, layout):
            assert len(record.raw_name) > 30_000
            assert record.size == 0
            local_data_start(source, record)  # its local header agrees with its record
    assert peak < PEAK_RSS, f"MIS's peak RSS was {peak / MB:.0f} MB"


@pytest.fixture(scope="module")
def limited(
    tmp_path_factory: pytest.TempPathFactory, mis_server: ServerFactory
) -> Iterator[Server]:
    """MIS with small output limits: each mode below passes exactly one of them."""
    work = tmp_path_factory.mktemp("limited")
    limits = output_map(
        work,
        max_output_entries=50,
        max_output_path_bytes=1000,
        max_output_directory_bytes=20_000,
    )
    with mis_server(work, limits) as server:
        yield server


@pytest.mark.parametrize(
    ("mode", "setting", "problem"),
    [
        ("many 60", "server.max_output_entries", "more than 50 files and empty folders"),
        ("deep 1 3 250", "server.max_output_path_bytes", "bytes, over 1000"),
        ("deep 45 1 250", "server.max_output_directory_bytes", "would pass 20000 bytes"),
    ],
    ids=["entries", "path", "directory"],
)
def test_each_output_limit_passed_is_map_failed_naming_it(
    limited: Server, tmp_path: Path, mode: str, setting: str, problem: str
) -> None:
    message = map_failed(post_mode(limited, tmp_path, mode, tmp_path / "out"), tmp_path / "out")
    assert setting in message
    assert problem in message
    assert sum(name in message for name in ("entries", "path_bytes", "directory_bytes")) == 1


@pytest.mark.parametrize(
    ("name", "shown", "why"),
    [
        (b"..\\..\\evil.txt", r"'..\\..\\evil.txt'", "backslash"),
        (b"C:evil.txt", "'C:evil.txt'", "drive letter"),
        (b"line\nfeed.txt", r"'line\x0afeed.txt'", "control character (U+000A)"),
        (b"\x1b[31mred.txt", r"'\x1b[31mred.txt'", "control character (U+001B)"),
        (b"..\\", r"'..\\'", "backslash"),
    ],
    ids=["backslash", "drive", "newline", "escape", "dotdot"],
)
def test_a_name_mis_would_refuse_to_receive_is_never_sent(
    limited: Server, tmp_path: Path, name: bytes, shown: str, why: str
) -> None:
    out = tmp_path / "out"
    message = map_failed(post_mode(limited, tmp_path, f"name {name.hex()}", out), out)
    assert f"the name {shown} is unsafe" in message
    assert why in message
