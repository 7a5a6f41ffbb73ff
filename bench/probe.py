"""The busy prober: `python -m bench.probe URL STOP_FILE`, run by `nox -s bench` beside one
big request. Once the server says it is busy, it sends an empty inference request every
20 ms and prints, at the end, one `[wall-clock start, milliseconds]` pair per busy answer
as JSON; it stops when STOP_FILE exists.

A process of its own, so the client uploading the big request (in the bench's process) does
not hold the prober's interpreter lock while a probe waits for its answer.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx

from bench.burst import EMPTY_ZIP

INTERVAL = 0.02


def main() -> None:
    url, stop = sys.argv[1], Path(sys.argv[2])
    probes: list[tuple[float, float]] = []
    with httpx.Client(timeout=10) as client:
        while client.get(f"{url}/v1/status").json()["state"] != "busy":  # not before it
            if stop.exists():
                break
            time.sleep(0.005)
        while not stop.exists():
            wall, started = time.time(), time.perf_counter()
            response = client.post(
                f"{url}/v1/inference",
                content=EMPTY_ZIP,
                headers={"Content-Type": "application/zip"},
            )
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code == 500 and response.json()["error"]["code"] == "busy":
                probes.append((wall, elapsed))
            time.sleep(INTERVAL)
    json.dump(probes, sys.stdout)


if __name__ == "__main__":
    main()
