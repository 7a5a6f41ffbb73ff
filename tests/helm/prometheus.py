"""A real Prometheus (Debian's `prometheus`) on 127.0.0.1, for tests of the chart's monitoring."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.harness.process import free_port
from tests.harness.unavailable import require_tool
from tests.harness.wait import wait_until

STEP = "1s"  # scrape and rule evaluation interval: the tests wait on seconds, not minutes


class Prometheus:
    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log

    def api(self, path: str, **params: str) -> Any:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=5)
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("query", query=expr)["result"]
        return result

    def firing(self, alert: str) -> list[dict[str, Any]]:
        return [
            a
            for a in self.api("alerts")["alerts"]
            if a["labels"]["alertname"] == alert and a["state"] == "firing"
        ]

    def wait_for(self, what: str, condition: Any, timeout: float = 30.0) -> None:
        try:
            wait_until(condition, timeout, what)
        except AssertionError as exc:
            tail = self.log.read_text()[-3000:]
            raise AssertionError(f"{exc}; Prometheus's log:\n{tail}") from exc


@contextmanager
def running_prometheus(
    workdir: Path, scrape_configs: list[dict[str, Any]], rules: Path
) -> Iterator[Prometheus]:
    """Prometheus scraping and evaluating every STEP, until the block ends (then killed)."""
    binary = require_tool("prometheus")
    config = workdir / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {
                    "scrape_interval": STEP,
                    "scrape_timeout": STEP,
                    "evaluation_interval": STEP,
                },
                "rule_files": [str(rules)],
                "scrape_configs": scrape_configs,
            }
        )
    )
    address = f"127.0.0.1:{free_port()}"
    log = workdir / "prometheus.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address={address}",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    prometheus = Prometheus(f"http://{address}", log)
    try:
        prometheus.wait_for("Prometheus to be ready", lambda: _ready(prometheus, process))
        yield prometheus
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _ready(prometheus: Prometheus, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"prometheus exited: {prometheus.log.read_text()[-3000:]}")
    try:
        return httpx.get(f"{prometheus.url}/-/ready", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
