"""What end-to-end tests do with a running MIS (tests/harness/servers.py's `Server`): raw
requests, uploads streamed to a file, its metrics and its memory."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import IO

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.harness.process import port_of
from tests.harness.servers import Server


def raw_request(server: Server, data: bytes) -> socket.socket:
    """A connection to `server` that has sent `data` (a request, whole or cut short) as is."""
    sock = socket.create_connection(("127.0.0.1", port_of(server.url)))
    sock.sendall(data)
    return sock


def zip_post(body: bytes, content_length: int | None = None) -> bytes:
    """A raw POST /v1/inference of `body`, announcing `content_length` (default: its length)."""
    length = len(body) if content_length is None else content_length
    return (
        b"POST /v1/inference HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/zip\r\n"
        + f"Content-Length: {length}\r\n\r\n".encode()
        + body
    )


def peak_rss(server: Server) -> int:
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def unlabelled_metrics(server: Server) -> dict[str, float]:
    """The server's metrics without labels, by sample name, as /metrics says them now."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


def post_zip_into(
    server: Server, content: bytes | IO[bytes], out: Path, timeout: float = 300
) -> httpx.Response:
    """POST `content` as a raw zip to /v1/inference, the answer's body streamed into `out`."""
    with (
        httpx.stream(
            "POST",
            f"{server.url}/v1/inference",
            content=content,
            headers={"Content-Type": "application/zip"},
            timeout=timeout,
        ) as response,
        open(out, "wb") as sink,
    ):
        for chunk in response.iter_bytes():
            sink.write(chunk)
    return response
