"""Archives built to cost memory, sent to the real server: each is refused, and the server's
peak RSS grows by less than 50 MB while it refuses them."""

from __future__ import annotations

import bz2
import lzma
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import peak_rss
from tests.harness.servers import Server, ServerFactory
from tests.harness.wait import wait_until
from tests.zips import RawEntry, deflated, make_zip, many_entries_zip, raw_zip

MiB = 1024 * 1024
BOMB = bytes(200 * MiB)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, mis_server: ServerFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("hostile")
    with mis_server(work) as running:
        yield running


def post(server: Server, body: bytes) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/inference",
        content=body,
        headers={"Content-Type": "application/zip"},
        timeout=120,
    )


def hostile_archives(tmp_path: Path) -> list[tuple[str, bytes, int, str]]:
    """(what, archive, status, words of the message)"""
    return [
        (
            "claims five million entries",
            raw_zip([RawEntry(b"a", b"x")], zip64_end=True, claimed_entries=5_000_000),
            413,
            "5000000 entries",
        ),
        (
            "holds a million real entries",
            many_entries_zip(tmp_path / "many.zip", 1_000_000).read_bytes(),
            413,
            "1000000 entries",
        ),
        (
            "a bzip2 entry lying about its size",
            raw_zip([RawEntry(b"b", bz2.compress(BOMB[: 50 * MiB]), method=12, size=1000, crc=0)]),
            400,
            "bzip2 compression method",
        ),
        (
            "an LZMA entry lying about its size",
            raw_zip([RawEntry(b"l", lzma.compress(BOMB[: 50 * MiB]), method=14, size=1000, crc=0)]),
            400,
            "LZMA compression method",
        ),
        (
            "a deflate entry lying about its size",
            raw_zip([RawEntry(b"d", deflated(BOMB), method=8, size=1000, crc=0)]),
            400,
            "expands beyond the size it declares",
        ),
    ]


@pytest.mark.slow
def test_hostile_archives_are_refused_with_bounded_memory(server: Server, tmp_path: Path) -> None:
    warm_up = make_zip(tmp_path / "ok.zip", {"a.dcm": b"x" * 1000}).read_bytes()
    assert post(server, warm_up).status_code == 200
    before = peak_rss(server)
    for what, archive, status, words in hostile_archives(tmp_path):
        response = post(server, archive)
        assert response.status_code == status, f"{what}: {response.text}"
        assert words in response.json()["error"]["message"], what
        growth = peak_rss(server) - before
        print(f"{what}: peak RSS +{growth / MiB:.1f} MiB")
        assert growth < 50 * MiB, f"{what}: peak RSS grew by {growth / MiB:.0f} MiB"
    wait_until(lambda: server.leftovers() == [], 10, "the workspaces to be deleted")
