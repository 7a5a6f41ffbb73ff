"""Bounded load and soak tests on 127.0.0.1.

Load: 200 concurrent clients while one request runs; exactly one is admitted, every other
answer is a well-formed `busy`, and the service answers normally afterwards. How fast those
answers come is measured by `nox -s bench -- burst` (benchmarks measure; tests check
behaviour). Soak: 1,000 sequential requests leave no growth in open files, event-loop tasks,
payload files or memory.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.burst import EMPTY_ZIP, burst, run_loop
from tests.harness.servers import Server, ServerFactory
from tests.harness.wait import wait_until
from tests.zips import make_zip

CLIENTS = 200
BURSTS = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, mis_server: ServerFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("load")
    with mis_server(tmp, {"map": {"timeout_seconds": 120}}) as running:
        yield running


@pytest.mark.slow
def test_200_concurrent_clients_while_one_request_runs(server: Server) -> None:
    workdir = server.log.parent
    archive = make_zip(workdir / "wait.zip", {"scan.dcm": b"x", "_mode": b"wait"})
    first: dict[str, httpx.Response] = {}
    thread = threading.Thread(
        target=lambda: first.update(
            r=httpx.post(
                f"{server.url}/v1/inference", files={"file": archive.read_bytes()}, timeout=120
            )
        )
    )
    thread.start()
    try:
        wait_until((workdir / "started").exists, 10, "the first request's MAP to start")
        port = int(server.url.rsplit(":", 1)[1])
        for _ in range(BURSTS):
            _, answers = run_loop(burst(port, CLIENTS, whole=True))
            assert len(answers) == CLIENTS
            for answer in answers:
                status, body = answer.split(b" ", 1)
                error = json.loads(body)["error"]
                assert (status, error["code"]) == (b"500", "busy"), answer
                assert len(error["request_id"]) == 32
        assert httpx.get(f"{server.url}/v1/status").json()["in_flight"] == 1  # one admitted, still
    finally:
        (workdir / "release").write_text("go")
        thread.join(60)
    assert first["r"].status_code == 200
    after = httpx.post(f"{server.url}/v1/inference", files={"file": EMPTY_ZIP}, timeout=30)
    assert after.status_code == 200


def metric(server: Server, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    return next(
        s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name
    )


@pytest.mark.slow
@pytest.mark.timeout(900)  # 1,050 runs of a supervised MAP on two shared cores
def test_soak_of_1000_sequential_requests(tmp_path: Path, mis_server: ServerFactory) -> None:
    copy = ["cp", "-r", "{input_path}/.", "{output_path}"]
    # leaks are the point, not speed (2 busy cores here)
    overrides = {"map": {"command": copy, "timeout_seconds": 30}}
    body = make_zip(
        tmp_path / "in.zip", {f"series/{n}.dcm": bytes(2000) for n in range(5)}
    ).read_bytes()
    with mis_server(tmp_path, overrides) as server, httpx.Client(timeout=30) as client:

        def one() -> None:
            response = client.post(
                f"{server.url}/v1/inference",
                content=body,
                headers={"Content-Type": "application/zip"},
            )
            assert response.status_code == 200, response.text

        for _ in range(50):  # warm up: imports, caches, allocator pools
            one()
        fds, tasks, rss = (
            metric(server, n)
            for n in ("process_open_fds", "mis_asyncio_tasks", "process_resident_memory_bytes")
        )
        for _ in range(1000):
            one()
        wait_until(lambda: server.leftovers() == [], 5, "an empty payload folder")
        fds_after = metric(server, "process_open_fds")
        tasks_after = metric(server, "mis_asyncio_tasks")
        rss_after = metric(server, "process_resident_memory_bytes")
    print(
        f"fds {fds:.0f}->{fds_after:.0f}, tasks {tasks:.0f}->{tasks_after:.0f}, rss {rss / 2**20:.1f}->{rss_after / 2**20:.1f} MiB"
    )
    assert fds_after <= fds
    assert tasks_after <= tasks
    assert rss_after - rss < 20 * 2**20
