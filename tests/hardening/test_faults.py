"""Slow and vanishing clients, a full disk, and MIS killed mid-request: the slot is freed, no
process is left, and the payload folder ends empty."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mis_adapters.storage.layout import PAYLOAD_ROOT_MARKER
from tests.e2e.server import raw_request, zip_post
from tests.harness.servers import Server, ServerFactory
from tests.harness.wait import wait_until
from tests.processes import is_alive
from tests.zips import make_zip


def read_status(sock: socket.socket, timeout: float) -> str:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0].decode()


def idle(server: Server) -> bool:
    return httpx.get(f"{server.url}/v1/status").json()["state"] == "idle"


@pytest.fixture(scope="module")
def slow_server(
    tmp_path_factory: pytest.TempPathFactory, mis_server: ServerFactory
) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("slow")
    limits = {
        "upload_idle_timeout_seconds": 1,
        "upload_timeout_seconds": 3,
        "min_upload_bytes_per_second": 50,  # the drag-on trickle below is faster than this
    }
    with mis_server(tmp, {"server": limits}) as server:
        yield server


HEAD = zip_post(b"", content_length=1000000)


def test_a_stalled_upload_is_cut_off_with_408(slow_server: Server) -> None:
    started = time.monotonic()
    with raw_request(slow_server, HEAD + bytes(1000)) as sock:
        status = read_status(sock, timeout=10)
    assert status == "HTTP/1.1 408 Request Timeout"
    assert time.monotonic() - started < 5
    wait_until(lambda: idle(slow_server), 2, "the slot")
    wait_until(lambda: slow_server.leftovers() == [], 2, "an empty payload folder")
    assert "The upload stalled" in slow_server.log_text()


def test_an_upload_that_drags_on_is_cut_off_with_408(slow_server: Server) -> None:
    with raw_request(slow_server, HEAD) as sock:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            readable, _, _ = select.select([sock], [], [], 0.4)
            if readable:
                break
            sock.sendall(bytes(100))  # a trickle: never idle for a second, never done
        status = read_status(sock, timeout=5)
    assert status == "HTTP/1.1 408 Request Timeout"
    wait_until(lambda: idle(slow_server), 2, "the slot")
    wait_until(lambda: slow_server.leftovers() == [], 2, "an empty payload folder")
    assert "took longer than 3 seconds" in slow_server.log_text()


def test_an_upload_trickling_below_the_minimum_rate_is_408_and_frees_the_slot(
    slow_server: Server,
) -> None:
    with raw_request(slow_server, HEAD) as sock:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            readable, _, _ = select.select([sock], [], [], 0.1)
            if readable:
                break
            sock.sendall(b"\0")  # 10 bytes a second: never idle, but below the 50 B/s minimum
        status = read_status(sock, timeout=5)
    assert status == "HTTP/1.1 408 Request Timeout"
    wait_until(lambda: idle(slow_server), 2, "the slot")
    wait_until(lambda: slow_server.leftovers() == [], 2, "an empty payload folder")
    assert "below the 50 bytes per second" in slow_server.log_text()
    assert "server.min_upload_bytes_per_second" in slow_server.log_text()


def test_a_full_payload_volume_is_507_and_leaves_nothing(
    tiny_volume: Path, tmp_path: Path, mis_server: ServerFactory
) -> None:
    big_upload = make_zip(tmp_path / "big.zip", {"scan.raw": os.urandom(6 * 1024 * 1024)})
    bomb_ish = make_zip(
        tmp_path / "expands.zip", {f"slice-{n}.raw": bytes(1024 * 1024) for n in range(8)}
    )
    with mis_server(tmp_path, {"server": {"payload_dir": str(tiny_volume)}}) as server:
        responses = [
            httpx.post(
                f"{server.url}/v1/inference", content=archive.read_bytes(),
                headers={"Content-Type": "application/zip"}, timeout=30,
            )
            for archive in (big_upload, bomb_ish)
        ]  # fmt: skip
        server.wait_until_clean()  # the failed requests' workspaces go after their answers
        after = httpx.post(
            f"{server.url}/v1/inference",
            files={"file": make_zip(tmp_path / "ok.zip", {"a": b"1"}).read_bytes()},
        )
    for response in responses:
        assert response.status_code == 507
        error = response.json()["error"]
        assert error["code"] == "insufficient_storage"
        assert "ran out of space" in error["message"]
    assert after.status_code == 200  # the space was given back
    assert [p.name for p in tiny_volume.iterdir()] == [PAYLOAD_ROOT_MARKER]


def test_mis_killed_mid_request_leaves_nothing_after_restart(
    tmp_path: Path, mis_server: ServerFactory
) -> None:
    archive = make_zip(tmp_path / "in.zip", {"a.txt": b"x", "_mode": b"hang"})
    pidfile = tmp_path / "pids"
    with mis_server(tmp_path) as first:

        def doomed_request() -> None:
            with contextlib.suppress(httpx.TransportError):  # MIS dies under it
                httpx.post(
                    f"{first.url}/v1/inference", files={"file": archive.read_bytes()}, timeout=30
                )

        threading.Thread(target=doomed_request, daemon=True).start()
        wait_until(
            lambda: pidfile.exists() and len(pidfile.read_text().split()) == 2, 10, "the MAP"
        )
        leader, child = (int(p) for p in pidfile.read_text().split())
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(10)
        assert not is_alive(leader)  # the supervisor's parent-death signal took the MAP ...
        assert not is_alive(child)  # ... and its child with MIS
        assert first.leftovers() != []  # the workspace is left over
    with mis_server(tmp_path) as second:
        assert second.leftovers() == []
        assert "swept 1 leftover workspace(s) and 0 leftover job(s)" in second.log_text()
        assert idle(second)


def test_metrics_and_the_access_log(tmp_path: Path, mis_server: ServerFactory) -> None:
    ok = make_zip(tmp_path / "ok.zip", {"a.txt": b"x" * 1000})
    failing = make_zip(tmp_path / "fail.zip", {"_mode": b"fail"})
    with mis_server(tmp_path, {"server": {"log_format": "json"}}) as server:
        for archive in (ok, ok, failing):
            httpx.post(
                f"{server.url}/v1/inference", files={"file": archive.read_bytes()}, timeout=30
            )
        httpx.post(
            f"{server.url}/v1/inference", content=b"junk", headers={"Content-Type": "text/plain"}
        )
        text = httpx.get(f"{server.url}/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("mis_inference_requests_total", (("code", "ok"),))] == 2
    assert samples[("mis_inference_requests_total", (("code", "map_failed"),))] == 1
    assert samples[("mis_inference_requests_total", (("code", "unsupported_media_type"),))] == 1
    assert samples[("mis_inference_request_duration_seconds_count", ())] == 4
    assert samples[("mis_stage_duration_seconds_count", (("stage", "job"),))] == 3
    assert samples[("mis_received_bytes_total", ())] > 2 * ok.stat().st_size
    assert samples[("mis_sent_bytes_total", ())] > 0
    assert samples[("mis_in_flight_requests", ())] == 0
    assert samples[("mis_cleanup_failures", ())] == 0
    assert samples[("mis_asyncio_tasks", ())] >= 1
    assert samples[("process_open_fds", ())] > 0

    records = [json.loads(line) for line in server.log_text().splitlines() if line.startswith("{")]
    access = [
        r["access"] for r in records if "access" in r and r["access"]["path"] == "/v1/inference"
    ]
    assert [a["code"] for a in access] == ["ok", "ok", "map_failed", "unsupported_media_type"]
    # access lines are written just after the answer, still tagged with the request's id
    assert all(len(r["request_id"]) == 32 for r in records if "access" in r)
    assert access[0]["status"] == 200
    assert access[0]["bytes_received"] > ok.stat().st_size
    assert access[0]["bytes_sent"] > 0
    assert access[0]["duration_seconds"] > 0
    lifecycle = [
        r["message"] for r in records if r.get("request_id") == records[-1].get("request_id")
    ]
    assert lifecycle  # every line of a request carries its id
    first_id = next(r["request_id"] for r in records if r["message"] == "admitted")
    messages = [
        r["message"].split(" ")[0]
        for r in records
        if r.get("request_id") == first_id and r.get("source") == "mis"
    ]
    for event in ("admitted", "received", "staged", "job", "responded", "cleaned"):
        assert event in messages
    assert "a.txt" not in server.log_text()  # no payload file names in MIS's own log
