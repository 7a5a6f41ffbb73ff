"""Following a request's live log over HTTP while its POST runs."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.harness.servers import Server
from tests.harness.wait import wait_until


def new_key() -> str:
    return secrets.token_hex(16)


class Post(threading.Thread):
    """POST /v1/inference in the background (it answers only when the MAP is done)."""

    def __init__(self, server: Server, body: bytes, headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.args = (f"{server.url}/v1/inference", body, headers)
        self.response: httpx.Response | None = None
        self.start()

    def run(self) -> None:
        url, body, headers = self.args
        headers = {"Content-Type": "application/zip", **headers}
        self.response = httpx.post(url, content=body, headers=headers, timeout=60)

    def result(self) -> httpx.Response:
        self.join(60)
        assert self.response is not None
        return self.response


class Events(threading.Thread):
    """Reads one log stream into `events` ((id, data) per line) until `event: end`."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(daemon=True)
        self.response = response
        self.events: list[tuple[int, str]] = []
        self.ended = threading.Event()
        self.start()

    def run(self) -> None:
        fields: dict[str, str] = {}
        for line in self.response.iter_lines():
            if line:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
                continue
            if fields.get("event") == "end":
                self.ended.set()
                return
            if "data" in fields and "id" in fields:
                self.events.append((int(fields["id"]), fields["data"]))
            fields = {}

    def lines(self) -> list[str]:
        return [data for _, data in self.events]


def log_url(server: Server, request_id: str) -> str:
    return f"{server.url}/v1/inference/{request_id}/log"


@contextmanager
def follow(
    client: httpx.Client, server: Server, request_id: str, headers: dict[str, str]
) -> Iterator[Events]:
    """Open the stream once the POST has reached the endpoint (404 until then)."""
    opened: list[httpx.Response] = []

    def opens() -> bool:
        request = client.build_request("GET", log_url(server, request_id), headers=headers)
        response = client.send(request, stream=True)
        if response.status_code == 200:
            opened.append(response)
            return True
        response.close()
        assert response.status_code == 404, response.text
        return False

    wait_until(opens, 20, "the live log to open")
    [response] = opened
    try:
        yield Events(response)
    finally:
        response.close()
