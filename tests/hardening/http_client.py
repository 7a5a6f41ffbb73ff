"""A raw HTTP/1.1 client for hostile-client tests: sends bytes as they are, reads answers whole."""

from __future__ import annotations

import socket
import time

import attrs

from tests.harness.servers import Server


@attrs.frozen
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def connect(server: Server, receive_buffer: int | None = None) -> socket.socket:
    port = int(server.url.rsplit(":", 1)[1])
    sock = socket.socket()
    if receive_buffer is not None:  # set before connecting, so the window stays small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect(("127.0.0.1", port))
    return sock


class Reader:
    """Reads answers off `sock` one after the other (keep-alive and pipelining)."""

    def __init__(self, sock: socket.socket, timeout: float = 10, pause: float = 0) -> None:
        self.sock = sock
        self.sock.settimeout(timeout)
        self.pause = pause  # between reads: a slow reader
        self.buffer = b""

    def more(self) -> bool:
        time.sleep(self.pause)
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not self.more():
                raise EOFError(f"closed before {marker!r}; got {self.buffer[:200]!r}")
        head, self.buffer = self.buffer.split(marker, 1)
        return head

    def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self.more():
                raise EOFError("closed in the middle of a body")
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def head(self) -> tuple[int, dict[str, str]]:
        """The next answer's status and headers (interim 1xx answers included)."""
        lines = self._until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    def answer(self) -> Answer:
        status, headers = self.head()
        while status < 200:
            status, headers = self.head()
        if "content-length" in headers:
            body = self._exactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int(self._until(b"\r\n").split(b";")[0], 16):
                body += self._exactly(size)
                self._until(b"\r\n")
            self._until(b"\r\n")
        else:
            while self.more():
                pass
            body, self.buffer = self.buffer, b""
        return Answer(status, headers, body)

    def closed(self) -> bool:
        """Whether the server closed the connection (reset counts) with nothing more to read."""
        try:
            return not self.more()
        except ConnectionResetError:
            return True
