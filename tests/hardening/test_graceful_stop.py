"""SIGTERM and SIGINT against the real server: the request in flight finishes within the grace,
nothing new is admitted, and MIS exits 0 with nothing left; past the grace, the MAP is stopped
and its files deleted before MIS exits."""

from __future__ import annotations

import signal
import socket
import threading
from pathlib import Path

import httpx
import pytest

from tests.harness.servers import Server, ServerFactory
from tests.harness.wait import wait_until
from tests.processes import is_alive
from tests.zips import make_zip

pytestmark = pytest.mark.slow  # see pyproject.toml: more than a few seconds


def refuses_connections(server: Server) -> bool:
    port = int(server.url.rsplit(":", 1)[1])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def post_in_background(server: Server, archive: Path) -> tuple[threading.Thread, list[object]]:
    result: list[object] = []

    def send() -> None:
        try:
            result.append(
                httpx.post(
                    f"{server.url}/v1/inference",
                    content=archive.read_bytes(),
                    headers={"Content-Type": "application/zip"},
                    timeout=60,
                )
            )
        except httpx.TransportError as exc:
            result.append(exc)

    thread = threading.Thread(target=send)
    thread.start()
    return thread, result


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_lets_the_request_in_flight_finish_and_admits_nothing_new(
    tmp_path: Path, sig: signal.Signals, mis_server: ServerFactory
) -> None:
    archive = make_zip(tmp_path / "in.zip", {"a.txt": b"study", "_mode": b"wait"})
    with mis_server(tmp_path, {"map": {"timeout_seconds": 30}}) as server:
        thread, result = post_in_background(server, archive)
        wait_until((tmp_path / "started").exists, 10, "the MAP to start")
        server.process.send_signal(sig)
        wait_until(lambda: refuses_connections(server), 5, "new connections to be refused")
        assert server.process.poll() is None  # still finishing the study
        (tmp_path / "release").write_text("go")
        thread.join(30)
        assert server.process.wait(30) == 0
        [response] = result
        assert isinstance(response, httpx.Response)
        assert response.status_code == 200
        assert b"a.txt" in response.content
        assert server.leftovers() == []
        assert "Traceback" not in server.log_text()


def test_past_the_grace_the_map_is_stopped_and_its_files_deleted_before_exit(
    tmp_path: Path,
    mis_server: ServerFactory,
) -> None:
    overrides = {"server": {"shutdown_grace_seconds": 1}, "map": {"timeout_seconds": 60}}
    archive = make_zip(tmp_path / "in.zip", {"a.txt": b"study", "_mode": b"hang"})
    pidfile = tmp_path / "pids"
    with mis_server(tmp_path, overrides) as server:
        thread, result = post_in_background(server, archive)
        wait_until(lambda: pidfile.exists() and len(pidfile.read_text().split()) == 2, 10, "MAP")
        leader, child = (int(pid) for pid in pidfile.read_text().split())
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(30) == 0
        # by the time MIS has exited, the MAP and its child are gone and so are the files
        assert not is_alive(leader, grace=0)
        assert not is_alive(child, grace=0)
        assert server.leftovers() == []
        thread.join(10)
    [response] = result
    assert isinstance(response, httpx.Response)
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "backend_unavailable"
    assert "stopped" in error["message"]
    assert "| stopped (" in server.log_text() or "-> 503 stopped" in server.log_text()


def test_a_second_sigint_stops_at_once_and_the_map_with_it(
    tmp_path: Path, mis_server: ServerFactory
) -> None:
    overrides = {"map": {"timeout_seconds": 60}}
    archive = make_zip(tmp_path / "in.zip", {"_mode": b"hang"})
    pidfile = tmp_path / "pids"
    with mis_server(tmp_path, overrides) as server:
        thread, _ = post_in_background(server, archive)
        wait_until(lambda: pidfile.exists() and len(pidfile.read_text().split()) == 2, 10, "MAP")
        server.process.send_signal(signal.SIGINT)
        wait_until(lambda: refuses_connections(server), 5, "new connections to be refused")
        leader, child = (int(pid) for pid in pidfile.read_text().split())
        server.process.send_signal(signal.SIGINT)
        server.process.wait(30)  # no grace: the request is stopped at once ...
        assert not is_alive(leader, grace=0)  # ... its MAP too
        assert not is_alive(child, grace=0)
        thread.join(10)
    # what a stop at once leaves on disk is swept at the next start
    with mis_server(tmp_path, overrides) as again:
        assert again.leftovers() == []
