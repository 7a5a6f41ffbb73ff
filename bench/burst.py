"""An efficient client for bursts: many connections opened first, then one request each at once.

Used by the load test and by `nox -s bench`; it shares the machine's cores with the server, so
it keeps its own work small (raw asyncio streams, on uvloop when there is one).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

EMPTY_ZIP = b"PK\x05\x06" + bytes(18)
REQUEST = (
    b"POST /v1/inference HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/zip\r\n"
    + f"Content-Length: {len(EMPTY_ZIP)}\r\n\r\n".encode()
    + EMPTY_ZIP
)


async def burst(
    port: int, clients: int = 200, whole: bool = False
) -> tuple[list[float], list[bytes]]:
    """Each client's latency (seconds) and the start of its answer ("500 {"error"...");
    the status and the whole body with `whole`."""
    go = asyncio.Event()
    latencies: list[float] = []
    answers: list[bytes] = []

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await go.wait()
        started = time.perf_counter()
        writer.write(REQUEST)
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        body = await reader.readexactly(length)
        latencies.append(time.perf_counter() - started)
        answers.append(head.split(b" ")[1] + b" " + (body if whole else body[:40]))
        writer.close()

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    await asyncio.sleep(0.2)  # let every connection be accepted first
    go.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    return latencies, answers


def run_loop(coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[max(0, int(len(ordered) * 0.99) - 1)]
